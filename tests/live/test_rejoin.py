"""A worker replaced by a fresh machine (same name and address) rejoins on the next deploy; runs last in the
live layer because it takes a node away for a while."""

from __future__ import annotations

import time

from tests.conftest import TIMINGS, run_deploy, run_lab, unexpected_changes
from tests.live.conftest import wait_for


def test_a_recreated_worker_rejoins_on_the_next_deploy(cluster):
    recreated = run_lab("recreate", "k8s-worker2", timeout=600)
    assert recreated.returncode == 0, recreated.stdout + recreated.stderr
    started = time.monotonic()
    results = run_deploy()
    names = [op["name"] for op in results["operations"] if op["success"]]
    assert any("kubeadm join k8s-worker2" in n for n in names), names
    assert not any("kubeadm init" in n or "kubeadm join k8s-worker1" in n for n in names), names

    def ready() -> bool:
        node = cluster.get("v1", "Node", "k8s-worker2") or {}
        return any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))

    wait_for("k8s-worker2 Ready again", ready, timeout_s=180)
    TIMINGS["a recreated worker: deploy until Ready again"] = time.monotonic() - started
    again = run_deploy()
    assert unexpected_changes(again) == []
