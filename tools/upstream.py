"""Upstream source trees as pinned Go module zips from the Go module proxy: CRDs, charts and manifests.

No chart repository or GitHub is reachable offline, but the Go module proxy serves each project's source
tree at a release tag, and those trees hold the CRDs the charts install, the charts themselves and the
install manifests. Each zip is pinned by sha256 and cached in ~/.cache/gitops-lab/gomod. The validation
tests read CRD schemas from them; the mirror builder (tools/mirror.py) packs charts and manifests.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import requests

from tools.lab.constants import CACHE


@dataclass(frozen=True)
class ModuleSource:
    module: str
    version: str
    sha256: str
    files: tuple[str, ...]


# Versions match what the gitops repo deploys (tasks/gitops_repo.py) or the nearest tag the proxy serves.
SOURCES = {
    "metallb": ModuleSource(
        "go.universe.tf/metallb",
        "v0.16.1",
        "1d83d62cfb4fa119afc474d7a4969fb7df8ed1ffb355b8f3ba9f29090b2274d4",
        (
            "config/crd/bases/metallb.io_ipaddresspools.yaml",
            "config/crd/bases/metallb.io_l2advertisements.yaml",
            "charts/metallb/values.yaml",
            "charts/metallb/values.schema.json",
        ),
    ),
    "argo-cd": ModuleSource(
        "github.com/argoproj/argo-cd/v3",
        "v3.6.1",
        "f7fa21a39dae04e030aea81151ccaca0e7541fcff6cca0dd018671189cdf1de5",
        (
            "manifests/crds/application-crd.yaml",
            "manifests/crds/appproject-crd.yaml",
            "manifests/crds/applicationset-crd.yaml",
        ),
    ),
    # kube-prometheus-stack 88.x ships Prometheus Operator 0.93's CRDs.
    "prometheus-operator": ModuleSource(
        "github.com/prometheus-operator/prometheus-operator",
        "v0.93.0",
        "0975ee36a65fb70c6e16f7e0553e21c94f7e25323fef62857d428e62fd3abf11",
        tuple(
            f"example/prometheus-operator-crd/monitoring.coreos.com_{n}.yaml"
            for n in ("alertmanagerconfigs", "podmonitors", "probes", "prometheusrules", "servicemonitors")
        ),
    ),
    # The sealed-secrets chart 2.19.3 is in this tag's tree (its CRD has been stable across these releases).
    "sealed-secrets": ModuleSource(
        "github.com/bitnami-labs/sealed-secrets",
        "v0.40.0",
        "47a9508cf40e90a71e08691c461ac811e7b2ea18ec3142aba3ce0b973974d357",
        ("helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml",),
    ),
    # The default StorageClass's provisioner (deploy/local-path-storage.yaml).
    "local-path-provisioner": ModuleSource(
        "github.com/rancher/local-path-provisioner",
        "v0.0.37",
        "cb7f5255c208b75f0326e713371da43c54ac36ba59b09bc30ce0faba0d1375cf",
        (),
    ),
    # The Cilium chart (install/kubernetes/cilium) for the CNI step of post-bootstrap; no CRDs of its own.
    "cilium": ModuleSource(
        "github.com/cilium/cilium", "v1.20.2", "8876f17c696b7bd0e629708df542ca2ec0c3bf5b158fafac5ebd9c250223d50f", ()
    ),
}


def cache_dir() -> Path:
    return CACHE / "gomod"


def proxy_url() -> str:
    for entry in os.environ.get("GOPROXY", "https://proxy.golang.org").split(","):
        if entry.startswith("http"):
            return entry.rstrip("/")
    return "https://proxy.golang.org"


def module_zip(source: ModuleSource) -> Path:
    """The module's zip, downloaded once and verified against its pinned sha256."""
    target = cache_dir() / f"{source.module.replace('/', '_')}@{source.version}.zip"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        url = f"{proxy_url()}/{source.module}/@v/{source.version}.zip"
        response = requests.get(url, timeout=300)
        response.raise_for_status()
        tmp = target.with_suffix(".part")
        tmp.write_bytes(response.content)
        tmp.rename(target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != source.sha256:
        target.unlink()
        raise RuntimeError(f"{source.module}@{source.version}: sha256 {digest} does not match the pin {source.sha256}")
    return target


def read_files(name: str) -> dict[str, str]:
    source = SOURCES[name]
    prefix = f"{source.module}@{source.version}/"
    with zipfile.ZipFile(module_zip(source)) as archive:
        return {path: archive.read(prefix + path).decode() for path in source.files}


def chart_archive(name: str, chart_dir: str) -> bytes:
    """A Helm chart archive (tar.gz, `<chart>/...`) packed from a chart folder of a pinned module's tree."""
    import gzip
    import io
    import tarfile

    source = SOURCES[name]
    prefix = f"{source.module}@{source.version}/{chart_dir.rstrip('/')}/"
    chart = Path(chart_dir).name
    buffer = io.BytesIO()
    with zipfile.ZipFile(module_zip(source)) as archive, tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in sorted(archive.namelist()):
            if member.startswith(prefix) and not member.endswith("/"):
                data = archive.read(member)
                info = tarfile.TarInfo(f"{chart}/{member[len(prefix) :]}")
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def read_file(name: str, path: str) -> str:
    """Any file of a pinned module's tree (e.g. Argo CD's manifests/install.yaml)."""
    source = SOURCES[name]
    with zipfile.ZipFile(module_zip(source)) as archive:
        return archive.read(f"{source.module}@{source.version}/{path}").decode()
