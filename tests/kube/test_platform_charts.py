"""Every platform chart, rendered with the project's values (tests/validation/charts.py), server-side dry-run
against the real kube-apiserver with the charts' own CRDs installed: what Argo CD would apply, checked by the
API server's admission, defaulting and strict field validation (a field Kubernetes does not know fails here,
also below a values key the chart passes through whole, such as resources)."""

from __future__ import annotations

import copy

import pytest

from tasks.kube_client import ClusterError, connect
from tests.validation.charts import CHARTED_APPS, rendered_objects, values_of


@pytest.fixture(scope="module")
def rendered(sandbox_gitops_repo) -> dict[str, list[dict]]:
    return {app.name: rendered_objects(app, values_of(sandbox_gitops_repo, app)) for app in CHARTED_APPS}


@pytest.fixture(scope="module")
def cluster(kube_api, rendered):
    """The API server with every chart's CRDs installed for real (the rendered custom resources need their
    kinds) and each app's namespace (Argo CD creates those: CreateNamespace=true)."""
    cluster = connect(kube_api.kubeconfig)
    crds = [obj for objects in rendered.values() for obj in objects if obj["kind"] == "CustomResourceDefinition"]
    assert len(crds) >= 10, [c["metadata"]["name"] for c in crds]
    namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns, "labels": {"app.kubernetes.io/managed-by": "test"}}}
                  for ns in sorted({app.namespace for app in CHARTED_APPS})]
    cluster.apply_all([*crds, *namespaces], force=True)
    return cluster


@pytest.mark.parametrize("app", CHARTED_APPS, ids=[app.name for app in CHARTED_APPS])
def test_the_chart_s_objects_pass_a_server_side_dry_run(cluster, rendered, app):
    failures = []
    for obj in rendered[app.name]:
        if obj["kind"] == "CustomResourceDefinition":
            continue
        try:  # an object that names no namespace lands in the Application's destination, as Argo CD does
            cluster.apply(obj, dry_run=True, namespace=app.namespace)
        except ClusterError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_a_field_kubernetes_does_not_know_fails_below_a_passed_through_key(cluster, rendered):
    """Control case: resources is passed through by the metrics-server chart (the key check accepts what is
    below it), so a misspelt `limts` reaches Kubernetes, and the dry-run refuses it."""
    deployment = copy.deepcopy(next(o for o in rendered["metrics-server"] if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limts"] = {"memory": "1Gi"}
    with pytest.raises(ClusterError, match="limts"):
        cluster.apply(deployment, dry_run=True, namespace="kube-system")
