terraform {
  required_providers {
    libvirt = {
      # without this, a module's libvirt resources would resolve to hashicorp/libvirt, which does not exist
      source = "dmacvicar/libvirt"
    }
  }
}
