"""Argo CD in the lab: built from source (tools/images.py), installed by post-bootstrap from the pinned
install.yaml, its pods on the catalog's images (Debian's Redis 8.0.2 in place of 8.10.1, no Dex)."""

from __future__ import annotations

from tests.live.conftest import pinned

NAMESPACE = "argocd"


def test_argo_cd_s_pods_are_ready_on_the_catalog_s_images_without_dex(cluster, lab_settings):
    pods = cluster.list_objects("v1", "Pod", NAMESPACE)
    assert pods, "no Argo CD pods: did post-bootstrap install it (argocd_install)?"
    not_ready = [p["metadata"]["name"] for p in pods
                 if not any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
    assert not_ready == [], f"Argo CD pods not Ready: {not_ready}"
    images = {c["image"] for p in pods for c in [*p["spec"].get("initContainers", []), *p["spec"]["containers"]]}
    assert images == {pinned(lab_settings, "argocd"), pinned(lab_settings, "argocd-redis")}
    assert not any(p["metadata"]["name"].startswith("argocd-dex-server") for p in pods)
    assert cluster.get("apps/v1", "Deployment", "argocd-dex-server", NAMESPACE) is None


def test_argo_cd_s_api_answers_with_the_pinned_release(cluster):
    """Through the API server's service proxy, so nothing but the cluster is reached."""
    version = cluster.get_path(f"/api/v1/namespaces/{NAMESPACE}/services/https:argocd-server:443/proxy/api/version")
    assert version["Version"].startswith("v3.6.1"), version


def test_the_root_application_and_the_repository_are_declared(cluster):
    applications = cluster.list_objects("argoproj.io/v1alpha1", "Application", NAMESPACE)
    assert applications, "no Application: post-bootstrap's root app is missing"
    repository = cluster.get("v1", "Secret", "gitops-repo", NAMESPACE)
    assert repository["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
