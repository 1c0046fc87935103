"""The local lab's fixed points, shared by the lab tool, the mirror builder and inventories/sandbox.py.

Lab hosts live on the private bridge `lab0` (198.51.100.0/24, documentation addresses never routed
anywhere); the bridge address serves them the apt proxy and the artifact mirror. Nothing here is used by a
deploy to real machines.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The lab tool's state: base image, machines, SSH key, apt cache (`down` keeps the caches).
LAB_DIR = Path(os.environ.get("LAB_DIR", "/var/tmp/gitops-lab"))
# Builds from source (Go module cache, binaries, the artifact mirror), kept between runs.
CACHE = Path(os.environ.get("GITOPS_LAB_CACHE", Path.home() / ".cache" / "gitops-lab"))
MIRROR_DIR = Path(os.environ.get("LAB_MIRROR_DIR", CACHE / "mirror"))
# Upstream charts and source trees that cannot be fetched here (their SOURCES.md gives each one's sha256):
# build input for some of the lab's images, never part of this repository.
# Default: `shared/sources` beside the checkout, else this workplace's copy.
SOURCES_DIR = Path(
    os.environ.get(
        "GITOPS_LAB_SOURCES",
        next(
            (
                p
                for p in (Path(__file__).resolve().parents[3] / "shared" / "sources", Path("/work/shared/sources"))
                if p.exists()
            ),
            Path("/work/shared/sources"),
        ),
    )
)

# Debian packages for the lab's base image and the images' root filesystems (this machine's mirror).
DEBIAN_MIRROR = os.environ.get("LAB_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# How many workers the lab runs (LAB_WORKERS, 1-16): `up` records the number it booted, so the sandbox
# inventory, `status` and `down` follow a running lab without the variable; `down` forgets it.
DEFAULT_WORKERS = 2
MAX_WORKERS = 16
WORKERS_FILE = LAB_DIR / "workers"


def lab_workers() -> int:
    wanted = os.environ.get("LAB_WORKERS") or (WORKERS_FILE.read_text().strip() if WORKERS_FILE.exists() else "")
    if not wanted:
        return DEFAULT_WORKERS
    if not wanted.isdigit() or not 1 <= int(wanted) <= MAX_WORKERS:
        raise ValueError(f"LAB_WORKERS={wanted!r}: the lab runs 1 to {MAX_WORKERS} workers (198.51.100.12 onwards)")
    return int(wanted)


# The lab's app set (LAB_APPS): "all" (the default) is every Application the lab can run
# (inventories/sandbox.py says what it leaves out and why); "none" installs Argo CD and leaves every
# Application out: the Debian 12 layer's choice (tests/releases), since above the kubelet nothing depends
# on the host's release and syncing the apps would only load the CPUs while its rerun and testinfra run.
LAB_APP_SETS = ("all", "none")


def lab_apps() -> str:
    wanted = os.environ.get("LAB_APPS") or "all"
    if wanted not in LAB_APP_SETS:
        raise ValueError(f"LAB_APPS={wanted!r}: use one of {', '.join(LAB_APP_SETS)} (or leave it unset: all)")
    return wanted


BRIDGE = "lab0"
BRIDGE_NET = ipaddress.ip_network("198.51.100.0/24")
BRIDGE_ADDR = "198.51.100.1"
APT_PROXY_PORT = 3142
MIRROR_PORT = 8088
MIRROR_URL = f"http://{BRIDGE_ADDR}:{MIRROR_PORT}"
# The Helm repository inside the mirror (index.yaml and the charts): the sandbox's helm_chart_mirror.
CHARTS_FOLDER = "charts"
CHART_MIRROR_URL = f"{MIRROR_URL}/{CHARTS_FOLDER}"
SSH_KEY = LAB_DIR / "ssh" / "id_ed25519"
