"""The lab tool itself: idempotent `up`, recovery from a crashed host. Runs before the deploy tests
(file order), because the recovered host comes back fresh."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.conftest import run_lab

LAB_DIR = Path(os.environ.get("LAB_DIR", "/var/tmp/gitops-lab"))


def nspawn_pid(name: str) -> int:
    return int((LAB_DIR / "hosts" / name / "pid").read_text())


def test_up_again_keeps_running_hosts(lab):
    before = {n.name: nspawn_pid(n.name) for n in lab.nodes}
    again = run_lab("up")
    assert again.returncode == 0, again.stderr
    assert "all hosts were already running" in again.stdout
    assert {n.name: nspawn_pid(n.name) for n in lab.nodes} == before


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_up_recovers_a_crashed_host(lab):
    pid = nspawn_pid("k8s-worker2")
    container_init = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    assert container_init, "systemd-nspawn has no child: is the machine running?"
    os.kill(pid, signal.SIGKILL)  # a crash: no clean poweroff, netns, veth and overlay are left behind
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and b"nspawn" in Path(f"/proc/{pid}/cmdline").read_bytes() \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    up = run_lab("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "booted k8s-worker2" in up.stdout
    time.sleep(0.5)
    survivors = [p for p in container_init if alive(p)]
    assert not survivors, f"the crashed machine's processes still run: {survivors}"
    status = run_lab("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count(" ok ") == len(lab.nodes), status.stdout
