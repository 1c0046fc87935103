"""tasks/argocd.py: install.yaml's images as the catalog pins them, and Argo CD without Dex."""

from __future__ import annotations

from dataclasses import replace

import pytest
import yaml

from tasks import argocd

MANIFEST = yaml.safe_dump_all([
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argocd-redis"},
     "spec": {"template": {"spec": {
         "initContainers": [{"name": "secret-init", "image": "quay.io/argoproj/argocd:v3.6.1"}],
         "containers": [{"name": "redis", "image": "public.ecr.aws/docker/library/redis:8.10.1-alpine"}]}}}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argocd-dex-server"},
     "spec": {"template": {"spec": {"containers": [{"name": "dex", "image": "ghcr.io/dexidp/dex:v2.46.0"}]}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "argocd-dex-server"}},
    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "argocd-server"}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-ssh-known-hosts-cm"},
     "data": {"ssh_known_hosts": "github.com ssh-ed25519 AAAAgithub\ngitlab.com ssh-ed25519 AAAAgitlab\n"}},
])
DIGEST = "sha256:" + "a" * 64


def images_of(objects: list[dict]) -> dict[str, list[str]]:
    return {o["metadata"]["name"]: [c["image"] for part in ("initContainers", "containers")
                                    for c in o["spec"]["template"]["spec"].get(part, [])]
            for o in objects if o["kind"] == "Deployment"}


def test_pods_run_the_catalog_s_images_by_digest_and_overrides_replace_the_manifest_s(sandbox_settings):
    images = {**sandbox_settings.images,
              "argocd": {"ref": "quay.io/argoproj/argocd:v3.6.1", "digest": DIGEST},
              "argocd-redis": {"ref": "docker.io/library/redis:8.0.2", "digest": DIGEST,
                               "upstream": "public.ecr.aws/docker/library/redis:8.10.1-alpine"},
              "dex": {"ref": "ghcr.io/dexidp/dex:v2.46.0", "digest": ""}}
    objects = argocd.install_objects(MANIFEST, argocd.image_names(images))
    assert images_of(objects) == {
        "argocd-redis": [f"quay.io/argoproj/argocd:v3.6.1@{DIGEST}", f"docker.io/library/redis:8.0.2@{DIGEST}"],
        "argocd-dex-server": ["ghcr.io/dexidp/dex:v2.46.0"],  # not pinned in the lock: left as named
    }


def test_without_dex_none_of_its_objects_is_installed():
    names = [(o["kind"], o["metadata"]["name"]) for o in argocd.install_objects(MANIFEST, dex=False)]
    assert names == [("Namespace", "argocd"), ("Deployment", "argocd-redis"), ("ServiceAccount", "argocd-server"),
                     ("ConfigMap", "argocd-ssh-known-hosts-cm")]
    assert all(o["metadata"].get("namespace") == "argocd" for o in argocd.install_objects(MANIFEST)[1:])


def test_the_sandbox_installs_argocd_without_dex_with_debian_s_redis_named_as_what_it_is(sandbox_settings):
    assert sandbox_settings.argocd_install and not sandbox_settings.argocd_dex
    needed = sandbox_settings.needed_images()
    assert {"argocd", "argocd-redis"} <= set(needed) and "dex" not in needed
    redis = sandbox_settings.images["argocd-redis"]
    assert redis["ref"] == "docker.io/library/redis:8.0.2"
    assert redis["upstream"] == "public.ecr.aws/docker/library/redis:8.10.1-alpine"
    assert "dex" in replace(sandbox_settings, argocd_dex=True).needed_images()
    assert "argocd" not in replace(sandbox_settings, argocd_install=False).needed_images()


def test_a_synced_chart_s_catalog_images_are_pulled_unless_its_app_is_left_out(sandbox_settings):
    assert "sealed-secrets-controller" in sandbox_settings.needed_images()
    left_out = {**sandbox_settings.gitops_apps_left_out, "sealed-secrets": "a reason long enough to print"}
    assert "sealed-secrets-controller" not in replace(sandbox_settings, gitops_apps_left_out=left_out).needed_images()
    assert "sealed-secrets-controller" not in replace(sandbox_settings, argocd_install=False).needed_images()


def test_gitlab_s_host_keys_join_upstream_s_known_hosts_once():
    ours = "gitlab.local ssh-ed25519 AAAAours\ngitlab.local ssh-rsa AAAArsa\n"

    def known_hosts(objects: list[dict]) -> list[str]:
        cm = next(o for o in objects if o["metadata"]["name"] == "argocd-ssh-known-hosts-cm")
        return cm["data"]["ssh_known_hosts"].splitlines()

    lines = known_hosts(argocd.install_objects(MANIFEST, known_hosts=ours))
    assert lines == ["github.com ssh-ed25519 AAAAgithub", "gitlab.com ssh-ed25519 AAAAgitlab",
                     "gitlab.local ssh-ed25519 AAAAours", "gitlab.local ssh-rsa AAAArsa"]
    assert known_hosts(argocd.install_objects(MANIFEST)) == lines[:2]
    cm = {"data": {"ssh_known_hosts": "\n".join(lines) + "\n"}}
    assert argocd.with_known_hosts(cm, ours)["data"]["ssh_known_hosts"].splitlines() == lines


def test_the_ingress_controller_s_image_is_pulled_only_where_it_is_the_chosen_one(sandbox_settings):
    from tasks.gitops_repo import platform_apps
    from tasks.settings import CHART_IMAGES

    everything = replace(sandbox_settings, gitops_apps_left_out={})
    assert everything.ingress_controller == "traefik" and "traefik" in everything.needed_images()
    assert "traefik" not in replace(everything, ingress_controller="ingress-nginx").needed_images()
    # the images pulled are those of the charted apps the gitops repo renders, for either choice
    for controller in ("traefik", "ingress-nginx"):
        chosen = replace(everything, ingress_controller=controller)
        rendered = {app.name for app in platform_apps(chosen)} & set(CHART_IMAGES)
        pulled = {app for app, names in CHART_IMAGES.items() if set(names) <= set(chosen.needed_images())}
        assert rendered == pulled, controller


def test_lab_apps_none_leaves_every_application_out_and_keeps_the_sandbox_s_reasons(sandbox_settings, monkeypatch):
    """The Debian 12 layer's lab (LAB_APPS=none): Argo CD installed, no Application synced, so none of the
    charts' images is pulled; what the sandbox leaves out keeps its own reason (the deploy test reads it)."""
    from tasks.gitops_repo import application_names
    from tasks.settings import load_settings
    from tests.conftest import SANDBOX, WITHOUT_MIRROR_LOCK, load_inventory
    from tools.lab.constants import lab_apps

    bare = load_settings(load_inventory(SANDBOX, env={"LAB_APPS": "none"}, data=WITHOUT_MIRROR_LOCK), "sandbox")
    assert bare.argocd_install and set(bare.gitops_apps_left_out) == set(application_names())
    assert bare.gitops_apps_left_out["metallb"] == "LAB_APPS=none: Argo CD without Applications"
    assert bare.gitops_apps_left_out["boutique-prod"] == sandbox_settings.gitops_apps_left_out["boutique-prod"]
    assert "sealed-secrets-controller" not in bare.needed_images() and "argocd" in bare.needed_images()
    assert "metallb" not in sandbox_settings.gitops_apps_left_out  # the default lab: every app it can run
    monkeypatch.setenv("LAB_APPS", "some")
    with pytest.raises(ValueError, match=r"LAB_APPS='some': use one of all, none \(or leave it unset: all\)"):
        lab_apps()
