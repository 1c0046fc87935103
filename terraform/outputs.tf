# The inventory contract: inventories/lab.py reads this (terraform output -json > lab-hosts.json, then
# LAB_TERRAFORM_OUTPUT=lab-hosts.json pyinfra inventories/lab.py deploy.py), so addresses are typed once.
output "inventory" {
  description = "Hosts by role: name, address and the SSH user pyinfra connects as."
  value = {
    for role in ["platform", "control_plane", "worker"] : role => [
      for h in module.lab.hosts : { name = h.name, address = h.address, ssh_user = var.ssh_user } if h.role == role
    ]
  }
}
