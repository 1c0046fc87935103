output "hosts" {
  description = "Every VM with its role and static address."
  value       = [for h in var.hosts : { name = h.name, role = h.role, address = h.address, id = libvirt_domain.vm[h.name].id }]
}
