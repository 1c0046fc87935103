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
# The tests' lab is the default four hosts (two workers), whatever LAB_WORKERS the shell has for `make lab`
# or the benchmark: the lab and the sandbox inventory both read it.
os.environ["LAB_WORKERS"] = "2"


def unavailable(reason: str) -> None:
    """Skip a test whose tool or host is missing here, with the reason; in CI (CI=true or REQUIRE_LAB=1) a
    missing prerequisite is a failure, because CI installs everything the tests need."""
    if os.environ.get("CI") == "true" or os.environ.get("REQUIRE_LAB") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def load_inventory(path: str | Path, env: dict[str, str] | None = None, data: dict | None = None):
    """An Inventory built by pyinfra's own CLI loader (inventory file + group_data), without connecting;
    `env` set while it loads; `data` as pyinfra's --data would give it."""
    from tasks import inventory

    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        return inventory.load(path, data)
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


SANDBOX = REPO / "inventories" / "sandbox.py"
# The lab's locks (its mirror's and its images') may not exist yet: tests that only plan or render read the
# settings without them.
WITHOUT_MIRROR_LOCK = {"artifacts_lock": "/nonexistent/artifacts.json", "images_lock": "/nonexistent/images.lock.json"}


def sandbox_settings_now():
    from tasks.settings import load_settings

    return load_settings(load_inventory(SANDBOX, data=WITHOUT_MIRROR_LOCK), "inventories/sandbox.py")


@pytest.fixture(scope="session")
def sandbox_settings():
    """The sandbox's settings with group_data's artifacts, unpinned (not the local mirror's lock)."""
    return sandbox_settings_now()


@pytest.fixture(scope="session")
def sandbox_gitops_repo(sandbox_settings, tmp_path_factory):
    """The gitops repository rendered for the sandbox with every Application (what ships; the lab's own app
    set leaves some out: tests/validation checks that rendering), shared by the tests that only read it."""
    from dataclasses import replace

    from tasks.gitops_repo import render_gitops_repo

    everything = replace(sandbox_settings, gitops_apps_left_out={})
    return render_gitops_repo(everything, tmp_path_factory.mktemp("gitops") / "repo", "a" * 40)


# ------------------------------------------------------------------------------------------- the lab

TIMINGS: dict[str, float] = {}
MEASURED: dict[str, str] = {}  # other measurements, with their units
# What each lab host ran over SSH in each deploy of the `deployed` fixture (the lab's command log).
RAN_ON_HOSTS: dict[tuple[str, str], list[str]] = {}


def lab_unavailable_reason() -> str | None:
    import shutil

    if os.geteuid() != 0:
        return "the lab needs root"
    missing = [t for t in ("debootstrap", "systemd-nspawn", "/usr/sbin/apt-cacher-ng") if not shutil.which(t)]
    if missing:
        return f"lab tools missing ({', '.join(missing)}): apt-get install debootstrap systemd-container apt-cacher-ng"
    return None


