terraform {
  # OpenTofu 1.10+ or Terraform 1.9+ (cross-variable validation conditions).
  required_version = ">= 1.9.0"
  required_providers {
    libvirt = {
      source  = "dmacvicar/libvirt"
      version = "= 0.8.3"
    }
  }
}
