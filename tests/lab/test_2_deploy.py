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


def test_with_an_existing_cluster_the_run_plans_kubeconfig_join_and_post_bootstrap(deployed, lab):
    """The path the lab cannot reach for real (no control-plane images offline), planned by the real
    deploy.py against the real hosts: with admin.conf present on the control plane, `--dry` plans no init,
    the kubeconfig fetch, one join token for both workers, each worker's join, and the post-bootstrap step.
    (A stand-in admin.conf, removed afterwards; --dry executes nothing.)"""
    import json
    import subprocess

    from tests.conftest import PYINFRA, REPO, run_lab

    admin = run_lab("ssh", "k8s-master", "install -m 600 /dev/null /etc/kubernetes/admin.conf")
    assert admin.returncode == 0, admin.stderr
    try:
        proc = subprocess.run([PYINFRA, "-y", "--dry", "--json", "inventories/sandbox.py", "deploy.py"], cwd=REPO,
                              capture_output=True, text=True, timeout=900)
    finally:
        run_lab("ssh", "k8s-master", "rm -f /etc/kubernetes/admin.conf")
    assert proc.returncode == 0, proc.stderr[-4000:]
    names = [name for op in json.loads(proc.stdout)["plan"] for name in op["names"]]
    assert not any("kubeadm init" in n for n in names)
    assert any("Admin kubeconfig" in n for n in names)
    assert any("Join token for k8s-worker1, k8s-worker2 (masked)" in n for n in names), names
    assert any("kubeadm join k8s-worker1 (token masked)" in n for n in names)
    assert any("kubeadm join k8s-worker2 (token masked)" in n for n in names)
    assert any("Post-bootstrap: CNI, nodes Ready, labels, Argo CD" in n for n in names)
    assert "kubeadm init and join skipped" not in proc.stderr
