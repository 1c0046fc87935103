"""The Slack webhook as a SealedSecret in gitops-repo: sealed on the operator's machine with the cluster's
Sealed Secrets certificate, so the URL is never in Git, never printed, and never written to disk in clear.

The controller itself is a platform app (Argo CD installs it from gitops-repo); this module seals and
commits. Where the URL comes from: the environment variable SLACK_WEBHOOK_URL, else the state folder's
`slack-webhook-url` file (0600). Neither: nothing is sealed and the deploy says so (Alertmanager then has
no Slack receiver secret and its pods wait for it; see RUNBOOK.md).

Sealing is not deterministic (fresh random session keys), so the step remembers a hash of what it sealed
(URL + certificate) in the state folder and seals again only when either changed: a rerun commits nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

import yaml

from tasks import artifacts, gitlab_api
from tasks.kube_client import Cluster, ClusterError
from tasks.settings import Settings
from tasks.state import LocalState

SECRET_NAMESPACE = "monitoring"
SECRET_NAME = "alertmanager-slack-webhook"  # mounted by Alertmanager (kube-prometheus-stack values)
SEALED_PATH = "platform/boutique-monitoring/slack-webhook.sealed.yaml"
KUSTOMIZATION_PATH = f"{Path(SEALED_PATH).parent}/kustomization.yaml"
CONTROLLER_NAMESPACE = "kube-system"
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"


def read_webhook(state: LocalState) -> str | None:
    url = os.environ.get("SLACK_WEBHOOK_URL", "").strip()
    path = state.slack_webhook_url
    if not url and path.exists():
        url = path.read_text().strip()
    if url and not url.startswith("https://"):
        raise ClusterError(
            f"the Slack webhook (SLACK_WEBHOOK_URL or {path}) is not an https URL: copy it from "
            "Slack's Incoming Webhooks page"
        )
    return url or None


def controller_certificate(cluster: Cluster) -> bytes:
    """The active sealing certificate of the controller (kube-system, sealed-secrets-controller)."""
    secrets = cluster.list_objects("v1", "Secret", CONTROLLER_NAMESPACE, f"{KEY_LABEL}=active")
    if not secrets:
        raise ClusterError(
            f"the Sealed Secrets controller has no active key yet ({CONTROLLER_NAMESPACE}, label "
            f"{KEY_LABEL}=active): wait until Argo CD has synced the sealed-secrets app, then rerun"
        )
    newest = max(secrets, key=lambda s: s["metadata"]["creationTimestamp"])
    return base64.b64decode(newest["data"]["tls.crt"])


def webhook_secret(url: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": SECRET_NAMESPACE},
        "stringData": {"url": url},
    }


def seal(kubeseal: Path, certificate: bytes, secret: dict) -> str:
    """The SealedSecret YAML for `secret` (strict scope: only this name in this namespace can decrypt it).
    The clear Secret goes to kubeseal on stdin only."""
    with tempfile.NamedTemporaryFile(suffix=".pem") as cert:
        cert.write(certificate)
        cert.flush()
        proc = subprocess.run(
            [str(kubeseal), "--cert", cert.name, "--format", "yaml", "--scope", "strict"],
            input=yaml.safe_dump(secret),
            capture_output=True,
            text=True,
            timeout=60,
        )
    if proc.returncode != 0:
        raise ClusterError(
            f"kubeseal failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}"
        )
    return proc.stdout


def sealing_stamp(url: str, certificate: bytes) -> str:
    return hashlib.sha256(url.encode() + b"\0" + certificate).hexdigest()


def needs_sealing(state: LocalState, url: str, certificate: bytes) -> bool:
    stamp = state.slack_webhook_sealed_stamp
    return not stamp.exists() or stamp.read_text().strip() != sealing_stamp(url, certificate)


def remember_sealing(state: LocalState, url: str, certificate: bytes) -> None:
    state.write_private(state.slack_webhook_sealed_stamp, sealing_stamp(url, certificate) + "\n")


def with_sealed_resource(kustomization: str) -> str:
    """boutique-monitoring's kustomization.yaml with the sealed file listed (once)."""
    data = yaml.safe_load(kustomization)
    resources = data.setdefault("resources", [])
    name = Path(SEALED_PATH).name
    if name not in resources:
        resources.append(name)
    return yaml.safe_dump(data, sort_keys=False)


def commit_sealed_webhook(settings: Settings, state: LocalState, sealed: str) -> str:
    """Commit the SealedSecret (and its kustomization entry) to gitops-repo's main branch via GitLab's API."""
    gl = gitlab_api.gitlab_client(settings, state)
    project = gitlab_api.gitops_project(gl, settings)
    branch = gitlab_api.GITOPS_BRANCH
    kustomization = with_sealed_resource(gitlab_api.file_content(gl, project["id"], KUSTOMIZATION_PATH, branch))
    created: list[str] = []
    gitlab_api.ensure_files_committed(
        gl,
        project["id"],
        branch,
        {SEALED_PATH: sealed, KUSTOMIZATION_PATH: kustomization},
        "Seal the Alertmanager Slack webhook [skip ci]",
        created,
    )
    return (
        f"Slack webhook sealed and committed to gitops-repo ({SEALED_PATH})"
        if created
        else "Slack webhook: the sealed file in gitops-repo is current"
    )


def kubeseal_binary(settings: Settings, state: LocalState) -> Path:
    """kubeseal from its pinned release archive, unpacked into the state folder once per version."""
    target = state.bin / f"kubeseal-{settings.artifacts['kubeseal']['version']}"
    if not target.exists():
        with tarfile.open(fileobj=io.BytesIO(artifacts.fetch_local(settings, state, "kubeseal"))) as tar:
            member = tar.extractfile("kubeseal")
            assert member is not None, "the kubeseal archive holds no kubeseal file"
            data = member.read()
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        target.write_bytes(data)
        target.chmod(0o755)
    return target


def seal_slack_webhook(cluster: Cluster, settings: Settings, state: LocalState) -> str:
    url = read_webhook(state)
    if url is None:
        return (
            f"Slack webhook: not sealed (set SLACK_WEBHOOK_URL or write it to {state.slack_webhook_url}, "
            "then rerun); alerts stay in Alertmanager's UI"
        )
    try:
        certificate = controller_certificate(cluster)
    except ClusterError as exc:
        return f"Slack webhook: not sealed yet: {exc}"
    if not needs_sealing(state, url, certificate):
        return "Slack webhook: sealed already for this URL and controller key"
    sealed = seal(kubeseal_binary(settings, state), certificate, webhook_secret(url))
    note = commit_sealed_webhook(settings, state, sealed)
    remember_sealing(state, url, certificate)
    return note
