variable "hosts" {
  type = list(object({
    name      = string
    role      = string
    address   = string
    vcpu      = number
    memory_mb = number
    disk_gb   = number
  }))
  description = "VMs to create, each with its role and static address."
}

variable "base_image" {
  type        = string
  description = "Debian 13 (or 12) cloud image (qcow2): path on the KVM host or URL."
}

variable "storage_pool" {
  type        = string
  description = "libvirt storage pool for the disks."
}

variable "network" {
  type = object({
    mode    = string
    bridge  = string
    cidr    = string
    gateway = string
    dns     = list(string)
  })
  description = "Bridged or routed lab network, static addressing."
}

variable "ssh_user" {
  type        = string
  description = "User created by cloud-init."
}

variable "ssh_public_key" {
  type        = string
  description = "Public key authorized for ssh_user."
}
