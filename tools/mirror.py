#!/usr/bin/env python3
"""Build the local artifact mirror the lab installs from: every download named in group_data's `artifacts`
that has a source here (containerd, runc, the CNI plugins, kubeadm, kubelet, kubectl, kubeseal, Argo CD's
install manifest, the Cilium chart, local-path-provisioner), built from source through the Go module proxy
at the pinned versions, packed like their upstream release files and laid out as
`<mirror>/<upstream host>/<upstream path>`, with each release's checksum file in upstream's format.

    .venv/bin/python -m tools.mirror [DEST]     (default ~/.cache/gitops-lab/mirror; `make mirror`)

It also writes DEST/artifacts.json, an artifacts lock file (the format of group_data/artifacts.lock.json)
with the sha256 of these builds, which the sandbox inventory uses as its `artifacts_lock` (a build from
source cannot have upstream's checksums). A mirror for a real air-gapped lab has the same layout, filled
from the upstream URLs (docs/artifacts.md). Builds are cached per version; archives are reproducible.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tasks.artifacts import mirror_path
from tasks.gitops_repo import PLATFORM_APPS
from tasks.settings import lock_entry
from tools.buildlock import build_lock, write_atomically
from tools.gobuild import SOURCE_BUILDS, _go, _run, go_env, go_tool, kube_build, kube_version
from tools.lab.constants import CACHE, CHARTS_FOLDER, MIRROR_DIR
from tools.upstream import SOURCES, ChartUnavailable, chart, chart_archive, chart_files, read_file

ROOT = Path(__file__).resolve().parents[1]
LOCK_FILE = "artifacts.json"

CNI_PLUGINS = [
    "main/bridge",
    "main/loopback",
    "main/host-device",
    "ipam/host-local",
    "meta/portmap",
    "meta/bandwidth",
    "meta/firewall",
    "meta/tuning",
]
TIMES: dict[str, float] = {}


def group_data_artifacts() -> dict[str, dict[str, str]]:
    namespace: dict = {}
    exec(compile((ROOT / "group_data" / "all.py").read_text(), "group_data/all.py", "exec"), namespace)
    return namespace["artifacts"]


def _go_install(
    packages: list[str], version: str, out: Path, tags: str = "", cgo: bool = False, ldflags: str = ""
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [_go(), "install"] + (["-tags", tags] if tags else []) + (["-ldflags", ldflags] if ldflags else [])
    cmd += [f"{p}@{version}" for p in packages]
    _run(cmd, go_env(cgo, GOBIN=str(out)))


def _tar(members: dict[str, Path], dest: Path) -> None:
    """A reproducible tar.gz (fixed owner and mtime) holding `members` (archive name -> file)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime, info.uid, info.gid = path.stat().st_size, 0o755, 0, 0, 0
            with open(path, "rb") as f:
                tar.addfile(info, f)
    with gzip.GzipFile(dest, "wb", mtime=0) as gz:
        gz.write(buffer.getvalue())


def _containerd(version: str, out: Path, target: Path) -> None:
    commands = ("containerd", "containerd-shim-runc-v2", "ctr")
    # The static release build leaves out the btrfs, devmapper and zfs snapshotters the same way.
    # The release build stamps the version (`containerd --version`: v2.3.7, not 2.3.7+unknown).
    _go_install(
        [f"github.com/containerd/containerd/v2/cmd/{c}" for c in commands],
        f"v{version}",
        out,
        tags="no_btrfs no_devmapper no_zfs",
        ldflags=f"-X github.com/containerd/containerd/v2/version.Version=v{version}",
    )
    _tar({f"bin/{c}": out / c for c in commands}, target)


def _runc(version: str, out: Path, target: Path) -> None:
    _go_install(["github.com/opencontainers/runc"], f"v{version}", out, tags="seccomp", cgo=True)
    shutil.copyfile(out / "runc", target)


def _cni_plugins(version: str, out: Path, target: Path) -> None:
    _go_install([f"github.com/containernetworking/plugins/plugins/{p}" for p in CNI_PLUGINS], f"v{version}", out)
    _tar({f"./{p.split('/')[1]}": out / p.split("/")[1] for p in CNI_PLUGINS}, target)


def _kube(name: str) -> Callable[[str, Path, Path], None]:
    def make(version: str, _out: Path, target: Path) -> None:
        if kube_version() != f"v{version}":
            raise RuntimeError(
                f"artifacts.{name} is {version} but tools/kube/go.mod builds {kube_version()}: bump them together"
            )
        shutil.copyfile(kube_build([name])[name], target)

    return make


def _argocd_install(version: str, _out: Path, target: Path) -> None:
    assert SOURCES["argo-cd"].version == f"v{version}", "argocd-install and tools/upstream.py disagree"
    target.write_text(read_file("argo-cd", "manifests/install.yaml"))


def _kubeseal(version: str, _out: Path, target: Path) -> None:
    assert SOURCE_BUILDS["kubeseal"].version == f"v{version}", "kubeseal and tools/gobuild.py disagree"
    _tar({"kubeseal": go_tool("kubeseal")}, target)


