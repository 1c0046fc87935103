#!/usr/bin/env python3
"""Build the local artifact mirror the cluster phase installs from: containerd, runc and the CNI plugins,
built from source through the Go module proxy, packed exactly as their upstream release archives and laid
out under the same paths as their GitHub release URLs, each with a `.sha256` file.

    python3 tests/mirror/build_mirror.py [DEST]     (default ~/.cache/gitops-lab/mirror)

A mirror for a real air-gapped lab has the same layout, filled from the upstream release URLs on a
machine with internet (README: "Artifact mirror layout"). Builds are cached per version.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.tools import CACHE, _go, _run, go_env  # noqa: E402

CONTAINERD_VERSION = "2.3.7"
RUNC_VERSION = "1.5.2"
CNI_VERSION = "1.9.1"
CNI_PLUGINS = ["main/bridge", "main/loopback", "main/host-device", "ipam/host-local", "meta/portmap",
               "meta/bandwidth", "meta/firewall", "meta/tuning"]
TIMES: dict[str, float] = {}


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    path: str  # path below the mirror root == path of the upstream URL below https://github.com
    sha256: str


def _build(packages: list[str], version_module: str, out: Path, tags: str = "", cgo: bool = False) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [_go(), "install"] + (["-tags", tags] if tags else []) + [f"{p}@{version_module}" for p in packages]
    _run(cmd, go_env(cgo, GOBIN=str(out)))


def _tar(members: dict[str, Path], dest: Path) -> None:
    """A reproducible tar.gz (fixed owner and mtime) holding `members` (archive name -> file)."""
    import gzip

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = path.stat().st_size, 0o755, 0, 0, 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(dest, "wb", mtime=0) as gz:
        gz.write(buffer.getvalue())


def _publish(mirror: Path, name: str, version: str, rel: str) -> Artifact:
    digest = hashlib.sha256((mirror / rel).read_bytes()).hexdigest()
    (mirror / f"{rel}.sha256").write_text(f"{digest}  {Path(rel).name}\n")
    return Artifact(name, version, rel, digest)


def _artifact(mirror: Path, name: str, version: str, rel: str, make: Callable[[Path, Path], None]) -> Artifact:
    """Build one artifact with make(build_dir, target) unless the mirror has it already, then publish it."""
    if not (mirror / rel).exists():
        started = time.monotonic()
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        make(CACHE / "mirror-build" / f"{name}-{version}", mirror / rel)
        TIMES[f"build {name} {version}"] = time.monotonic() - started
    return _publish(mirror, name, version, rel)


def _containerd(out: Path, target: Path) -> None:
    commands = ("containerd", "containerd-shim-runc-v2", "ctr")
    _build([f"github.com/containerd/containerd/v2/cmd/{c}" for c in commands], f"v{CONTAINERD_VERSION}", out,
           tags="no_btrfs no_devmapper no_zfs")
    _tar({f"bin/{c}": out / c for c in commands}, target)


def _runc(out: Path, target: Path) -> None:
    _build(["github.com/opencontainers/runc"], f"v{RUNC_VERSION}", out, tags="seccomp", cgo=True)
    target.write_bytes((out / "runc").read_bytes())


def _cni_plugins(out: Path, target: Path) -> None:
    _build([f"github.com/containernetworking/plugins/plugins/{p}" for p in CNI_PLUGINS], f"v{CNI_VERSION}", out)
    _tar({f"./{p.split('/')[1]}": out / p.split("/")[1] for p in CNI_PLUGINS}, target)


def build_mirror(mirror: Path) -> list[Artifact]:
    releases = "releases/download"
    artifacts = [
        _artifact(mirror, "containerd", CONTAINERD_VERSION,
                  f"containerd/containerd/{releases}/v{CONTAINERD_VERSION}/containerd-{CONTAINERD_VERSION}-linux-amd64.tar.gz",
                  _containerd),
        _artifact(mirror, "runc", RUNC_VERSION, f"opencontainers/runc/{releases}/v{RUNC_VERSION}/runc.amd64", _runc),
        _artifact(mirror, "cni-plugins", CNI_VERSION,
                  f"containernetworking/plugins/{releases}/v{CNI_VERSION}/cni-plugins-linux-amd64-v{CNI_VERSION}.tgz",
                  _cni_plugins),
    ]
    (mirror / "artifacts.json").write_text(json.dumps([a.__dict__ for a in artifacts], indent=2) + "\n")
    return artifacts


if __name__ == "__main__":
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE / "mirror"
    for artifact in build_mirror(dest):
        print(f"{artifact.name} {artifact.version}: {artifact.path} sha256 {artifact.sha256}")
    for what, seconds in TIMES.items():
        print(f"{what}: {seconds:.0f}s")
