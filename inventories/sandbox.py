"""Sandbox inventory: the four local lab hosts that `python3 tests/lab/lab.py up` runs on this machine.

Same roles and host names as inventories/lab.py, on the private lab bridge 198.51.100.0/24 (the bridge
itself is .1). The lab tool reads this file to know which machines to create, so the two never disagree.
"""

import json
import os
from pathlib import Path

from tasks.inventory import node

# The lab tool keeps its state (base image, machines, SSH key) here; the SSH key is how pyinfra logs in.
LAB_DIR = os.environ.get("LAB_DIR", "/var/tmp/gitops-lab")

_ssh = {
    "ssh_user": "root",
    "ssh_key": f"{LAB_DIR}/ssh/id_ed25519",
    # The lab recreates host keys whenever a machine is rebuilt; trusting them blindly is fine on a
    # private bridge on this machine, and never done in inventories/lab.py.
    "ssh_known_hosts_file": "/dev/null",
    "ssh_strict_host_key_checking": "no",
    "ssh_connect_timeout": 5,
}

platform = [node("mini-pc", "198.51.100.10", **_ssh)]
control_plane = [node("k8s-master", "198.51.100.11", **_ssh)]
worker = [
    node("k8s-worker1", "198.51.100.12", **_ssh),
    node("k8s-worker2", "198.51.100.13", **_ssh),
]

# The artifact mirror the lab tool serves on the bridge (built by `make mirror`). Its files are built from
# source, so their sha256s are the mirror's own (artifacts.json), not upstream's.
MIRROR_DIR = Path(os.environ.get("LAB_MIRROR_DIR", Path(os.environ.get(
    "GITOPS_LAB_CACHE", Path.home() / ".cache" / "gitops-lab")) / "mirror"))
_mirror_pins = MIRROR_DIR / "artifacts.json"
_artifacts = {"artifacts": json.loads(_mirror_pins.read_text())} if _mirror_pins.exists() else {}

# Group-wide overrides for the sandbox: the lab network instead of the example 192.168.10.0/24.
sandbox = (
    [name for name, _ in platform + control_plane + worker],
    {
        "node_network": "198.51.100.0/24",
        "metallb_pool": "198.51.100.200-198.51.100.220",
        "state_dir": "state/sandbox",
        # No package source is reachable from the lab: GitLab and the runner are skipped, with the reason.
        "gitlab_package_source": "",
        "artifact_mirror": "http://198.51.100.1:8088",
        # Cilium's chart is in its Go module, so the local mirror can hold it; Calico's chart is not.
        "cni": "cilium",
        **_artifacts,
    },
)
