"""The Slack webhook as a SealedSecret in gitops-repo: sealed on this machine with the cluster's Sealed
Secrets certificate, so the URL is never in Git, never printed, and never written to disk in clear.

Where the URL comes from: the environment variable SLACK_WEBHOOK_URL, else the file
<state_dir>/slack-webhook-url (0600). Neither: nothing is sealed and the deploy says so (Alertmanager then
has no Slack receiver secret and its pods wait for it; see RUNBOOK.md).

Sealing is not deterministic (fresh random session keys), so the step remembers a hash of what it sealed
(URL + certificate) in the state folder and seals again only when either changed: a rerun commits nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import yaml

from tasks.kube_client import Cluster, ClusterError
from tasks.settings import Settings

SECRET_NAMESPACE = "monitoring"
SECRET_NAME = "alertmanager-slack-webhook"  # mounted by Alertmanager (kube-prometheus-stack values)
SEALED_PATH = "platform/boutique-monitoring/slack-webhook.sealed.yaml"
CONTROLLER_NAMESPACE = "kube-system"
KEY_LABEL = "sealedsecrets.bitnami.com/sealed-secrets-key"


def read_webhook(settings: Settings) -> str | None:
    url = os.environ.get("SLACK_WEBHOOK_URL", "").strip()
    path = settings.state_path / "slack-webhook-url"
    if not url and path.exists():
        url = path.read_text().strip()
    if url and not url.startswith("https://"):
        raise ClusterError("the Slack webhook (SLACK_WEBHOOK_URL or state/slack-webhook-url) is not an https URL: "
                           "copy it from Slack's Incoming Webhooks page")
    return url or None


def controller_certificate(cluster: Cluster) -> bytes:
    """The active sealing certificate of the controller (kube-system, sealed-secrets-controller)."""
    secrets = cluster.list("v1", "Secret", CONTROLLER_NAMESPACE, f"{KEY_LABEL}=active")
    if not secrets:
        raise ClusterError(f"the Sealed Secrets controller has no active key yet ({CONTROLLER_NAMESPACE}, label "
                           f"{KEY_LABEL}=active): wait until Argo CD has synced the sealed-secrets app, then rerun")
    newest = max(secrets, key=lambda s: s["metadata"]["creationTimestamp"])
    return base64.b64decode(newest["data"]["tls.crt"])


def webhook_secret(url: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": SECRET_NAME, "namespace": SECRET_NAMESPACE}, "stringData": {"url": url}}


def seal(kubeseal: Path, certificate: bytes, secret: dict) -> str:
    """The SealedSecret YAML for `secret` (strict scope: only this name in this namespace can decrypt it).
    The clear Secret goes to kubeseal on stdin only."""
    with tempfile.NamedTemporaryFile(suffix=".pem") as cert:
        cert.write(certificate)
        cert.flush()
        proc = subprocess.run([str(kubeseal), "--cert", cert.name, "--format", "yaml", "--scope", "strict"],
                              input=yaml.safe_dump(secret), capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ClusterError(f"kubeseal failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
    return proc.stdout


def sealing_stamp(url: str, certificate: bytes) -> str:
    return hashlib.sha256(url.encode() + b"\0" + certificate).hexdigest()


def _stamp_file(settings: Settings) -> Path:
    return settings.state_path / "slack-webhook.sealed-sha256"


def needs_sealing(settings: Settings, url: str, certificate: bytes) -> bool:
    stamp = _stamp_file(settings)
    return not stamp.exists() or stamp.read_text().strip() != sealing_stamp(url, certificate)


def remember_sealing(settings: Settings, url: str, certificate: bytes) -> None:
    stamp = _stamp_file(settings)
    stamp.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    stamp.write_text(sealing_stamp(url, certificate) + "\n")


def with_sealed_resource(kustomization: str) -> str:
    """boutique-monitoring's kustomization.yaml with the sealed file listed (once)."""
    data = yaml.safe_load(kustomization)
    resources = data.setdefault("resources", [])
    name = Path(SEALED_PATH).name
    if name not in resources:
        resources.append(name)
    return yaml.safe_dump(data, sort_keys=False)
