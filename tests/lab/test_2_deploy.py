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


def test_deploy_says_which_phases_it_skips_and_why(deployed):
    first, _ = deployed
    assert "phases 5-7 are not run by the deploy" in first["log"]
    assert "GitLab CE: not installed: gitlab_package_source is empty" in first["log"]
    # The lab has no source for the control-plane images: init and join stop there, with the reason.
    assert "kubeadm init and join skipped: the control-plane images" in first["log"]
    assert "registry.k8s.io does not resolve" in first["log"]


def test_cluster_phase_downloads_come_from_the_mirror_with_pinned_checksums(deployed):
    first, _ = deployed
    downloads = [op["name"] for op in first["operations"] if "Download " in op["name"]]
    for name in ("containerd", "runc", "cni-plugins", "kubeadm", "kubelet", "kubectl"):
        assert any(f"Download {name} " in d and "(sha256 pinned)" in d for d in downloads), downloads


@pytest.mark.parametrize("role", ["platform", "control_plane", "worker"])
def test_per_role_rerun_touches_only_that_role_and_changes_nothing(deployed, lab, role):
    results = run_deploy("--limit", role)
    expected = {n.name for n in lab.with_role(role)}
    touched = {host for op in results["operations"] for host in op["success"] + op["no_change"] + op["error"]}
    assert touched == expected
    assert results["totals"]["error"] == 0
    assert changed_operations(results) == []
