"""The seed's lab: four machines with static addresses.

THE ADDRESSES BELOW ARE EXAMPLES. Edit them to match your network (and node_network / metallb_pool in
group_data/all.py), then run:  pyinfra inventories/lab.py deploy.py

Any number of workers works: add a line to `worker` and rerun; only the new host is joined.
"""

from tasks.inventory import node

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
