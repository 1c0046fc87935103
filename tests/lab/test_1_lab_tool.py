"""The lab tool itself: idempotent `up`, recovery from a crashed host. Runs before the deploy tests
(file order), because the recovered host comes back fresh."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import load_inventory, run_lab
from tools.lab.constants import LAB_DIR
from tools.lab.lab import INOTIFY_LIMITS


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


def test_up_with_another_release_while_hosts_run_is_refused_and_changes_nothing(lab):
    before = {n.name: nspawn_pid(n.name) for n in lab.nodes}
    other = "bookworm" if "release: trixie" in run_lab("status").stdout else "trixie"
    refused = run_lab("up", env={"LAB_RELEASE": other})
    assert refused.returncode == 1
    assert f"run `python3 -m tools.lab down` first, then up again with LAB_RELEASE={other}" in refused.stderr
    assert {n.name: nspawn_pid(n.name) for n in lab.nodes} == before


def test_an_unknown_release_is_refused_in_one_line():
    refused = run_lab("up", env={"LAB_RELEASE": "bullseye"})
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("[lab] ERROR: LAB_RELEASE='bullseye' is not a release the lab builds: use one "
                                      "of bookworm, trixie")


def test_up_with_another_number_of_workers_while_hosts_run_is_refused_and_changes_nothing(lab):
    before = {n.name: nspawn_pid(n.name) for n in lab.nodes}
    refused = run_lab("up", env={"LAB_WORKERS": "1"})
    assert refused.returncode == 1
    assert "k8s-worker2 run but are not among the 1 workers asked for" in refused.stderr, refused.stderr
    assert {n.name: nspawn_pid(n.name) for n in lab.nodes} == before


@pytest.mark.parametrize("workers", ["0", "17", "two"])
def test_a_bad_number_of_workers_is_refused_in_one_line(workers):
    refused = run_lab("up", env={"LAB_WORKERS": workers})
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"[lab] ERROR: LAB_WORKERS={workers!r}: the lab runs 1 to 16 workers "
                                      "(198.51.100.12 onwards)")


def test_the_sandbox_inventory_has_the_lab_s_number_of_workers():
    inventory = load_inventory("inventories/sandbox.py", env={"LAB_WORKERS": "5"})
    workers = sorted(h.name for h in inventory if h.name.startswith("k8s-worker"))
    assert workers == [f"k8s-worker{i}" for i in range(1, 6)]
    assert inventory.get_host("k8s-worker5").data.ssh_hostname == "198.51.100.16"


def test_the_running_lab_has_the_inotify_limits_its_hosts_need(lab):
    # Its hosts share this machine's limits: 128 instances ran out at 16 workers.
    for key, wanted in INOTIFY_LIMITS.items():
        assert int(Path("/proc/sys", *key.split(".")).read_text()) >= wanted, key