def _cilium_chart(version: str, _out: Path, target: Path) -> None:
    assert SOURCES["cilium"].version == f"v{version}", "cilium-chart and tools/upstream.py disagree"
    target.write_bytes(chart_archive("cilium", "install/kubernetes/cilium"))


def _local_path_provisioner(version: str, _out: Path, target: Path) -> None:
    assert SOURCES["local-path-provisioner"].version == f"v{version}"
    target.write_text(read_file("local-path-provisioner", "deploy/local-path-storage.yaml"))


# Calico's chart and the NFS provisioner's chart have no source the Go module proxy serves: the local
# mirror leaves them out (the sandbox inventory uses Cilium and local-path).
BUILDERS: dict[str, Callable[[str, Path, Path], None]] = {
    "containerd": _containerd,
    "runc": _runc,
    "cni-plugins": _cni_plugins,
    "kubeadm": _kube("kubeadm"),
    "kubelet": _kube("kubelet"),
    "kubectl": _kube("kubectl"),
    "argocd-install": _argocd_install,
    "kubeseal": _kubeseal,
    "cilium-chart": _cilium_chart,
    "local-path-provisioner": _local_path_provisioner,
}


def _checksum_file(mirror: Path, spec: dict[str, str], url: str, digest: str) -> None:
    """The release's checksum file, in its own format: `<sha256>  <file>`, or the bare sha256 (dl.k8s.io)."""
    checksum_url = spec["checksums"].format(url=url, version=spec["version"])
    file_name = url.rsplit("/", 1)[1]
    line = f"{digest}\n" if "dl.k8s.io" in checksum_url else f"{digest}  {file_name}\n"
    path = mirror / mirror_path(checksum_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line)


# The platform apps whose charts the lab's mirror serves as a Helm repository (tools/upstream.py says where
# each chart comes from); the others are not in the lab's set yet (docs/lab.md).
LAB_CHARTS = ("sealed-secrets", "metrics-server", "metallb", "kube-prometheus-stack")
# index.yaml and the archives carry fixed times, so a rebuild of the same charts is byte for byte the same.
EPOCH = "1970-01-01T00:00:00Z"


def build_chart_repository(mirror: Path) -> Path:
    """A Helm repository (index.yaml and one archive per chart) in <mirror>/charts, holding each LAB_CHARTS
    chart at the version gitops-repo pins."""
    folder = mirror / CHARTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    pinned = {app.name: app for app in PLATFORM_APPS}
    entries: dict[str, list[dict]] = {}
    for app_name in LAB_CHARTS:
        app = pinned[app_name]
        try:
            archive = chart(app.chart, app.version)
        except ChartUnavailable as exc:
            raise SystemExit(str(exc)) from None
        metadata = yaml.safe_load(chart_files(archive)[f"{app.chart}/Chart.yaml"])
        file_name = f"{app.chart}-{app.version}.tgz"
        (folder / file_name).write_bytes(archive)
        digest = hashlib.sha256(archive).hexdigest()
        entries[app.chart] = [{**metadata, "digest": digest, "urls": [file_name], "created": EPOCH}]
    index = {"apiVersion": "v1", "entries": entries, "generated": EPOCH}
    (folder / "index.yaml").write_text(yaml.safe_dump(index, sort_keys=True))
    return folder


def _build_artifact(name: str, version: str, target: Path) -> None:
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    BUILDERS[name](version, CACHE / "mirror-build" / f"{name}-{version}", partial)
    partial.rename(target)  # a build cut off never leaves a file that looks complete
    TIMES[f"build {name} {version}"] = time.monotonic() - started


def build_mirror(mirror: Path, names: list[str] | None = None) -> dict[str, dict[str, str]]:
    """Build (or reuse) the named artifacts (default: all, and the Helm repository of LAB_CHARTS) and return
    them in group_data's format."""
    pinned = group_data_artifacts()
    result = {}
    for name in names or [n for n in pinned if n in BUILDERS]:
        spec = dict(pinned[name])
        url = spec["url"].format(version=spec["version"])
        target = mirror / mirror_path(url)
        if not target.exists():
            with build_lock(f"mirror-{name}-{spec['version']}"):
                if not target.exists():  # another process may have built it while this one waited
                    _build_artifact(name, spec["version"], target)
        spec["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
        if spec.get("checksums"):
            _checksum_file(mirror, spec, url, spec["sha256"])
        result[name] = spec
    if names is None:  # the sandbox inventory reads it: only a complete mirror may write it
        with build_lock("mirror-charts"):
            build_chart_repository(mirror)
        lock = {name: lock_entry(spec, spec["sha256"]) for name, spec in result.items()}
        write_atomically(mirror / LOCK_FILE, json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return result


if __name__ == "__main__":
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else MIRROR_DIR
    for name, spec in build_mirror(dest).items():
        print(
            f"{name} {spec['version']}: {mirror_path(spec['url'].format(version=spec['version']))} "
            f"sha256 {spec['sha256']}"
        )
    print(f"Helm repository {dest / CHARTS_FOLDER}: {', '.join(sorted(LAB_CHARTS))}")
    for what, seconds in TIMES.items():
        print(f"{what}: {seconds:.0f}s")
