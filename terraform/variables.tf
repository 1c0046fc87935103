variable "libvirt_uri" {
  type        = string
  description = "libvirt connection of the KVM host, e.g. qemu:///system (local) or qemu+ssh://user@kvm-host/system."
  default     = "qemu:///system"
}

variable "base_image" {
  type        = string
  description = "Debian 13 (or 12) cloud image (qcow2) the VMs' disks are cloned from: a path on the KVM host or an http(s) URL."
  default     = "/var/lib/libvirt/images/debian-13-genericcloud-amd64.qcow2"
}

variable "storage_pool" {
  type        = string
  description = "libvirt storage pool for the base image and the VM disks."
  default     = "default"
}

variable "network" {
  type = object({
    mode    = string # "bridge": VMs on an existing host bridge (LAN addresses); "route": a libvirt routed network
    bridge  = string # host bridge for mode "bridge" (e.g. br0)
    cidr    = string # the lab subnet, the same as node_network in group_data/all.py
    gateway = string
    dns     = list(string)
  })
  description = "How the VMs reach the lab network. Addresses are static (cloud-init), never DHCP."
  default = {
    mode    = "bridge"
    bridge  = "br0"
    cidr    = "192.168.10.0/24"
    gateway = "192.168.10.1"
    dns     = ["192.168.10.1"]
  }
  validation {
    condition     = contains(["bridge", "route"], var.network.mode)
    error_message = "network.mode must be \"bridge\" or \"route\"."
  }
  validation {
    condition     = can(cidrhost(var.network.cidr, 0)) && can(regex("^(\\d{1,3}\\.){3}\\d{1,3}$", var.network.gateway))
    error_message = "network.cidr must be a CIDR like 192.168.10.0/24 and network.gateway an IPv4 address."
  }
}

variable "ssh_user" {
  type        = string
  description = "User cloud-init creates on every VM (passwordless sudo); pyinfra connects as this user."
  default     = "debian"
  validation {
    condition     = can(regex("^[a-z_][a-z0-9_-]{0,31}$", var.ssh_user))
    error_message = "ssh_user must be a valid Linux user name (lower case, at most 32 characters)."
  }
}

variable "ssh_public_key" {
  type        = string
  description = "Public SSH key authorized for ssh_user (the key pyinfra uses)."
  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp256) ", var.ssh_public_key))
    error_message = "ssh_public_key must be an OpenSSH public key (ssh-ed25519 ..., ssh-rsa ... or ecdsa-sha2-nistp256 ...)."
  }
}

variable "create_platform" {
  type        = bool
  description = "Also create the platform VM (GitLab). false when the platform is a physical mini PC."
  default     = true
}

variable "platform" {
  type = object({
    name      = string
    address   = string
    vcpu      = number
    memory_mb = number
    disk_gb   = number
  })
  description = "The platform host (GitLab CE, registry, runner)."
  default     = { name = "mini-pc", address = "192.168.10.10", vcpu = 4, memory_mb = 8192, disk_gb = 80 }
  validation {
    condition     = can(regex("^(\\d{1,3}\\.){3}\\d{1,3}$", var.platform.address))
    error_message = "platform.address must be an IPv4 address like 192.168.10.10."
  }
  validation {
    condition     = var.platform.memory_mb >= 4096 && var.platform.vcpu >= 2
    error_message = "The platform VM needs at least 2 vCPUs and 4096 MB of memory (GitLab's minimum)."
  }
}

variable "control_plane" {
  type = object({
    name      = string
    address   = string
    vcpu      = number
    memory_mb = number
    disk_gb   = number
  })
  description = "The Kubernetes control plane (kubeadm)."
  default     = { name = "k8s-master", address = "192.168.10.11", vcpu = 2, memory_mb = 4096, disk_gb = 40 }
  validation {
    condition     = can(regex("^(\\d{1,3}\\.){3}\\d{1,3}$", var.control_plane.address))
    error_message = "control_plane.address must be an IPv4 address like 192.168.10.11."
  }
  validation {
    condition     = var.control_plane.memory_mb >= 2048 && var.control_plane.vcpu >= 2
    error_message = "The control plane needs at least 2 vCPUs and 2048 MB of memory (kubeadm's preflight)."
  }
}

variable "workers" {
  type = list(object({
    name      = string
    address   = string
    vcpu      = number
    memory_mb = number
    disk_gb   = number
  }))
  description = "Kubernetes workers: any number, at least one."
  default = [
    { name = "k8s-worker1", address = "192.168.10.12", vcpu = 2, memory_mb = 8192, disk_gb = 40 },
    { name = "k8s-worker2", address = "192.168.10.13", vcpu = 2, memory_mb = 8192, disk_gb = 40 },
  ]
  validation {
    condition     = length(var.workers) >= 1
    error_message = "At least one worker is needed."
  }
  validation {
    condition     = alltrue([for w in var.workers : w.memory_mb >= 4096])
    error_message = "Every worker needs at least 4096 MB of memory (Online Boutique, monitoring and load tests)."
  }
  validation {
    condition     = alltrue([for w in var.workers : can(regex("^(\\d{1,3}\\.){3}\\d{1,3}$", w.address))])
    error_message = "Every worker address must be an IPv4 address like 192.168.10.12."
  }
  validation {
    condition     = length(distinct([for w in var.workers : w.name])) == length(var.workers)
    error_message = "Worker names must be unique."
  }
}
