"""Helpers for inventory files: one line per host, the address written once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def node(name: str, address: str, **data: Any) -> tuple[str, dict[str, Any]]:
    """An inventory entry for a lab host.

    `address` is the host's static address on the lab network: it goes into /etc/hosts, chrony's allow
    list and the Kubernetes node IP. pyinfra connects to it too, unless `ssh_hostname` says otherwise
    (a jump host, a port forward, or a test double).
    """
    host_data = {"address": address, "ssh_hostname": address}
    host_data.update(data)
    return name, host_data


class InventoryError(RuntimeError):
    """An inventory input (such as a Terraform output file) is missing or malformed."""


ROLE_GROUPS = ("platform", "control_plane", "worker")


def hosts_from_terraform(path: str) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Groups of inventory entries from `terraform output -json` (or `tofu output -json`) of terraform/.

    Reads the `inventory` output: {role: [{name, address, ssh_user}]}. Both the full `output -json` file and
    `output -json inventory` (just the value) are accepted.
    """

    file = Path(path)
    if not file.exists():
        raise InventoryError(
            f"Terraform output file {path} (LAB_TERRAFORM_OUTPUT) does not exist: run "
            "`tofu -chdir=terraform output -json > lab-hosts.json`, or unset LAB_TERRAFORM_OUTPUT"
        )
    try:
        data = json.loads(file.read_text())
    except ValueError as exc:
        raise InventoryError(f"Terraform output file {path} is not JSON ({exc})") from None
    if isinstance(data, dict) and "inventory" in data:
        data = data["inventory"].get("value") if isinstance(data["inventory"], dict) else None
    if not isinstance(data, dict) or not all(isinstance(data.get(role), list) for role in ROLE_GROUPS):
        raise InventoryError(
            f"Terraform output file {path} has no `inventory` output with the lists "
            f"{', '.join(ROLE_GROUPS)}: is it the output of this repository's terraform/?"
        )
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for role in ROLE_GROUPS:
        entries = []
        for host in data[role]:
            if not isinstance(host, dict) or not {"name", "address"} <= host.keys():
                raise InventoryError(f"Terraform output file {path}: a {role} entry lacks name or address: {host!r}")
            extra = {"ssh_user": host["ssh_user"], "_sudo": host["ssh_user"] != "root"} if host.get("ssh_user") else {}
            entries.append(node(host["name"], host["address"], **extra))
        groups[role] = entries
    return groups


def load(path: str | Path, data: dict[str, Any] | None = None) -> Any:
    """The Inventory pyinfra's CLI would build from an inventory file and group_data, without connecting
    (for tools and tests that read settings outside a deploy); `data` as the CLI's --data would give it."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory  # the CLI's loader: imported only where it is used

    repo = Path(__file__).resolve().parent.parent
    with ctx_state.use(State()):
        return make_inventory(str(path), override_data=data, cwd=str(repo))