def run_lab(*args: str, timeout: int = 900, env: dict[str, str] | None = None):
    import subprocess

    return subprocess.run([sys.executable, "-m", "tools.lab", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def artifact_mirror():
    """(mirror folder, artifacts in group_data's format): built from source through the Go module proxy
    (cached), served to the lab hosts by the lab tool."""
    from tools.gobuild import BUILD_TIMES, ToolUnavailable
    from tools.lab.constants import MIRROR_DIR
    from tools.mirror import TIMES, build_mirror

    try:
        artifacts = build_mirror(MIRROR_DIR)
    except ToolUnavailable as exc:
        unavailable(str(exc))
    BUILD_TIMES.update(TIMES)
    return MIRROR_DIR, artifacts


@pytest.fixture(scope="session")
def lab_images():
    """Every image the lab's cluster pulls, built from source under its upstream name (cached); `lab up`
    pushes them into the registry stand-in."""
    from tools import images
    from tools.gobuild import BUILD_TIMES, ToolUnavailable

    try:
        lock = images.build_all(images.lab_catalog())
    except ToolUnavailable as exc:
        unavailable(str(exc))
    BUILD_TIMES.update(images.TIMES)
    return lock


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
    from tests.kube.control_plane import ControlPlane
    from tools.gobuild import ToolUnavailable

    workdir = tmp_path_factory.mktemp("control-plane")
    try:
        with ControlPlane(workdir) as control_plane:
            TIMINGS["control plane start (etcd + kube-apiserver ready)"] = control_plane.started_in_s
            yield control_plane
    except ToolUnavailable as exc:
        unavailable(str(exc))


def reusing_lab() -> bool:
    """REUSE_LAB=1 (a developer's shortcut, never CI's): run against the lab a KEEP_LAB=1 run left deployed,
    without booting or deploying, e.g. to rerun one live test. The deploy tests then have no results and fail."""
    if os.environ.get("REUSE_LAB") != "1":
        return False
    assert os.environ.get("CI") != "true", "REUSE_LAB=1 is for a developer's reruns, not for CI"
    print("REUSE_LAB=1: using the running lab as it is (no fresh hosts, no deploy)")
    return True


@pytest.fixture(scope="session")
def lab(sandbox_settings, artifact_mirror, lab_images):
    """Fresh lab hosts for the session (torn down at the end, also on failure; KEEP_LAB=1 keeps them).

    Without root or the lab tools the lab tests are skipped with the reason, except where REQUIRE_LAB=1
    (CI), where that is a failure.
    """
    import time

    reason = lab_unavailable_reason()
    if reason:
        unavailable(reason)
    if reusing_lab():
        yield sandbox_settings
        return
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


def run_deploy(*extra: str, label: str = "deploy") -> dict:
    """`pyinfra -y --json inventories/sandbox.py deploy.py` (tools/bench.py runs it and times its segments);
    returns the JSON results with the log and the bench's measurements, fails with the log."""
    import json

    from tools import bench

    log = REPO / "reports" / f"{label.replace(' ', '-')}.log"
    log.parent.mkdir(exist_ok=True)
    run, stdout, progress = bench.run_deploy(label, log, *extra, json_output=True)
    if run.returncode != 0:
        pytest.fail(f"deploy failed ({run.returncode}):\n{progress[-8000:]}")
    result = json.loads(stdout)["results"]
    result["log"] = progress
    result["bench"] = run
    return result


def changed_operations(results: dict) -> list[str]:
    return [f"{op['name']} on {', '.join(op['success'])}" for op in results["operations"] if op["success"]]


def unexpected_changes(results: dict) -> list[str]:
    """What a rerun on converged hosts must not report: any change, except that pyinfra always counts the
    post-bootstrap step as run (it decides at run time, against the API), which must then apply nothing new."""
    import re

    changes = [c for c in changed_operations(results) if not c.startswith("Post-bootstrap:")]
    for summary in re.findall(r"post-bootstrap: (.*)", results["log"]):
        if set(re.findall(r"\d+ (\w+)", summary)) != {"unchanged"}:
            changes.append(f"post-bootstrap applied: {summary}")
    return changes


@pytest.fixture(scope="session")
def deployed(lab):
    """The lab after the first and the second deploy: (first results, second results)."""
    import time

    from tools import bench

    if reusing_lab():
        return None

    started = time.monotonic()
    first = run_deploy(label="first deploy")
    TIMINGS["first deploy (converge, 4 hosts, kubeadm init and joins, post-bootstrap to nodes Ready)"] = (
        time.monotonic() - started)
    TIMINGS["lab up to all nodes Ready (lab up + first deploy)"] = (
        TIMINGS["lab up (fresh hosts, cached base image)"] + time.monotonic() - started)
    after_first = {host: bench.host_commands(host) for host in bench.lab_hosts()}
    started = time.monotonic()
    second = run_deploy(label="no-op rerun")
    TIMINGS["second deploy (no-op rerun)"] = time.monotonic() - started
    for host, ran in after_first.items():
        RAN_ON_HOSTS[("first deploy", host)] = ran
        RAN_ON_HOSTS[("second deploy", host)] = bench.host_commands(host)[len(ran):]
    runs = [first["bench"], second["bench"]]
    report = bench.write_report(2, TIMINGS["lab up (fresh hosts, cached base image)"], runs)
    MEASURED[f"benchmark of the deploy (tools/bench.py; {report.relative_to(REPO)})"] = "\n" + bench.table(runs)
    return first, second


def pytest_terminal_summary(terminalreporter):
    from tools.gobuild import BUILD_TIMES

    import json

    TIMINGS.update(BUILD_TIMES)
    # CI's background builds (tools/prebuild.py), which the tests then found in the cache
    report = Path(os.environ.get("PREBUILD_REPORT", "/nonexistent"))
    if report.exists():
        prebuilt = json.loads(report.read_text())
        TIMINGS.update({f"background: {what}": seconds for what, seconds in prebuilt["times"].items()})
        if prebuilt["failed"]:
            MEASURED["background builds that failed (rebuilt by the tests)"] = ", ".join(prebuilt["failed"])
    if not TIMINGS and not MEASURED:
        return

    terminalreporter.section("timings (lab, tool builds) and measurements")
    for what, seconds in TIMINGS.items():
        terminalreporter.write_line(f"{what}: {seconds:.1f}s")
    for what, value in MEASURED.items():
        terminalreporter.write_line(f"{what}: {value}")
    out = REPO / "reports" / "lab-timings.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({**{k: round(v, 1) for k, v in TIMINGS.items()}, **MEASURED}, indent=2) + "\n")
