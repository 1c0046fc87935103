resource "libvirt_volume" "base" {
  name   = "gitops-lab-debian-base.qcow2"
  pool   = var.storage_pool
  source = var.base_image
  format = "qcow2"
}

resource "libvirt_volume" "disk" {
  for_each       = { for h in var.hosts : h.name => h }
  name           = "${each.key}.qcow2"
  pool           = var.storage_pool
  base_volume_id = libvirt_volume.base.id
  size           = each.value.disk_gb * 1024 * 1024 * 1024
  format         = "qcow2"
}

resource "libvirt_network" "lab" {
  count     = var.network.mode == "route" ? 1 : 0
  name      = "gitops-lab"
  mode      = "route"
  addresses = [var.network.cidr]
  autostart = true
  dhcp {
    enabled = false
  }
}

resource "libvirt_cloudinit_disk" "init" {
  for_each = { for h in var.hosts : h.name => h }
  name     = "${each.key}-cloudinit.iso"
  pool     = var.storage_pool
  user_data = templatefile("${path.module}/cloud-init.yaml.tftpl", {
    hostname       = each.key
    ssh_user       = var.ssh_user
    ssh_public_key = var.ssh_public_key
  })
  network_config = templatefile("${path.module}/network-config.yaml.tftpl", {
    address = "${each.value.address}/${split("/", var.network.cidr)[1]}"
    gateway = var.network.gateway
    dns     = var.network.dns
  })
}

resource "libvirt_domain" "vm" {
  for_each  = { for h in var.hosts : h.name => h }
  name      = each.key
  vcpu      = each.value.vcpu
  memory    = each.value.memory_mb
  cloudinit = libvirt_cloudinit_disk.init[each.key].id
  autostart = true

  cpu {
    mode = "host-passthrough"
  }

  disk {
    volume_id = libvirt_volume.disk[each.key].id
  }

  network_interface {
    bridge     = var.network.mode == "bridge" ? var.network.bridge : null
    network_id = var.network.mode == "route" ? libvirt_network.lab[0].id : null
  }

  console {
    type        = "pty"
    target_type = "serial"
    target_port = "0"
  }
}
