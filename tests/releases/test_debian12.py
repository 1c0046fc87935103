"""Debian 12 (bookworm) beside the default Debian 13: the lab layers again, on bookworm hosts.

The whole suite runs on Debian 13. What differs between the releases is what phases 0-2 install and configure
(packages, chrony, kernel settings, containerd and the kubelet on another systemd), so this reruns the layers
that exercise exactly that, in a pytest of their own with LAB_RELEASE=bookworm: fresh hosts, the first deploy
(all phases, to a cluster with its nodes Ready) and the no-op rerun (tests/lab/test_2_deploy.py), and every
testinfra check (tests/testinfra). Not repeated: the per-role reruns (--limit picks hosts the same way on any
release, and the whole no-op rerun above already shows bookworm hosts converged) and the live-cluster layer
(above the kubelet nothing depends on the host's release); both would add minutes to CI for nothing new. For
the same reason its lab runs Argo CD without Applications (LAB_APPS=none, tools/lab/constants.py): syncing
the platform apps would only load the 2 CPUs while the deploys and testinfra run. It runs last: it replaces
the Debian 13 lab."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from tests.conftest import REPO, TIMINGS, lab_unavailable_reason, unavailable

LAYERS = ["tests/lab/test_2_deploy.py", "tests/testinfra"]


def test_the_lab_layers_hold_on_debian_12_hosts(artifact_mirror, lab_images):
    reason = lab_unavailable_reason()
    if reason:
        unavailable(reason)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", "-k", "not per_role", *LAYERS],
        cwd=REPO, capture_output=True, text=True, timeout=2400,
        env={**os.environ, "LAB_RELEASE": "bookworm", "LAB_APPS": "none", "KEEP_LAB": "0"},
    )
    TIMINGS["Debian 12 layers (lab up, deploy, rerun, testinfra)"] = time.monotonic() - started
    output = proc.stdout + proc.stderr
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    print(output[-6000:])
    assert proc.returncode == 0, f"on Debian 12 hosts: {summary}\n{output[-12000:]}"
    passed = int(re.search(r"(\d+) passed", summary).group(1)) if re.search(r"(\d+) passed", summary) else 0
    assert passed >= 60 and "skipped" not in summary and "deselected" in summary, f"too little ran on Debian 12: {summary}"
