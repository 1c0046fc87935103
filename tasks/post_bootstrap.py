"""Phases 3-4 wiring, run once from the machine that runs pyinfra: the Kubernetes client installs what Argo CD
cannot install itself, then hands everything else to Argo CD.

Stages, in order (each idempotent: a rerun applies the same objects and reports them unchanged):
1. node labels and roles from the inventory;
2. Argo CD from its pinned install manifest (sha256), by server-side apply; conflicts are forced here
   only, as Argo CD's docs prescribe (`--server-side --force-conflicts`: its CRDs are too big for the
   last-applied annotation of client-side apply), then waits for its CRDs and workloads;
3. Argo CD's access to gitops-repo: a repository Secret holding the read-only deploy key from phase 1
   (never logged), and the initial admin password saved to a 0600 file whose path is printed;
4. the root Application (app of apps) from the rendered gitops repo: Argo CD installs everything else.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import yaml

from tasks.artifacts import mirror_path
from tasks.kube_client import Applied, Cluster, ClusterError, load_manifests
from tasks.settings import Settings

ARGOCD_NAMESPACE = "argocd"
REPOSITORY_SECRET = "gitops-repo"
ARGOCD_WORKLOADS = [("Deployment", "argocd-server"), ("Deployment", "argocd-repo-server"),
                    ("Deployment", "argocd-redis"), ("Deployment", "argocd-applicationset-controller"),
                    ("StatefulSet", "argocd-application-controller")]


@dataclass
class Report:
    applied: list[Applied] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def changed(self) -> list[Applied]:
        return [a for a in self.applied if a.outcome != "unchanged"]


# ------------------------------------------------------------------------------------------ sources


def fetch_artifact(settings: Settings, name: str) -> bytes:
    """A pinned artifact on this machine (the state folder caches it), verified by sha256 on every use."""
    spec = settings.artifacts[name]
    url = spec["url"].format(version=spec["version"])
    source = f"{settings.artifact_mirror}/{mirror_path(url)}" if settings.artifact_mirror else url
    cached = settings.state_path / "downloads" / f"{name}-{spec['version']}-{Path(urlsplit(url).path).name}"
    if cached.exists() and hashlib.sha256(cached.read_bytes()).hexdigest() == spec["sha256"]:
        return cached.read_bytes()
    try:
        response = requests.get(source, timeout=120)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise ClusterError(f"cannot download {name} {spec['version']} from {source} ({exc}): check the address "
                           "and artifact_mirror") from None
    digest = hashlib.sha256(response.content).hexdigest()
    if digest != spec["sha256"]:
        raise ClusterError(f"{name} {spec['version']} from {source} has sha256 {digest}, not the pinned "
                           f"{spec['sha256']}: refusing it (re-pin with tools/pin_artifacts.py if the release "
                           "really changed)")
    cached.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    cached.write_bytes(response.content)
    return response.content


# ------------------------------------------------------------------------------------------ objects


def node_label_patches(settings: Settings) -> list[dict]:
    """Partial Node objects: server-side apply owns exactly these labels and nothing else of the Node."""
    return [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.hostname, "labels": n.node_labels}}
            for n in settings.nodes if (n.has_role("control_plane") or n.has_role("worker")) and n.node_labels]


def argocd_objects(manifest: str) -> list[dict]:
    # The label is not decoration: an applied object with no field besides its name gets no managedFields
    # entry, and the next apply then records "before-first-apply" and counts as a change.
    objects = [{"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ARGOCD_NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "gitops-lab"}}}]
    for obj in load_manifests(manifest):
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"):
            obj.setdefault("metadata", {}).setdefault("namespace", ARGOCD_NAMESPACE)
        objects.append(obj)
    return objects


def repository_secret(repo_url: str, private_key: str) -> dict:
    """Argo CD's declarative repository: a Secret labelled as one (its docs: Declarative Setup)."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": REPOSITORY_SECRET, "namespace": ARGOCD_NAMESPACE,
                     "labels": {"argocd.argoproj.io/secret-type": "repository"}},
        "stringData": {"type": "git", "url": repo_url, "sshPrivateKey": private_key},
    }


def root_application(gitops_repo_dir: Path) -> dict:
    return yaml.safe_load((gitops_repo_dir / "argocd" / "root.yaml").read_text())


# ------------------------------------------------------------------------------------------ steps


def label_nodes(cluster: Cluster, settings: Settings) -> list[Applied]:
    present = [p for p in node_label_patches(settings) if cluster.get("v1", "Node", p["metadata"]["name"])]
    return [cluster.apply(p) for p in present]


def install_argocd(cluster: Cluster, manifest: str, timeout_s: float) -> list[Applied]:
    applied = cluster.apply_all(argocd_objects(manifest), force=True)
    for kind, name in ARGOCD_WORKLOADS:
        cluster.wait_rolled_out(kind, name, ARGOCD_NAMESPACE, timeout_s)
    return applied


def save_admin_password(cluster: Cluster, settings: Settings) -> str:
    """Argo CD's docs: use the generated initial password to log in, change it, then delete the Secret.
    The password goes to a 0600 file in the state folder; only the path is printed."""
    target = settings.state_path / "argocd-initial-admin-password"
    secret = cluster.get("v1", "Secret", "argocd-initial-admin-secret", ARGOCD_NAMESPACE)
    if secret is None:
        if target.exists():
            return f"Argo CD admin: the initial password was saved in {target} (its Secret is gone: changed already?)"
        return "Argo CD admin: no argocd-initial-admin-secret (the password was changed and the Secret deleted)"
    password = base64.b64decode(secret["data"]["password"]).decode()
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.touch(mode=0o600)
    target.chmod(0o600)
    target.write_text(password + "\n")
    return (f"Argo CD admin: initial password in {target}; log in as admin, change it (argocd account "
            "update-password), then delete the argocd-initial-admin-secret Secret")


def bootstrap(cluster: Cluster, settings: Settings, argocd_manifest: str, deploy_key: str, repo_url: str,
              gitops_repo_dir: Path, timeout_s: float) -> Report:
    report = Report()
    report.applied += label_nodes(cluster, settings)
    report.applied += install_argocd(cluster, argocd_manifest, timeout_s)
    report.applied.append(cluster.apply(repository_secret(repo_url, deploy_key)))
    report.notes.append(save_admin_password(cluster, settings))
    report.applied.append(cluster.apply(root_application(gitops_repo_dir)))
    return report
