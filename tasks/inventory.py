"""Helpers for inventory files: one line per host, the address written once."""

from __future__ import annotations

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
