"""Phases 3-4, Argo CD: installed by the post-bootstrap step, then it installs everything else from Git.

Stages: `install` (the pinned upstream install.yaml by server-side apply, its images as the catalog pins
them (by digest where the lock has one; `image_overrides` replaced), without Dex unless `argocd_dex`, with
GitLab's SSH host keys among its known hosts; conflicts are forced here only, as
Argo CD's docs prescribe with `--server-side --force-conflicts`: its CRDs are too big for client-side
apply's annotation; then its CRDs Established and its workloads rolled out), `configure` (the repository
Secret with gitops-repo's read-only deploy key, never logged; the initial admin password saved to a 0600
file whose path alone is printed), `activate` (the root Application, app of apps, from the rendered gitops
repository).
"""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from tasks.kube_client import Applied, Cluster, load_manifests
from tasks.state import LocalState

NAMESPACE = "argocd"
REPOSITORY_SECRET = "gitops-repo"
WORKLOADS = [
    ("Deployment", "argocd-server"),
    ("Deployment", "argocd-repo-server"),
    ("Deployment", "argocd-redis"),
    ("Deployment", "argocd-applicationset-controller"),
    ("StatefulSet", "argocd-application-controller"),
]
CLUSTER_SCOPED = ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace")
KNOWN_HOSTS_CONFIGMAP = "argocd-ssh-known-hosts-cm"
# Every object of Dex's (Deployment, Service, ServiceAccount, Role, RoleBinding, NetworkPolicy) is named so.
DEX_PREFIX = "argocd-dex-server"


def image_names(images: dict[str, dict[str, str]]) -> dict[str, str]:
    """What pods should run instead of what install.yaml names: each catalog image (by the reference upstream
    manifests use) -> the catalog's choice, by digest where the lock pins one."""
    return {
        image.get("upstream", image["ref"]): f"{image['ref']}@{image['digest']}" if image["digest"] else image["ref"]
        for image in images.values()
    }


def _pod_spec(obj: dict) -> dict | None:
    return obj.get("spec", {}).get("template", {}).get("spec") if obj["kind"] in ("Deployment", "StatefulSet") else None


def with_known_hosts(configmap: dict, known_hosts: str) -> dict:
    """Argo CD's SSH known hosts ConfigMap with `known_hosts` lines added after upstream's (none twice)."""
    data = configmap.setdefault("data", {})
    present = data.get("ssh_known_hosts", "")
    extra = [line for line in known_hosts.splitlines() if line.strip() and line not in present.splitlines()]
    if extra:
        data["ssh_known_hosts"] = present.rstrip("\n") + "\n" + "\n".join(extra) + "\n"
    return configmap


def install_objects(
    manifest: str, images: dict[str, str] | None = None, dex: bool = True, known_hosts: str = ""
) -> list[dict]:
    """install.yaml's objects in the argocd namespace; container images renamed by `images` (see image_names);
    Dex's objects left out unless `dex`; GitLab's SSH host keys (`known_hosts` lines) added to the known
    hosts Argo CD checks (upstream's ConfigMap holds public hosts' keys only)."""
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for obj in load_manifests(manifest):
        if not dex and obj.get("metadata", {}).get("name", "").startswith(DEX_PREFIX):
            continue
        if obj["kind"] == "ConfigMap" and obj.get("metadata", {}).get("name") == KNOWN_HOSTS_CONFIGMAP:
            obj = with_known_hosts(obj, known_hosts)
        if obj["kind"] not in CLUSTER_SCOPED:
            obj.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
        spec = _pod_spec(obj)
        for container in [*(spec or {}).get("initContainers", []), *(spec or {}).get("containers", [])]:
            container["image"] = (images or {}).get(container["image"], container["image"])
        objects.append(obj)
    return objects


def repository_secret(repo_url: str, private_key: str) -> dict:
    """Argo CD's declarative repository: a Secret labelled as one (its docs: Declarative Setup)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": REPOSITORY_SECRET,
            "namespace": NAMESPACE,
            "labels": {"argocd.argoproj.io/secret-type": "repository"},
        },
        "stringData": {"type": "git", "url": repo_url, "sshPrivateKey": private_key},
    }


def root_application(gitops_repo_dir: Path) -> dict:
    return yaml.safe_load((gitops_repo_dir / "argocd" / "root.yaml").read_text())


def install(
    cluster: Cluster,
    manifest: str,
    timeout_s: float,
    images: dict[str, str] | None = None,
    dex: bool = True,
    known_hosts: str = "",
) -> list[Applied]:
    applied = cluster.apply_all(install_objects(manifest, images, dex, known_hosts), force=True)
    for kind, name in WORKLOADS:
        cluster.wait_rolled_out(kind, name, NAMESPACE, timeout_s)
    return applied


def save_admin_password(cluster: Cluster, state: LocalState) -> str:
    """Argo CD's docs: use the generated initial password to log in, change it, then delete the Secret.
    The password goes to a 0600 file in the state folder; only the path is printed."""
    target = state.argocd_admin_password
    secret = cluster.get("v1", "Secret", "argocd-initial-admin-secret", NAMESPACE)
    if secret is None:
        if target.exists():
            return f"Argo CD admin: the initial password was saved in {target} (its Secret is gone: changed already?)"
        return "Argo CD admin: no argocd-initial-admin-secret (the password was changed and the Secret deleted)"
    state.write_private(target, base64.b64decode(secret["data"]["password"]) + b"\n")
    return (
        f"Argo CD admin: initial password in {target}; log in as admin, change it (argocd account "
        "update-password), then delete the argocd-initial-admin-secret Secret"
    )


def configure(cluster: Cluster, state: LocalState, repo_url: str) -> tuple[list[Applied], str]:
    """The repository Secret and the saved admin password: (applied, note)."""
    state.deploy_key_pair()  # made here when phase 1 did not (GitLab skipped): GitLab registers it when it runs
    applied = [cluster.apply(repository_secret(repo_url, state.deploy_key.read_text()))]
    return applied, save_admin_password(cluster, state)


def activate(cluster: Cluster, gitops_repo_dir: Path) -> list[Applied]:
    return [cluster.apply(root_application(gitops_repo_dir))]
