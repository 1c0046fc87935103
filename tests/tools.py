"""Command-line tools the tests build from source through the Go module proxy, cached between runs.

Nothing else can be downloaded offline here, but the Go module proxy serves the sources of promtool,
amtool and alertmanager at release tags; `go install` builds them once into ~/.cache/gitops-lab/bin.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("GITOPS_LAB_CACHE", Path.home() / ".cache" / "gitops-lab"))

# The versions the cluster runs (kube-prometheus-stack 88: Prometheus 3.x, Alertmanager 0.34).
GO_TOOLS = {
    "promtool": ("github.com/prometheus/prometheus/cmd/promtool", "v0.316.0"),
    "prometheus": ("github.com/prometheus/prometheus/cmd/prometheus", "v0.316.0"),
    "amtool": ("github.com/prometheus/alertmanager/cmd/amtool", "v0.34.2"),
    "alertmanager": ("github.com/prometheus/alertmanager/cmd/alertmanager", "v0.34.2"),
}
# Modules whose go.mod has replace directives (`go install pkg@version` refuses those): built from a copy
# of the module's source: name -> (module, version, package inside the module).
SOURCE_BUILDS = {
    "tofu": ("github.com/opentofu/opentofu", "v1.10.10", "./cmd/tofu"),
    "terraform-provider-libvirt": ("github.com/dmacvicar/terraform-provider-libvirt", "v0.8.3", "."),
}
# Build tags per tool. remove_all_sd leaves out Prometheus' cloud service-discovery plugins (every cloud
# SDK: most of the build time); the tests use static targets and rule evaluation only.
BUILD_TAGS = {"promtool": "remove_all_sd", "prometheus": "remove_all_sd"}
BUILD_TIMES: dict[str, float] = {}


class ToolUnavailable(RuntimeError):
    pass


# Servers whose web UI is built by npm upstream and not part of the Go module: they are built from a copy
# of the module's source with a placeholder page where the UI would be (the tests use their APIs only).
UI_PLACEHOLDERS = {"alertmanager": "ui/app/dist/index.html"}


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        raise ToolUnavailable("building the tool needs Go (the Go module proxy serves its source)")
    return go


def _run(cmd: list[str], env: dict, cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=3000)
    if proc.returncode != 0:
        raise ToolUnavailable(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def go_tool(name: str) -> Path:
    """Path of the tool at its pinned version, building it on first use."""
    if name in SOURCE_BUILDS:
        module, version, package = SOURCE_BUILDS[name]
        return _build_from_source(name, module, version, package)
    package, version = GO_TOOLS[name]
    target_dir = CACHE / "bin" / (f"{name}-{version}" + (f"-{BUILD_TAGS[name]}" if name in BUILD_TAGS else ""))
    binary = target_dir / name
    if binary.exists():
        return binary
    env = dict(os.environ, GOBIN=str(target_dir), GOPATH=str(CACHE / "gopath"), GOFLAGS="-mod=mod",
               GOTOOLCHAIN="local", CGO_ENABLED="0")
    started = time.monotonic()
    if name in UI_PLACEHOLDERS:
        module = package.split("/cmd/")[0]
        return _build_from_source(name, module, version, "./" + package.split(module + "/")[1],
                                  placeholder=UI_PLACEHOLDERS[name])
    else:
        tags = ["-tags", BUILD_TAGS[name]] if name in BUILD_TAGS else []
        _run([_go(), "install", *tags, f"{package}@{version}"], env)
    BUILD_TIMES[f"build {name} {version}"] = time.monotonic() - started
    return binary


def _build_from_source(name: str, module: str, version: str, package: str, placeholder: str | None = None) -> Path:
    """go build inside a writable copy of the module's source (downloaded through the Go module proxy)."""
    import json

    target_dir = CACHE / "bin" / f"{name}-{version}"
    binary = target_dir / name
    if binary.exists():
        return binary
    env = dict(os.environ, GOPATH=str(CACHE / "gopath"), GOFLAGS="-mod=mod", GOTOOLCHAIN="local", CGO_ENABLED="0")
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
