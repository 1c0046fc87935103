"""A real Kubernetes control plane on loopback for the tests: etcd, kube-apiserver and
kube-controller-manager at the cluster's release, built from source (tests/tools.kube_build, cached).

No kubelet and no scheduler: objects are stored, validated, defaulted and admitted exactly as in a cluster,
controllers create ReplicaSets and Pods, but no container ever runs (pods stay Pending).

    with ControlPlane(workdir) as cp:
        cp.kubeconfig  # admin kubeconfig (client certificate in system:masters)

Processes are ours: started in their own session, stopped by PID (SIGTERM, then SIGKILL), also on failure.
"""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tasks.certificates import ensure_ca, ensure_server_cert
from tests.processes import free_port, stop_process
from tools.gobuild import kube_build

START_TIMEOUT_S = 120


def issue_client_cert(pki: Path, name: str, organization: str, days: float = 1,
                      not_before: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) of a client certificate signed by the test CA in `pki`."""
    ca = ensure_ca(pki)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                                 x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def kubeconfig_text(server: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes, context: str) -> str:
    import base64

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": "test", "user": "admin"}}],
    })


class ControlPlane:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.pki = workdir / "pki"
        self.procs: dict[str, subprocess.Popen] = {}
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.started_in_s = 0.0

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> "ControlPlane":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        binaries = kube_build(["etcd", "kube-apiserver", "kube-controller-manager"])
        started = time.monotonic()
        self._write_pki()
        etcd_port, peer_port = free_port(), free_port()
        self._spawn("etcd", [
            str(binaries["etcd"]), "--name", "test", "--data-dir", str(self.workdir / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer_port}", "--unsafe-no-fsync", "--log-level", "warn",
        ])
        pki = self.pki
        self._spawn("kube-apiserver", [
            str(binaries["kube-apiserver"]), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'localhost.crt'}", f"--tls-private-key-file={pki / 'localhost.key'}",
            f"--client-ca-file={pki / 'ca.crt'}", f"--cert-dir={self.workdir / 'apiserver-certs'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}", f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/12", "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            "--enable-priority-and-fairness=false", "--endpoint-reconciler-type=none", "--v=1",
        ])
        self._wait_ready()
        self._spawn("kube-controller-manager", [
            str(binaries["kube-controller-manager"]), f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--use-service-account-credentials=false", "--v=1",
        ])
        time.sleep(1)  # a bad flag makes it exit at once: say so here, not as a hanging test later
        if self.procs["kube-controller-manager"].poll() is not None:
            raise RuntimeError(f"kube-controller-manager exited:\n{self.log_tail('kube-controller-manager')}")
        self.started_in_s = time.monotonic() - started

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            stop_process(self.procs.pop(name))

    # -------------------------------------------------------------- helpers

    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _write_pki(self) -> None:
        ensure_server_cert(self.pki, "localhost", ["localhost"], ["127.0.0.1"])
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.pki / "sa.key").write_bytes(sa.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        (self.pki / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.admin_cert, self.admin_key = issue_client_cert(self.pki, "kubernetes-admin", "system:masters")
        self.kubeconfig.write_text(kubeconfig_text(self.server, (self.pki / "ca.crt").read_bytes(), self.admin_cert,
                                                   self.admin_key, "kubernetes-admin@test"))
        self.kubeconfig.chmod(0o600)

    def _wait_ready(self) -> None:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        cert, key = self.workdir / "admin.crt", self.workdir / "admin.key"
        cert.write_bytes(self.admin_cert)
        key.write_bytes(self.admin_key)
        context.load_cert_chain(str(cert), str(key))
        deadline = time.monotonic() + START_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}):\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.server}/readyz", context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise RuntimeError(f"kube-apiserver not ready after {START_TIMEOUT_S}s ({last}):\n"
                           f"{self.log_tail('kube-apiserver')}")
