"""The lab's private CA and its server certificates: made in the local state folder, trusted on every host.

Stages: `ensure_lab_pki` (local, on the machine that runs pyinfra: the CA and the GitLab and registry
server certificates, generated once with `cryptography` and reused; a server certificate is reissued only
when its names change, another CA signed it, or it is close to expiry; keys 0600, never printed), then
`trust_lab_ca` on every host (the CA in the system trust store).
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pyinfra import host
from pyinfra.operations import files, server

from tasks.facts import ShellChecks
from tasks.packages import ensure_packages
from tasks.phases import stage
from tasks.settings import Settings
from tasks.state import LocalState, pki_files, write_private

CA_DAYS = 3650
SERVER_DAYS = 397  # what browsers accept for a server certificate
RENEW_BEFORE_DAYS = 30


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key_path: Path
    cert_path: Path
    renewed: bool


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _key_usage(ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and CRLs; a server certificate only signs (its ECDHE handshake)."""
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=ca,
        crl_sign=ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def ensure_ca(pki_dir: Path, common_name: str = "gitops-lab private CA") -> Issued:
    """The CA, created on first use and reused afterwards."""
    cert_path, key_path = pki_files(pki_dir, "ca")
    if cert_path.exists() and key_path.exists():
        return Issued(cert_path.read_bytes(), key_path, cert_path, renewed=False)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gitops-lab"),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            _key_usage(ca=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_path.read_bytes(), key_path, cert_path, renewed=True)


def _needs_renewal(cert_path: Path, ca_cert: x509.Certificate, names: list[str], addresses: list[str]) -> bool:
    if not cert_path.exists():
        return True
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if cert.issuer != ca_cert.subject:
        return True
    try:
        cert.verify_directly_issued_by(ca_cert)
    except Exception:  # signed by another CA with the same name
        return True
    if cert.not_valid_after_utc - _now() < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return True
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    have = (
        sorted(san.get_values_for_type(x509.DNSName)),
        sorted(str(a) for a in san.get_values_for_type(x509.IPAddress)),
    )
    return have != (sorted(names), sorted(addresses))


def ensure_server_cert(pki_dir: Path, name: str, dns_names: list[str], ip_addresses: list[str]) -> Issued:
    """A server certificate for `name` (files <name>.crt/.key) signed by the lab CA, (re)issued when needed."""
    ca = ensure_ca(pki_dir)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert_path, key_path = pki_files(pki_dir, name)
    if not _needs_renewal(cert_path, ca_cert, dns_names, ip_addresses) and key_path.exists():
        return Issued(cert_path.read_bytes(), key_path, cert_path, renewed=False)
    ca_key = cast(
        ec.EllipticCurvePrivateKey, serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans = [x509.DNSName(n) for n in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            _key_usage(ca=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(cast(ec.EllipticCurvePublicKey, ca_cert.public_key())),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_path.read_bytes(), key_path, cert_path, renewed=True)


def fingerprint(cert_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()


# ------------------------------------------------------------------------------------------ the lab's PKI

CA_TRUST_FILE = "/usr/local/share/ca-certificates/gitops-lab-ca.crt"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


@dataclass(frozen=True)
class LabPki:
    ca: Issued
    gitlab: Issued
    registry: Issued


def ensure_lab_pki(state: LocalState, settings: Settings) -> LabPki:
    """The CA and the platform host's two server certificates. Each names its domain and the platform host's
    address: the nodes, the runner and the deploy itself also reach GitLab and the registry by address."""
    ip = [str(settings.platform.address)]
    ca = ensure_ca(state.pki)
    gitlab = ensure_server_cert(state.pki, settings.gitlab_domain, [settings.gitlab_domain], ip)
    registry = ensure_server_cert(state.pki, settings.registry_domain, [settings.registry_domain], ip)
    return LabPki(ca, gitlab, registry)


def ingress_names(settings: Settings) -> list[str]:
    """The host names the ingress controller serves on its VIP (group_data/all.py)."""
    hosts = [settings.argocd_host, settings.storefront_host_dev, settings.storefront_host_prod, settings.grafana_host]
    return list(dict.fromkeys(hosts))


def ingress_tls_secret(state: LocalState, settings: Settings, namespace: str, name: str) -> dict:
    """A kubernetes.io/tls Secret with the ingress certificate (every ingress host name and the VIP), issued
    by the lab CA once and reused: the Ingresses of gitops-repo name it, and its key never enters Git."""
    issued = ensure_server_cert(state.pki, "ingress", ingress_names(settings), [str(settings.metallb_pool[0])])
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace},
        "data": {
            "tls.crt": base64.b64encode(issued.cert_pem).decode(),
            "tls.key": base64.b64encode(issued.key_path.read_bytes()).decode(),
        },
    }


def ca_in_bundle_check(ca_pem: bytes) -> str:
    """A shell test: is our CA in the system bundle? (Its base64 body's second line is distinctive.)"""
    marker = ca_pem.decode().splitlines()[2]
    return f"grep -qF '{marker}' {CA_BUNDLE}"


@stage("Phase 1: trust the lab CA")
def trust_lab_ca(ca_pem: bytes) -> None:
    ensure_packages(["ca-certificates"])
    files.put(name="Lab CA in the system trust store", src=StringIO(ca_pem.decode()), dest=CA_TRUST_FILE, mode="644")
    # Checked against the bundle, not "did the file change": a run cut off between the two converges.
    trusted = host.get_fact(ShellChecks, checks={"ca": ca_in_bundle_check(ca_pem)})
    if not trusted.get("ca"):
        server.shell(name="update-ca-certificates", commands=["update-ca-certificates"])
