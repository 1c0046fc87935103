"""The real deploy on the lab hosts: the first run makes the cluster (kubeadm init, both joins, post-bootstrap),
the second run changes nothing and neither initialises nor joins again; per-role reruns change nothing."""

from __future__ import annotations

import pytest

from tests.conftest import RAN_ON_HOSTS, run_deploy, unexpected_changes
from tools.bench import APT_REFRESH

HOSTS = {"mini-pc", "k8s-master", "k8s-worker1", "k8s-worker2"}


def names(results: dict) -> list[str]:
    return [op["name"] for op in results["operations"] if op["success"]]


def test_first_deploy_converges_on_every_host(deployed):
    first, _ = deployed
    assert first["totals"]["error"] == 0
    changed_hosts = {host for op in first["operations"] for host in op["success"]}
    assert changed_hosts == HOSTS, "a fresh lab host must need changes: is the lab really fresh?"


def test_each_host_refreshes_apt_metadata_once_in_the_first_deploy_and_never_in_the_rerun(deployed):
    """Counted from what the hosts ran (the lab's command log), not from operation names."""
    refreshes = {(run, host): [c for c in ran if APT_REFRESH.search(c)] for (run, host), ran in RAN_ON_HOSTS.items()}
    assert {host for _run, host in refreshes} == HOSTS, "the command log of some host is missing"
    for (run, host), commands in refreshes.items():
        expected = 1 if run == "first deploy" else 0
        assert len(commands) == expected, f"{run} on {host}: {len(commands)} apt refreshes: {commands}"


def test_first_deploy_makes_the_cluster(deployed):
    first, _ = deployed
    ran = " ; ".join(names(first))
    for step in ("kubeadm init (", "Join token for k8s-worker1, k8s-worker2 (masked)", "Admin kubeconfig",
                 "Post-bootstrap:"):
        assert step in ran, (step, ran)
    joined = {host for op in first["operations"] if "kubeadm join " in op["name"] for host in op["success"]}
    assert joined == {"k8s-worker1", "k8s-worker2"}
    assert "post-bootstrap: " in first["log"] and "kubeadm init and join skipped" not in first["log"]


def test_second_deploy_changes_nothing_and_neither_inits_nor_joins(deployed):
    _, second = deployed
    assert second["totals"]["error"] == 0
    assert unexpected_changes(second) == [], "the rerun changed things: the deploy is not idempotent"
    assert not any("kubeadm init" in n or "kubeadm join" in n or "Join token" in n for n in names(second))


def test_deploy_prints_the_preflight_report_for_every_host(deployed):
    first, _ = deployed
    for name in sorted(HOSTS):
        assert f"preflight {name} [" in first["log"]


def test_deploy_says_what_it_leaves_out_and_why(deployed):
    first, _ = deployed
    assert "phases 5-7 are not run by the deploy" in first["log"]
    assert "GitLab CE: not installed: gitlab_package_source is empty" in first["log"]
    assert "Argo CD: not installed" not in first["log"]  # the lab runs it (built from source)
    assert "Argo CD: boutique-prod left out (gitops_apps_left_out): its images come from app-repo's pipeline" \
        in first["log"]


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
    assert unexpected_changes(results) == []
