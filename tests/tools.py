"""Command-line tools the tests build from source through the Go module proxy, cached between runs.

Nothing else can be downloaded offline here, but the Go module proxy serves the sources of promtool,
amtool, Prometheus, Alertmanager, OpenTofu and the libvirt provider at release tags; they are built once
into ~/.cache/gitops-lab/bin.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("GITOPS_LAB_CACHE", Path.home() / ".cache" / "gitops-lab"))

# `go install package@version`, optionally with build tags. The versions are the ones the cluster runs
# (kube-prometheus-stack 88: Prometheus 3.x, Alertmanager 0.34). remove_all_sd leaves out Prometheus' cloud
# service-discovery plugins (every cloud SDK: most of the build time); the tests use static targets only.
GO_TOOLS = {
    "promtool": ("github.com/prometheus/prometheus/cmd/promtool", "v0.316.0", "remove_all_sd"),
    "prometheus": ("github.com/prometheus/prometheus/cmd/prometheus", "v0.316.0", "remove_all_sd"),
    "amtool": ("github.com/prometheus/alertmanager/cmd/amtool", "v0.34.2", ""),
}
# Built with `go build` in a writable copy of the module's source: modules whose go.mod has replace
# directives (`go install pkg@version` refuses those), and servers whose web UI is built by npm upstream and
# not part of the module (a placeholder page stands in; the tests use their APIs only).
# name -> (module, version, package inside the module, placeholder file or None)
SOURCE_BUILDS = {
    "alertmanager": ("github.com/prometheus/alertmanager", "v0.34.2", "./cmd/alertmanager", "ui/app/dist/index.html"),
    "tofu": ("github.com/opentofu/opentofu", "v1.10.10", "./cmd/tofu", None),
    "terraform-provider-libvirt": ("github.com/dmacvicar/terraform-provider-libvirt", "v0.8.3", ".", None),
    # The repository moved to bitnami-labs but its go.mod still says github.com/bitnami/sealed-secrets.
    "kubeseal": ("github.com/bitnami-labs/sealed-secrets", "v0.40.0", "./cmd/kubeseal", None),
}
BUILD_TIMES: dict[str, float] = {}


class ToolUnavailable(RuntimeError):
    pass


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise ToolUnavailable("building the tool needs Go (the Go module proxy serves its source)")
    return go


def go_env(cgo: bool = False, **extra: str) -> dict[str, str]:
    """Environment for builds through the module proxy, with the module cache kept in CACHE."""
    return dict(os.environ, GOPATH=str(CACHE / "gopath"), GOFLAGS="-mod=mod", GOTOOLCHAIN="local",
                CGO_ENABLED="1" if cgo else "0", **extra)


def _run(cmd: list[str], env: dict, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=3000)
    if proc.returncode != 0:
        raise ToolUnavailable(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def go_tool(name: str) -> Path:
    """Path of the tool at its pinned version, building it on first use."""
    if name in SOURCE_BUILDS:
        return _build_from_source(name, *SOURCE_BUILDS[name])
    package, version, tags = GO_TOOLS[name]
    target_dir = CACHE / "bin" / (f"{name}-{version}" + (f"-{tags}" if tags else ""))
    binary = target_dir / name
    if not binary.exists():
        started = time.monotonic()
        _run([_go(), "install", *(["-tags", tags] if tags else []), f"{package}@{version}"],
             go_env(GOBIN=str(target_dir)))
        BUILD_TIMES[f"build {name} {version}"] = time.monotonic() - started
    return binary


def _build_from_source(name: str, module: str, version: str, package: str, placeholder: str | None) -> Path:
    """go build inside a writable copy of the module's source (downloaded through the Go module proxy)."""
    target_dir = CACHE / "bin" / f"{name}-{version}"
    binary = target_dir / name
    if binary.exists():
        return binary
    env = go_env()
    started = time.monotonic()
    info = json.loads(_run([_go(), "mod", "download", "-json", f"{module}@{version}"], env))
    src = CACHE / "src" / f"{name}-{version}"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(info["Dir"], src)
    for path in src.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    if placeholder:
        page = src / placeholder
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text("<!-- UI not built: tests use the API only -->\n")
    target_dir.mkdir(parents=True, exist_ok=True)
    _run([_go(), "build", "-o", str(binary), package], env, cwd=src)
    BUILD_TIMES[f"build {name} {version}"] = time.monotonic() - started
    return binary


# Kubernetes components at one release, built from tests/kube/go.mod (k8s.io/kubernetes plus each staging
# module at its published tag; etcd from go.etcd.io). The version is stamped as release builds do it, so
# `kubeadm version` and the API server's /version report the release, not v0.0.0.
KUBE_MODULE_DIR = Path(__file__).resolve().parent / "kube"
KUBE_COMMANDS = {
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kubeadm": "k8s.io/kubernetes/cmd/kubeadm",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "etcd": "go.etcd.io/etcd/server/v3",
}


def kube_version() -> str:
    """The k8s.io/kubernetes version tests/kube/go.mod requires (e.g. v1.37.2)."""
    for line in (KUBE_MODULE_DIR / "go.mod").read_text().splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "k8s.io/kubernetes":
            return fields[1]
    raise ToolUnavailable("tests/kube/go.mod does not require k8s.io/kubernetes")


def kube_build(names: list[str]) -> dict[str, Path]:
    """Paths of the named components (KUBE_COMMANDS). When one is missing, every missing component is built
    in one `go build`: they share most packages, so one build is much cheaper than several."""
    version = kube_version()
    out = CACHE / "bin" / f"kubernetes-{version}"
    wanted = {name: out / name for name in names}
    if not all(path.exists() for path in wanted.values()):
        _build_kube([name for name in KUBE_COMMANDS if not (out / name).exists()], version, out)
    return wanted


def _build_kube(names: list[str], version: str, out: Path) -> None:
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = " ".join(f"-X k8s.io/component-base/version.{k}={v}" for k, v in {
        "gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z"}.items())
    started = time.monotonic()
    build_dir = CACHE / "kube-build"
    build_dir.mkdir(parents=True, exist_ok=True)
    _run([_go(), "build", "-ldflags", f"-s -w {stamp}", "-o", str(build_dir) + "/",
          *[KUBE_COMMANDS[n] for n in names]], go_env(), cwd=KUBE_MODULE_DIR)
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        # go build names a binary after its package path, skipping a major-version suffix (/v3)
        parts = KUBE_COMMANDS[name].split("/")
        built = parts[-2] if parts[-1][0] == "v" and parts[-1][1:].isdigit() else parts[-1]
        (build_dir / built).rename(out / name)
    BUILD_TIMES[f"build {', '.join(names)} {version}"] = time.monotonic() - started
