"""The acceptance suite's Kubernetes logic against a real API server and controller manager: a force-deleted
pod is replaced by its ReplicaSet, and a hand-made image change creates a new ReplicaSet (no kubelet here,
so pods stay Pending: readiness is the one thing only the live suite checks)."""

from __future__ import annotations

import pytest

from tasks.kube_client import ClusterError, connect
from tests.acceptance import checks

NAMESPACE = "acceptance-checks"


@pytest.fixture(scope="module")
def cluster(kube_api):
    cluster = connect(kube_api.kubeconfig)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "test"}}})
    cluster.apply({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "frontend", "namespace": NAMESPACE},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "frontend"}},
                            "template": {"metadata": {"labels": {"app": "frontend"}},
                                         "spec": {"containers": [{"name": "server", "image": "registry.local/f:one"}]}}}})
    checks.wait_for("two frontend pods", lambda: len(cluster.list_objects("v1", "Pod", NAMESPACE, "app=frontend")) == 2, 30)
    return cluster


def test_a_force_deleted_pod_is_replaced_by_its_replicaset(cluster):
    before = {p["metadata"]["name"] for p in cluster.list_objects("v1", "Pod", NAMESPACE, "app=frontend")}
    new = checks.replace_a_pod(cluster, NAMESPACE, "app=frontend", timeout_s=30, require_ready=False)
    assert new not in before
    names = lambda: {p["metadata"]["name"] for p in cluster.list_objects("v1", "Pod", NAMESPACE, "app=frontend")}  # noqa: E731
    checks.wait_for("the ReplicaSet back at two pods, the new one among them",
                    lambda: len(names()) == 2 and new in names(), timeout_s=30)


def test_a_hand_made_image_change_creates_a_new_replicaset(cluster):
    new_rs = checks.change_image_by_hand(cluster, NAMESPACE, "frontend", "server", "registry.local/f:two", timeout_s=30)
    deployment = cluster.get("apps/v1", "Deployment", "frontend", NAMESPACE)
    assert checks.image_of(deployment, "server") == "registry.local/f:two"
    managers = {m["manager"] for m in deployment["metadata"]["managedFields"]}
    assert "acceptance-hand-edit" in managers  # visible as drift to Argo CD
    assert len(checks.replicasets_of(cluster, NAMESPACE, "frontend")) == 2 and new_rs


def test_waits_fail_with_what_they_waited_for(cluster):
    with pytest.raises(ClusterError) as err:
        checks.wait_image(cluster, NAMESPACE, "frontend", "server", "registry.local/f:never", timeout_s=2)
    assert "frontend back on registry.local/f:never: not within 2s" in str(err.value)
    assert checks.unavailable_deployments(cluster, NAMESPACE) == ["frontend: 0/2 available"]


def test_results_record_each_check_with_its_time_and_failure():
    results = checks.Results()
    with results.check("passes"):
        pass
    with pytest.raises(ClusterError):
        with results.check("fails"):
            raise ClusterError("storefront did not answer\nmore")
    assert [(c["name"], c["passed"]) for c in results.checks] == [("passes", True), ("fails", False)]
    assert results.checks[1]["detail"] == "storefront did not answer"
