"""Pinned downloads: every binary and archive the deploy fetches, verified by sha256, from upstream or a mirror.

`artifacts` in group_data names each download with its version, sha256 and upstream URL. With
`artifact_mirror` set, the same file is fetched from `<mirror>/<upstream host>/<upstream path>` instead,
so a mirror is filled by copying the upstream URLs below one directory (README: "Artifact mirror
layout"); the sha256 stays the same, and pyinfra refuses a file whose checksum differs.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pyinfra import host
from pyinfra.operations import files, server

from tasks import downloads
from tasks.facts import ShellChecks
from tasks.packages import ensure_packages
from tasks.phases import stage
from tasks.settings import Settings
from tasks.state import LocalState

DOWNLOAD_DIR = "/var/cache/gitops-lab/downloads"
# One file per unpacked archive, holding the sha256 it was unpacked from: an interrupted unpack is redone.
UNPACKED_MARKS = "/var/lib/gitops-lab/unpacked"


def upstream_url(settings: Settings, name: str) -> str:
    spec = settings.artifacts[name]
    return spec["url"].format(version=spec["version"])


def mirror_path(url: str) -> str:
    """Where a mirror keeps the file of an upstream URL: <host>/<path>."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def source_url(settings: Settings, name: str) -> str:
    url = upstream_url(settings, name)
    return f"{settings.artifact_mirror}/{mirror_path(url)}" if settings.artifact_mirror else url


def file_name(settings: Settings, name: str) -> str:
    return urlsplit(upstream_url(settings, name)).path.rsplit("/", 1)[-1]


def fetch_local(settings: Settings, state: LocalState, name: str) -> bytes:
    """A pinned artifact on the operator's machine (cached in the state folder, verified on every use)."""
    spec = settings.artifacts[name]
    cache = state.downloads / f"{name}-{spec['version']}-{file_name(settings, name)}"
    return downloads.fetch_verified(source_url(settings, name), spec["sha256"], cache, f"{name} {spec['version']}")


@stage("Download a pinned artifact")
def fetch(settings: Settings, name: str, dest: str, mode: str = "644"):
    """Download artifact `name` to `dest`; a file already there with the pinned sha256 is kept.

    Returns the download operation (after it ran, `did_change` tells whether the file is new)."""
    spec = settings.artifacts[name]
    ensure_packages(["curl"])  # pyinfra's files.download runs curl (or wget) on the host
    files.directory(name=f"Directory {dest.rsplit('/', 1)[0]}", path=dest.rsplit("/", 1)[0], present=True)
    return files.download(
        name=f"Download {name} {spec['version']} (sha256 pinned)",
        src=source_url(settings, name),
        dest=dest,
        sha256sum=spec["sha256"],
        mode=mode,
    )


APT_KEYRINGS = "/etc/apt/keyrings"


def apt_keyring(settings: Settings, name: str) -> str:
    """A vendor's repository signing key (artifact `name`, ASCII-armoured, pinned) where apt lines can name it
    with signed-by, so it vouches for that repository alone. Returns its path on the host."""
    path = f"{APT_KEYRINGS}/{name}.asc"
    fetch(settings, name, path)
    return path


@stage("Unpack a pinned archive")
def unpack(settings: Settings, name: str, into: str, members: list[str] | None = None):
    """Download archive `name` and unpack it into `into`, again whenever its sha256 changes.

    The mark is written after tar succeeded, so a run cut off in between unpacks again. Returns the
    unpack operation, or None when the archive is unpacked already.
    """
    spec = settings.artifacts[name]
    archive = f"{DOWNLOAD_DIR}/{file_name(settings, name)}"
    fetch(settings, name, archive)
    mark = f"{UNPACKED_MARKS}/{name}"
    unpacked = host.get_fact(ShellChecks, checks={name: f"grep -qx {spec['sha256']} {mark} 2>/dev/null"})
    if unpacked.get(name):
        return None
    return server.shell(
        name=f"Unpack {name} {spec['version']} into {into}",
        commands=[
            f"mkdir -p {into} {UNPACKED_MARKS}",
            f"tar -xzf {archive} -C {into} --no-same-owner {' '.join(members or [])}".rstrip(),
            f"echo {spec['sha256']} > {mark}",
        ],
    )
