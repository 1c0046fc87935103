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

from tools.lab.constants import CACHE, SOURCES_DIR


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
    # The metrics-server chart: v0.9.0's tree holds chart 3.13.1 (v0.8.0's holds 3.12.2; no tag holds 3.13.0).
    "metrics-server": ModuleSource(
        "sigs.k8s.io/metrics-server",
        "v0.9.0",
        "cfca13655abaceab95e8c226cab8885ff43c3d8d7115f8cbe15288857c35c507",
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
    source = SOURCES[name]
    prefix = f"{source.module}@{source.version}/{chart_dir.rstrip('/')}/"
    chart = Path(chart_dir).name
    with zipfile.ZipFile(module_zip(source)) as archive:
        files = {
            f"{chart}/{member[len(prefix) :]}": archive.read(member)
            for member in archive.namelist()
            if member.startswith(prefix) and not member.endswith("/")
        }
    return pack_chart(files)


def chart_files(archive: bytes) -> dict[str, bytes]:
    """Every file of a chart archive (tar.gz) by its path, e.g. `traefik/Chart.yaml`."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def pack_chart(files: dict[str, bytes]) -> bytes:
    """A chart archive of `files` (path -> content), reproducible: sorted, fixed mode and times."""
    import gzip
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def read_file(name: str, path: str) -> str:
    """Any file of a pinned module's tree (e.g. Argo CD's manifests/install.yaml)."""
    source = SOURCES[name]
    with zipfile.ZipFile(module_zip(source)) as archive:
        return archive.read(f"{source.module}@{source.version}/{path}").decode()


# Charts that sit in a pinned module's tree: chart name -> (SOURCES key, the chart's folder in that tree).
MODULE_CHARTS = {
    "sealed-secrets": ("sealed-secrets", "helm/sealed-secrets"),
    "metallb": ("metallb", "charts/metallb"),
    "metrics-server": ("metrics-server", "charts/metrics-server"),
}
# Charts no module holds: the shared sources' archives (SOURCES.md: taken from the charts' own repositories,
# dependencies vendored in charts/), each accepted only with the sha256 SOURCES.md gives it.
SHARED_CHARTS = {
    "ingress-nginx-4.15.1.tgz": "da023633cf6ec9cfd36e6ea7c769250868925503726530a80c12c9072bf4e2d4",
    "kube-prometheus-stack-88.5.0.tgz": "74b2039ad52f0d13ea3328fdf14085a97e772cfe03a46fac903c810711309403",
    "loki-18.11.0.tgz": "684c4cb2d81ae1243d44f1582574e4d4f99354d1c3a7beb4c8d067799da8fcb9",
    "promtail-6.17.1.tgz": "02c68783bd4f4e097f5561887e742e9c1b5ccf128996a59324ea2bd52bdb4a14",
    "traefik-41.3.0.tgz": "6c9bd13fd2e14f9ad9ec2950e3e7678356f3e3a663eb0803991bd8b1a7d83c71",
}


# Pinned charts with no source here at all (in no module the Go module proxy serves, not among the shared
# sources): validated at the gitops layer only (their Application and values file), never rendered here.
NO_SOURCE_CHARTS = {
    "alloy": "Grafana Alloy's chart is in github.com/grafana/alloy, which the Go module proxy does not serve, and "
    "not among the shared sources",
}


class ChartUnavailable(LookupError):
    pass


def chart(name: str, version: str) -> bytes:
    """The archive of chart `name` at `version`, from a pinned module's tree or the shared sources, checked to
    be that version (its Chart.yaml) before anyone renders or serves it."""
    import yaml

    shared = f"{name}-{version}.tgz"
    if shared in SHARED_CHARTS:
        path = SOURCES_DIR / "charts" / shared
        if not path.exists():
            raise ChartUnavailable(f"{path} is missing: set GITOPS_LAB_SOURCES to the shared sources (SOURCES.md)")
        archive = path.read_bytes()
        if hashlib.sha256(archive).hexdigest() != SHARED_CHARTS[shared]:
            raise ChartUnavailable(
                f"{path} does not have the sha256 {SHARED_CHARTS[shared]} of SOURCES.md: refusing it"
            )
    elif name in MODULE_CHARTS:
        archive = chart_archive(*MODULE_CHARTS[name])
    elif name in NO_SOURCE_CHARTS:
        raise ChartUnavailable(f"no source here for chart {name} {version}: {NO_SOURCE_CHARTS[name]}")
    else:
        raise ChartUnavailable(f"no source here for chart {name} {version}: add it to tools/upstream.py")
    archive = helm_packaged(archive)
    found = yaml.safe_load(chart_files(archive)[f"{name}/Chart.yaml"])["version"]
    if found != version:
        raise ChartUnavailable(
            f"chart {name}: the pinned source holds {found}, not {version}: pin {found} (tasks/gitops_repo.py) "
            "or move the source (tools/upstream.py) to a tree or archive holding it"
        )
    return archive


def _ignored(path: str, is_dir: bool, rules: list[str]) -> bool:
    """Whether `path` (relative to its chart) matches the chart's .helmignore rules, as Helm reads them: a
    rule with a slash matches the whole path (a leading slash anchors it), one without matches the name; a
    trailing slash matches folders only; `!` re-includes; the last matching rule wins."""
    import fnmatch

    ignored = False
    for raw in rules:
        rule = raw.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        rule = rule[1:] if negate else rule
        if rule.endswith("/"):
            if not is_dir:
                continue
            rule = rule.rstrip("/")
        target = path if "/" in rule else path.rsplit("/", 1)[-1]
        if fnmatch.fnmatchcase(target, rule.lstrip("/")):
            ignored = not negate
    return ignored


def helm_packaged(archive: bytes) -> bytes:
    """The chart as `helm package` publishes it: what each chart's (and vendored subchart's) .helmignore
    names is left out, e.g. Traefik's crds/kustomization.yaml, which is no CRD. The shared sources hold
    charts as their repositories have them, before packaging; Argo CD gets packaged ones."""
    files = chart_files(archive)
    roots = sorted((name[: -len("Chart.yaml")] for name in files if name.endswith("/Chart.yaml")), key=len)
    rules = {root: files.get(root + ".helmignore", b"").decode().splitlines() for root in roots}
    return pack_chart(
        {
            name: data
            for name, data in files.items()
            if not any(_path_ignored(name[len(root) :], rules[root]) for root in roots if name.startswith(root))
        }
    )


def _path_ignored(relative: str, rules: list[str]) -> bool:
    """A file is left out when it, or one of the folders it is in, is ignored."""
    parts = relative.split("/")
    folders = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    return any(_ignored(folder, True, rules) for folder in folders) or _ignored(relative, False, rules)
