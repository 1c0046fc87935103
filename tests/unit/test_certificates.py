"""The lab CA and server certificates, for real: openssl verifies the chain, SANs and usage are right, keys
are private, a rerun reuses them, and they are reissued when close to expiry or when the names change."""

from __future__ import annotations

import datetime as dt
import stat
import subprocess

import pytest

from tasks import certificates
from tasks.certificates import ensure_ca, ensure_server_cert


def openssl(*args: str) -> str:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def pki(tmp_path):
    return tmp_path / "state" / "pki"


def test_server_certificate_chains_to_the_ca_with_names_and_address(pki):
    cert = ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    assert "OK" in openssl("verify", "-CAfile", str(pki / "ca.crt"), str(cert.cert_path))
    text = openssl("x509", "-in", str(cert.cert_path), "-noout", "-text")
    assert "DNS:gitlab.local" in text and "IP Address:198.51.100.10" in text
    assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
    ca_text = openssl("x509", "-in", str(pki / "ca.crt"), "-noout", "-text")
    assert "CA:TRUE, pathlen:0" in ca_text and "Certificate Sign" in ca_text


def test_keys_are_private(pki):
    cert = ensure_server_cert(pki, "registry.local", ["registry.local"], ["198.51.100.10"])
    for key in (pki / "ca.key", cert.key_path):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pki.stat().st_mode) == 0o700


def test_a_rerun_reuses_ca_and_certificate(pki):
    first = ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    ca_before = (pki / "ca.key").read_bytes()
    again = ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    assert not again.renewed and again.cert_pem == first.cert_pem and (pki / "ca.key").read_bytes() == ca_before
    assert not ensure_ca(pki).renewed


def test_renewed_when_close_to_expiry(pki, monkeypatch):
    first = ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=certificates.SERVER_DAYS - certificates.RENEW_BEFORE_DAYS + 1)
    monkeypatch.setattr(certificates, "_now", lambda: later)
    renewed = ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    assert renewed.renewed and renewed.cert_pem != first.cert_pem


def test_reissued_when_the_names_change(pki):
    ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    moved = ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.20"])
    assert moved.renewed and "IP Address:198.51.100.20" in openssl("x509", "-in", str(moved.cert_path), "-noout", "-text")


def test_reissued_when_the_ca_was_replaced(pki):
    ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    (pki / "ca.crt").unlink()
    (pki / "ca.key").unlink()
    cert = ensure_server_cert(pki, "gitlab.local", ["gitlab.local"], ["198.51.100.10"])
    assert cert.renewed and "OK" in openssl("verify", "-CAfile", str(pki / "ca.crt"), str(cert.cert_path))


def test_the_ingress_secret_holds_a_certificate_for_every_ingress_host_and_is_issued_once(sandbox_settings, tmp_path):
    import base64

    from tasks.state import LocalState

    state = LocalState(tmp_path / "state")
    secret = certificates.ingress_tls_secret(state, sandbox_settings, "argocd", "ingress-tls")
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "ingress-tls", "namespace": "argocd"}
    crt = tmp_path / "tls.crt"
    crt.write_bytes(base64.b64decode(secret["data"]["tls.crt"]))
    assert "OK" in openssl("verify", "-CAfile", str(state.pki / "ca.crt"), str(crt))
    text = openssl("x509", "-in", str(crt), "-noout", "-text")
    for host in (sandbox_settings.argocd_host, sandbox_settings.storefront_host_prod, sandbox_settings.grafana_host):
        assert f"DNS:{host}" in text
    assert f"IP Address:{sandbox_settings.metallb_pool[0]}" in text
    # a rerun applies the very same Secret (no new key, no change in the cluster)
    assert certificates.ingress_tls_secret(state, sandbox_settings, "argocd", "ingress-tls") == secret
