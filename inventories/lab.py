"""The seed's lab: four machines with static addresses.

THE ADDRESSES BELOW ARE EXAMPLES. Edit them to match your network (and node_network / metallb_pool in
group_data/all.py), then run:  pyinfra inventories/lab.py deploy.py

Any number of workers works: add a line to `worker` and rerun.

With VMs from terraform/ (README: "Terraform for the lab VMs"), set LAB_TERRAFORM_OUTPUT to the file of
`tofu -chdir=terraform output -json`, and the hosts below are replaced by the ones Terraform created.
"""

import os

from tasks.inventory import hosts_from_terraform, node

if os.environ.get("LAB_TERRAFORM_OUTPUT"):
    # VMs created by terraform/: names, addresses and the SSH user come from its `inventory` output.
    _groups = hosts_from_terraform(os.environ["LAB_TERRAFORM_OUTPUT"])
    platform, control_plane, worker = _groups["platform"], _groups["control_plane"], _groups["worker"]
else:
    platform = [node("mini-pc", "192.168.10.10")]
    control_plane = [node("k8s-master", "192.168.10.11")]
    worker = [
        node("k8s-worker1", "192.168.10.12"),
        node("k8s-worker2", "192.168.10.13"),
    ]

# How pyinfra logs in. Use a user with passwordless sudo, or root; see the README's real-lab section.
lab = (
    [name for name, _ in platform + control_plane + worker],
    {"ssh_user": "root", "state_dir": "state/lab"},
)
