"""Shared test helpers: paths, loading inventories the way the pyinfra CLI does, the lab switch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# pyinfra's CLI package patches the standard library for gevent when imported; import it before anything
# else imports ssl (requests, kubernetes), as the pyinfra command itself does.
import pyinfra_cli  # noqa: F401,E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def unavailable(reason: str) -> None:
    """Skip a test whose tool or host is missing here, with the reason; in CI (CI=true or REQUIRE_LAB=1) a
    missing prerequisite is a failure, because CI installs everything the tests need."""
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_LAB") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def load_inventory(path: str | Path, env: dict[str, str] | None = None):
    """An Inventory built by pyinfra's own CLI loader (inventory file + group_data), without connecting."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with ctx_state.use(State()):
            return make_inventory(str(path), cwd=str(REPO))
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def sandbox_settings():
    """The sandbox's settings with group_data's artifacts (not the local mirror's, which may not exist)."""
    from tasks.settings import load_settings

    return load_settings(load_inventory(REPO / "inventories" / "sandbox.py", {"LAB_MIRROR_DIR": "/nonexistent"}))


@pytest.fixture(scope="session")
def sandbox_gitops_repo(sandbox_settings, tmp_path_factory):
    """The gitops repository rendered for the sandbox (tests that only read it share one rendering)."""
    from tasks.gitops_repo import render_gitops_repo

    return render_gitops_repo(sandbox_settings, tmp_path_factory.mktemp("gitops") / "repo", "a" * 40)


# ------------------------------------------------------------------------------------------- the lab

LAB_TOOL = REPO / "tests" / "lab" / "lab.py"
TIMINGS: dict[str, float] = {}


def lab_unavailable_reason() -> str | None:
    import shutil

    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [t for t in ("debootstrap", "systemd-nspawn", "/usr/sbin/apt-cacher-ng") if not shutil.which(t)]
    if missing:
        return f"lab tools missing ({', '.join(missing)}): apt-get install debootstrap systemd-container apt-cacher-ng"
    return None


def run_lab(*args: str, timeout: int = 900):
    import subprocess

    return subprocess.run([sys.executable, str(LAB_TOOL), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def artifact_mirror():
    """(mirror folder, artifacts in group_data's format): built from source through the Go module proxy
    (cached), served to the lab hosts by the lab tool."""
    from tests.mirror.build_mirror import TIMES, build_mirror
    from tests.tools import BUILD_TIMES, CACHE, ToolUnavailable

    try:
        artifacts = build_mirror(CACHE / "mirror")
    except ToolUnavailable as exc:
        unavailable(str(exc))
    BUILD_TIMES.update(TIMES)
    return CACHE / "mirror", artifacts


@pytest.fixture(scope="session")
def served_mirror(artifact_mirror):
    """The artifact mirror over HTTP on loopback (base URL), as the pin tool and post-bootstrap read one."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(artifact_mirror[0]))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory):
    """A real control plane on loopback (etcd, kube-apiserver, kube-controller-manager at the cluster's
    release, built from source and cached): yields it; `.kubeconfig` is its admin kubeconfig."""
    import time

    from tests.kube.control_plane import ControlPlane
    from tests.tools import ToolUnavailable

    workdir = tmp_path_factory.mktemp("control-plane")
    try:
        with ControlPlane(workdir) as control_plane:
            TIMINGS["control plane start (etcd + kube-apiserver ready)"] = control_plane.started_in_s
            yield control_plane
    except ToolUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="session")
def lab(sandbox_settings, artifact_mirror):
    """Fresh lab hosts for the session (torn down at the end, also on failure; KEEP_LAB=1 keeps them).

    Without root or the lab tools the lab tests are skipped with the reason, except where REQUIRE_LAB=1
    (CI), where that is a failure.
    """
    import time

    reason = lab_unavailable_reason()
    if reason:
        unavailable(reason)
    down = run_lab("down")  # start from fresh machines, whatever a previous run left
    assert down.returncode == 0, down.stdout + down.stderr
    started = time.monotonic()
    up = run_lab("up")
    TIMINGS["lab up (fresh hosts, cached base image)"] = time.monotonic() - started
    print(up.stdout, up.stderr)
    assert up.returncode == 0, up.stdout + up.stderr
    yield sandbox_settings
    if os.environ.get("KEEP_LAB") == "1":
        return
    down = run_lab("down")
    assert down.returncode == 0, f"lab down left something behind:\n{down.stdout}{down.stderr}"


def run_deploy(*extra: str) -> dict:
    """`pyinfra -y --json inventories/sandbox.py deploy.py`; returns the JSON results, fails with the log."""
    import json
    import subprocess

    proc = subprocess.run([PYINFRA, "-y", "--json", "inventories/sandbox.py", "deploy.py", *extra], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"deploy failed ({proc.returncode}):\n{proc.stderr[-8000:]}")
    result = json.loads(proc.stdout)["results"]
    result["log"] = proc.stderr
    return result


def changed_operations(results: dict) -> list[str]:
    return [f"{op['name']} on {', '.join(op['success'])}" for op in results["operations"] if op["success"]]


@pytest.fixture(scope="session")
def deployed(lab):
    """The lab after the first and the second deploy: (first results, second results)."""
    import time

    started = time.monotonic()
    first = run_deploy()
    TIMINGS["first deploy (converge, 4 hosts)"] = time.monotonic() - started
    started = time.monotonic()
    second = run_deploy()
    TIMINGS["second deploy (no-op rerun)"] = time.monotonic() - started
    return first, second


def pytest_terminal_summary(terminalreporter):
    from tests.tools import BUILD_TIMES

    TIMINGS.update(BUILD_TIMES)
    if not TIMINGS:
        return
    import json

    terminalreporter.section("timings (lab, tool builds)")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{what}: {seconds:.1f}s")
    out = REPO / "reports" / "lab-timings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({k: round(v, 1) for k, v in TIMINGS.items()}, indent=2) + "\n")
