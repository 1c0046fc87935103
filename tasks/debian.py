"""The Debian releases this deploy supports, and what differs between them.

Every host's release comes from its own facts (/etc/os-release through pyinfra's LinuxDistribution), never
from a constant, so one inventory may mix Debian 12 and 13 hosts. Preflight refuses any other release before
a host is touched. What differs, and why the rest does not (docs/real-lab.md, "Supported releases"):

- The codename in the GitLab and GitLab Runner package repository lines: per release, below.
- Docker's command line: Debian 13 moved it out of `docker.io` into `docker-cli` (only recommended, and the
  deploy installs without recommends), so the platform host installs both there.
- Nothing else the deploy touches. Every other Debian package it installs has the same name in both releases
  (the lab installs each of them on both, in CI). chrony (4.3 / 4.6) keeps /etc/chrony/chrony.conf and the
  `chrony` unit; kmod, /etc/modules-load.d and /etc/sysctl.d work alike (Debian 13 ships no
  /etc/sysctl.conf, which the deploy never used); containerd, runc, the CNI plugins and the Kubernetes
  binaries are pinned release downloads, the same files on both. Debian 13 mounts /tmp as a RAM-backed tmpfs:
  the deploy keeps its downloads under /var/cache, so that does not matter either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyinfra import host
from pyinfra.facts.server import LinuxDistribution

from tasks.facts import snapshot


@dataclass(frozen=True)
class DebianRelease:
    codename: str
    version: int
    # The suite GitLab's package repositories (gitlab-ce and gitlab-runner) publish for this release.
    gitlab_suite: str
    # Docker's engine and its command line (the runner drives the engine; operators use the CLI).
    docker_packages: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"Debian {self.version} ({self.codename})"


SUPPORTED_RELEASES = {
    release.codename: release
    for release in (
        DebianRelease(codename="bookworm", version=12, gitlab_suite="bookworm", docker_packages=("docker.io",)),
        DebianRelease(
            codename="trixie", version=13, gitlab_suite="trixie", docker_packages=("docker.io", "docker-cli")
        ),
    )
}
NEWEST = max(SUPPORTED_RELEASES.values(), key=lambda r: r.version)


def supported_list() -> str:
    return ", ".join(r.label for r in sorted(SUPPORTED_RELEASES.values(), key=lambda r: r.version))


def describe(distribution: dict[str, Any]) -> str:
    """'Debian 11 (bullseye)', 'Ubuntu 24.04 (noble)', or what little the facts say."""
    meta = distribution.get("release_meta") or {}
    name = distribution.get("name") or meta.get("ID") or "an unknown system"
    version = meta.get("VERSION_ID") or (str(distribution["major"]) if distribution.get("major") else "")
    codename = meta.get("VERSION_CODENAME") or meta.get("CODENAME") or ""
    return f"{name} {version}".strip() + (f" ({codename})" if codename else "")


def release_problem(distribution: dict[str, Any]) -> str | None:
    """Why a host with these facts cannot be deployed, in one sentence with its fix; None when supported."""
    if find_release(distribution) is not None:
        return None
    return (
        f"{describe(distribution)} is not a supported release (supported: {supported_list()}). "
        f"Fix: install {NEWEST.label} on it"
    )


def find_release(distribution: dict[str, Any]) -> DebianRelease | None:
    meta = distribution.get("release_meta") or {}
    if (meta.get("ID") or str(distribution.get("name") or "").lower()) != "debian":
        return None
    release = SUPPORTED_RELEASES.get(meta.get("VERSION_CODENAME") or meta.get("CODENAME") or "")
    # Debian testing and unstable carry the next codename but no VERSION_ID: not a release yet.
    if release is None or str(meta.get("VERSION_ID", "")) != str(release.version):
        return None
    return release


def host_release() -> DebianRelease:
    """The current host's release (preflight has refused unsupported ones before any change)."""
    distribution: Any = snapshot(LinuxDistribution)
    release = find_release(distribution)
    if release is None:
        raise RuntimeError(f"{host.name}: {release_problem(distribution)}")
    return release
