"""Every manifest of the rendered gitops repo, server-side dry-run against a real kube-apiserver with the
upstream CRDs installed. This catches what schema checks cannot: admission and defaulting, CRD structural
and CEL rules, immutable or cross-field constraints (e.g. a selector that does not match its template)."""

from __future__ import annotations

import copy

import pytest

from tasks.kube_client import ClusterError, connect, load_manifests
from tests.validation.gitops import kustomize, kustomize_roots, name_of, plain_manifests
from tools.upstream import SOURCES, read_files


@pytest.fixture(scope="module")
def cluster_with_crds(kube_api):
    cluster = connect(kube_api.kubeconfig)
    crds = [obj for name in SOURCES for path, text in read_files(name).items() if path.endswith(".yaml")
            for obj in load_manifests(text) if obj.get("kind") == "CustomResourceDefinition"]
    assert len(crds) >= 10
    cluster.apply_all(crds, force=True)
    return cluster


@pytest.fixture(scope="module")
def gitops_objects(sandbox_gitops_repo) -> list[dict]:
    objects = [obj for root in kustomize_roots(sandbox_gitops_repo) for obj in kustomize(root)]
    objects += [obj for _, obj in plain_manifests(sandbox_gitops_repo)]
    assert len(objects) > 50
    return objects


def namespaces_of(objects: list[dict]) -> set[str]:
    return {o["metadata"]["namespace"] for o in objects if o.get("metadata", {}).get("namespace")}


def dry_run_failures(cluster, objects: list[dict]) -> list[str]:
    failures = []
    for obj in objects:
        try:
            cluster.apply(obj, dry_run=True)
        except ClusterError as exc:
            failures.append(f"{name_of(obj)}: {exc}")
    return failures


def test_every_rendered_manifest_passes_a_server_side_dry_run(cluster_with_crds, gitops_objects):
    # Argo CD creates the namespaces (CreateNamespace=true); here they are created for real first.
    for namespace in sorted(namespaces_of(gitops_objects)):
        cluster_with_crds.apply({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": namespace, "labels": {"app.kubernetes.io/managed-by": "test"}}})
    failures = dry_run_failures(cluster_with_crds, gitops_objects)
    assert not failures, "\n".join(failures)


def test_the_dry_run_catches_what_schemas_cannot(cluster_with_crds, gitops_objects):
    """Control cases: each mutation is well-formed YAML of the right types, and the API server refuses it."""
    deployment = copy.deepcopy(next(o for o in gitops_objects if o["kind"] == "Deployment"))
    deployment["spec"]["selector"]["matchLabels"] = {"app": "does-not-match-the-template"}
    service = copy.deepcopy(next(o for o in gitops_objects if o["kind"] == "Service"))
    service["spec"]["ports"][0]["port"] = 70000
    failures = dry_run_failures(cluster_with_crds, [deployment, service])
    assert len(failures) == 2, failures
    assert "`selector` does not match template `labels`" in failures[0]
    assert "70000" in failures[1] or "between 1 and 65535" in failures[1]
