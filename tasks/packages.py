"""Debian packages, with one deliberate rule for apt metadata.

apt's package index is refreshed only when a package this deploy needs is missing, and then at most once per
host and run, however many steps need packages: the first step that finds one missing refreshes, later ones
install from that index. A rerun on a converged host therefore runs no `apt-get update` at all (it would count
as a change every time, and an index's age says nothing about whether the host is correct). A vendor
repository is refreshed alone (its list file only) when this run refreshed the rest already. Upgrades are the operator's decision,
not a side effect.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, server

from tasks.facts import snapshot
from tasks.phases import run_scoped, stage


def missing_packages(wanted: list[str], installed: dict) -> list[str]:
    return [name for name in wanted if name not in installed]


def _planned() -> set[str]:
    """Packages this run already installs on the current host (the facts were read before any install)."""
    planned: dict[str, set[str]] = run_scoped("apt-planned", dict)
    return planned.setdefault(host.name, set())


def _refreshed() -> set[str]:
    """Hosts whose apt index this run refreshes already."""
    refreshed: set[str] = run_scoped("apt-refreshed", set)
    return refreshed


@stage("Debian packages")
def ensure_packages(packages: list[str]) -> None:
    planned = _planned()
    missing = [name for name in missing_packages(packages, snapshot(DebPackages)) if name not in planned]
    if not missing:
        return
    if host.name not in _refreshed():
        _refreshed().add(host.name)
        apt.update(name=f"Refresh apt metadata (to install {', '.join(missing)}; once in this run)")
    apt.packages(name=f"Install {', '.join(missing)}", packages=missing, no_recommends=True)
    planned.update(missing)


@stage("Debian packages from a vendor repository")
def ensure_vendor_packages(repository: str, filename: str, line: str, packages: list[str]) -> None:
    """`packages` (pinned as `name=version`) from the apt repository `line`, written to sources.list.d/`filename`."""
    apt.repo(name=f"{repository} repository", filename=filename, src=line)
    installed = snapshot(DebPackages)
    missing = [p for p in packages if p.split("=", 1)[1] not in installed.get(p.split("=", 1)[0], [])]
    if not missing:
        return
    if host.name not in _refreshed():
        # The first refresh of this run: every source, this one included (its dependencies come from Debian).
        _refreshed().add(host.name)
        apt.update(name=f"Refresh apt metadata (to install {repository}; once in this run)")
    else:
        # The rest was refreshed earlier in this run: this repository's index alone.
        server.shell(
            name=f"Refresh apt metadata of the {repository} repository",
            commands=[
                f"apt-get update -o Dir::Etc::sourcelist=sources.list.d/{filename}.list "
                "-o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0"
            ],
        )
    apt.packages(name=f"{repository}: {', '.join(packages)}", packages=packages)
