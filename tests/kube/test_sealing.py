"""The Slack webhook sealed with kubeseal (v0.40.0, built from the Go module proxy) and the controller's
certificate read from a real API server; unsealed again with the private key to prove the round trip; and
the rules that keep the URL out of Git and out of the output, and a rerun from sealing again."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tasks import sealed_secrets as sealing
from tasks.state import LocalState
from tasks.kube_client import ClusterError, connect
from tests.conftest import unavailable
from tools.gobuild import ToolUnavailable, go_tool

WEBHOOK = "https://hooks.slack.example/services/T000/B000/not-a-real-secret"


@pytest.fixture(scope="module")
def kubeseal():
    try:
        return go_tool("kubeseal")
    except ToolUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="module")
def controller_key(tmp_path_factory):
    """An RSA key and self-signed certificate like the one the controller generates at first start."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    path = tmp_path_factory.mktemp("sealing") / "controller.key"
    path.write_bytes(key_pem)
    return cert.public_bytes(serialization.Encoding.PEM), key_pem, path


def key_secret(controller_key, state: str) -> dict:
    """The controller's key Secret as it stores it (kube-system, labelled active or compromised)."""
    cert_pem, key_pem, _ = controller_key
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "sealed-secrets-keyabcde", "namespace": "kube-system",
                         "labels": {sealing.KEY_LABEL: state}},
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": base64.b64encode(key_pem).decode()}}


@pytest.fixture(scope="module")
def cluster(kube_api, controller_key):
    cluster = connect(kube_api.kubeconfig)
    cluster.apply(key_secret(controller_key, "active"))
    return cluster


def test_the_controller_certificate_is_read_from_the_cluster(cluster, controller_key):
    assert sealing.controller_certificate(cluster) == controller_key[0]


def test_sealed_webhook_round_trips_and_holds_no_clear_text(cluster, kubeseal, controller_key, tmp_path):
    sealed = sealing.seal(kubeseal, sealing.controller_certificate(cluster), sealing.webhook_secret(WEBHOOK))
    assert WEBHOOK not in sealed and "not-a-real-secret" not in sealed
    doc = yaml.safe_load(sealed)
    assert doc["kind"] == "SealedSecret" and doc["apiVersion"] == "bitnami.com/v1alpha1"
    assert doc["metadata"]["name"] == "alertmanager-slack-webhook" and doc["metadata"]["namespace"] == "monitoring"
    assert set(doc["spec"]["encryptedData"]) == {"url"}
    sealed_file = tmp_path / "sealed.yaml"
    sealed_file.write_text(sealed)
    unsealed = subprocess.run([str(kubeseal), "--recovery-unseal", "--recovery-private-key", str(controller_key[2]),
                               "--format", "yaml", "-f", str(sealed_file)], capture_output=True, text=True, timeout=60)
    assert unsealed.returncode == 0, unsealed.stderr
    secret = yaml.safe_load(unsealed.stdout)
    assert base64.b64decode(secret["data"]["url"]).decode() == WEBHOOK
    assert secret["metadata"]["namespace"] == "monitoring"


def test_a_rerun_seals_again_only_when_url_or_certificate_changed(sandbox_settings, tmp_path, controller_key):
    state = LocalState(tmp_path / "state")
    cert = controller_key[0]
    assert sealing.needs_sealing(state, WEBHOOK, cert)
    sealing.remember_sealing(state, WEBHOOK, cert)
    assert not sealing.needs_sealing(state, WEBHOOK, cert)
    assert sealing.needs_sealing(state, WEBHOOK + "x", cert)
    assert sealing.needs_sealing(state, WEBHOOK, cert + b"\n")
    assert WEBHOOK not in state.slack_webhook_sealed_stamp.read_text()


def test_webhook_comes_from_the_environment_or_the_state_file(sandbox_settings, tmp_path, monkeypatch):
    state = LocalState(tmp_path / "state")
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    assert sealing.read_webhook(state) is None
    state.write_private(state.slack_webhook_url, WEBHOOK + "\n")
    assert sealing.read_webhook(state) == WEBHOOK
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://plain.example/hook")
    with pytest.raises(ClusterError) as err:
        sealing.read_webhook(state)
    assert "not an https URL" in str(err.value) and "plain.example" not in str(err.value)


def test_the_sealed_file_is_added_to_the_kustomization_once(sandbox_gitops_repo):
    kustomization = (sandbox_gitops_repo / "platform" / "boutique-monitoring" / "kustomization.yaml").read_text()
    once = sealing.with_sealed_resource(kustomization)
    assert yaml.safe_load(once)["resources"].count("slack-webhook.sealed.yaml") == 1
    assert sealing.with_sealed_resource(once) == once


def test_no_active_key_is_one_clear_line(cluster, controller_key):
    cluster.apply(key_secret(controller_key, "compromised"))
    try:
        with pytest.raises(ClusterError) as err:
            sealing.controller_certificate(cluster)
        assert "no active key yet" in str(err.value) and "\n" not in str(err.value)
    finally:
        cluster.apply(key_secret(controller_key, "active"))
