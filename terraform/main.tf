# The lab's VMs on one KVM host. The hypervisor-specific work lives in a module (modules/libvirt); a
# Proxmox module with the same variables and outputs can replace it (modules/proxmox/README.md).
provider "libvirt" {
  uri = var.libvirt_uri
}

locals {
  hosts = concat(
    var.create_platform ? [merge(var.platform, { role = "platform" })] : [],
    [merge(var.control_plane, { role = "control_plane" })],
    [for w in var.workers : merge(w, { role = "worker" })],
  )
}

module "lab" {
  source         = "./modules/libvirt"
  hosts          = local.hosts
  base_image     = var.base_image
  storage_pool   = var.storage_pool
  network        = var.network
  ssh_user       = var.ssh_user
  ssh_public_key = var.ssh_public_key
}
