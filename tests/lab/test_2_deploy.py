"""The real deploy on the lab hosts: the first run converges, the second run changes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import changed_operations, run_deploy


def test_first_deploy_converges_on_every_host(deployed):
    first, _ = deployed
    assert first["totals"]["error"] == 0
    changed_hosts = {host for op in first["operations"] for host in op["success"]}
    assert changed_hosts == {"mini-pc", "k8s-master", "k8s-worker1", "k8s-worker2"}, \
        "a fresh lab host must need changes: is the lab really fresh?"


def test_second_deploy_changes_nothing(deployed):
    _, second = deployed
    assert second["totals"]["error"] == 0
    assert changed_operations(second) == [], "the rerun changed things: the deploy is not idempotent"


def test_deploy_prints_the_preflight_report_for_every_host(deployed):
    first, _ = deployed
    for name in ("mini-pc", "k8s-master", "k8s-worker1", "k8s-worker2"):
        assert f"preflight {name} [" in first["log"]


def test_deploy_says_which_phases_it_skips(deployed):
    first, _ = deployed
    assert "phases 2-7" in first["log"] and "not deployed by this run yet" in first["log"]
    assert "GitLab CE: not installed: gitlab_package_source is empty" in first["log"]


@pytest.mark.parametrize("role", ["platform", "control_plane", "worker"])
def test_per_role_rerun_touches_only_that_role_and_changes_nothing(deployed, lab, role):
    results = run_deploy("--limit", role)
    expected = {n.name for n in lab.with_role(role)}
    touched = {host for op in results["operations"] for host in op["success"] + op["no_change"] + op["error"]}
    assert touched == expected
    assert results["totals"]["error"] == 0
    assert changed_operations(results) == []
