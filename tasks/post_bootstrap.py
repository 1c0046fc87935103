"""Phases 3-4 wiring, run once from the machine that runs pyinfra: the Kubernetes client installs what Argo CD
cannot install itself, then hands everything else to Argo CD.

Stages, in order (each idempotent: a rerun applies the same objects and reports them unchanged):
0. the CNI (Calico's tigera-operator or Cilium, by `cni`) from its pinned Helm chart archive, rendered here
   with Helm's engine; then every node must turn Ready within `node_ready_timeout_s`; then the default
   StorageClass's provisioner (local-path, or NFS by `storage_class`);
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

import requests
import yaml

from tasks import artifacts
from tasks.helm_charts import cni_release, render_chart
from tasks.kube_client import Applied, Cluster, ClusterError, load_manifests
from tasks.settings import CHOSEN_ARTIFACTS, Settings

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
    source = artifacts.source_url(settings, name)
    cached = settings.state_path / "downloads" / f"{name}-{spec['version']}-{artifacts.file_name(settings, name)}"
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
    objects = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ARGOCD_NAMESPACE}}]
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


def apply_into(cluster: Cluster, namespace: str, objects: list[dict]) -> list[Applied]:
    """The namespace, then `objects`; a namespaced object that names no namespace lands in it."""
    namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return cluster.apply_all([namespace_obj, *objects], namespace=namespace)


def install_cni(cluster: Cluster, settings: Settings, chart: bytes, api_endpoint: str) -> list[Applied]:
    host, _, port = api_endpoint.rpartition(":")
    release, namespace, values = cni_release(settings, host, int(port))
    return apply_into(cluster, namespace, render_chart(chart, values, release, namespace))


def install_storage(cluster: Cluster, settings: Settings, source: bytes) -> list[Applied]:
    from tasks.storage import storage_objects

    return apply_into(cluster, *storage_objects(settings, source))


def kubernetes_nodes(settings: Settings) -> list[str]:
    return [n.hostname for n in settings.nodes if n.has_role("control_plane") or n.has_role("worker")]


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


def commit_sealed_webhook(settings: Settings, sealed: str) -> str:
    """Commit the SealedSecret (and its kustomization entry) to gitops-repo's main branch via GitLab's API."""
    from urllib.parse import quote

    from tasks import sealing
    from tasks.gitlab_api import ensure_files_committed
    from tasks.platform import gitlab_client

    gl = gitlab_client(settings)
    project = gl.get(f"/projects/{quote(f'{settings.gitlab_group}/gitops-repo', safe='')}")
    kustomization_path = f"{Path(sealing.SEALED_PATH).parent}/kustomization.yaml"
    current = gl.get(f"/projects/{project['id']}/repository/files/{quote(kustomization_path, safe='')}", ref="main")
    kustomization = sealing.with_sealed_resource(base64.b64decode(current["content"]).decode())
    created: list[str] = []
    ensure_files_committed(gl, project["id"], "main", {sealing.SEALED_PATH: sealed, kustomization_path: kustomization},
                           "Seal the Alertmanager Slack webhook [skip ci]", created)
    return f"Slack webhook sealed and committed to gitops-repo ({sealing.SEALED_PATH})" if created else \
        "Slack webhook: the sealed file in gitops-repo is current"


def seal_slack_webhook(cluster: Cluster, settings: Settings, kubeseal: Path) -> str:
    from tasks import sealing

    url = sealing.read_webhook(settings)
    if url is None:
        return ("Slack webhook: not sealed (set SLACK_WEBHOOK_URL or write it to "
                f"{settings.state_path / 'slack-webhook-url'}, then rerun); alerts stay in Alertmanager's UI")
    try:
        certificate = sealing.controller_certificate(cluster)
    except ClusterError as exc:
        return f"Slack webhook: not sealed yet: {exc}"
    if not sealing.needs_sealing(settings, url, certificate):
        return "Slack webhook: sealed already for this URL and controller key"
    note = commit_sealed_webhook(settings, sealing.seal(kubeseal, certificate, sealing.webhook_secret(url)))
    sealing.remember_sealing(settings, url, certificate)
    return note


def unpack_kubeseal(settings: Settings) -> Path:
    """kubeseal from its pinned release archive, unpacked into the state folder once per version."""
    import io
    import tarfile

    target = settings.state_path / "bin" / f"kubeseal-{settings.artifacts['kubeseal']['version']}"
    if not target.exists():
        with tarfile.open(fileobj=io.BytesIO(fetch_artifact(settings, "kubeseal"))) as tar:
            data = tar.extractfile("kubeseal").read()
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_bytes(data)
        target.chmod(0o755)
    return target


def run(settings: Settings, kubeconfig: Path, api_endpoint: str) -> Report:
    """The whole step, as deploy.py calls it once the cluster exists."""
    import tempfile

    from tasks.gitops_repo import gitops_repo_url, render_gitops_repo
    from tasks.kube_client import connect

    cluster = connect(kubeconfig)
    report = Report()
    cni_chart = fetch_artifact(settings, CHOSEN_ARTIFACTS["cni"][settings.cni])
    report.applied += install_cni(cluster, settings, cni_chart, api_endpoint)
    cluster.wait_nodes_ready(kubernetes_nodes(settings), settings.node_ready_timeout_s)
    storage = CHOSEN_ARTIFACTS["storage_class"][settings.storage_class]
    report.applied += install_storage(cluster, settings, fetch_artifact(settings, storage))
    deploy_key = (settings.state_path / "argocd-deploy-key").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        # Only argocd/root.yaml is read from it: the image tag does not matter here.
        repo = render_gitops_repo(settings, Path(tmp) / "gitops-repo", image_tag="bootstrap")
        boot = bootstrap(cluster, settings, fetch_artifact(settings, "argocd-install").decode(), deploy_key,
                         gitops_repo_url(settings), repo, timeout_s=settings.node_ready_timeout_s)
    report.applied += boot.applied
    report.notes += boot.notes
    report.notes.append(seal_slack_webhook(cluster, settings, unpack_kubeseal(settings)))
    return report


def run_from_deploy(settings: Settings) -> None:
    """deploy.py's python.call: the whole step, with a summary line and the notes (paths, never values)."""
    from pyinfra import logger

    from tasks.kubernetes import api_endpoint, kubeconfig_path

    report = run(settings, kubeconfig_path(settings), api_endpoint(settings))
    counts: dict[str, int] = {}
    for applied in report.applied:
        counts[applied.outcome] = counts.get(applied.outcome, 0) + 1
    logger.info("    post-bootstrap: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))
    for note in report.notes:
        logger.info(f"    {note}")
