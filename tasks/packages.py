"""Debian packages, with one deliberate rule for apt metadata.

apt's package index is refreshed only when a package this deploy needs is missing. A rerun on a converged
host therefore runs no `apt-get update` at all (it would count as a change every time, and an index's age
says nothing about whether the host is correct). Upgrades are the operator's decision, not a side effect.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt


def missing_packages(wanted: list[str], installed: dict) -> list[str]:
    return [name for name in wanted if name not in installed]


@deploy("Debian packages")
def ensure_packages(packages: list[str]) -> None:
    missing = missing_packages(packages, host.get_fact(DebPackages))
    if not missing:
        return
    apt.update(name=f"Refresh apt metadata (to install {', '.join(missing)})")
    apt.packages(name=f"Install {', '.join(missing)}", packages=missing, no_recommends=True)
