"""The state folder on the operator's machine: every file the deploy generates or keeps there.

One inventory has one folder (`state_dir`): the lab CA and server certificates, generated passwords and
tokens, Argo CD's deploy key, the admin kubeconfig, verified downloads. It is git-ignored, 0700, and every
secret in it is 0600 and never printed. `LocalState` is the only code that knows these names: tasks ask it
for a path or a secret, and write private files through `write_private`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def write_private(path: Path, data: bytes) -> None:
    """Write `data` readable by the owner only (0600 file in a 0700 folder), never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def pki_files(folder: Path, name: str) -> tuple[Path, Path]:
    """(certificate, private key) of `name` in a PKI folder: `<name>.crt` and `<name>.key`."""
    return folder / f"{name}.crt", folder / f"{name}.key"


@dataclass(frozen=True)
class LocalState:
    root: Path

    # -------------------------------------------------------------- where each thing lives

    @property
    def pki(self) -> Path:
        """The lab CA and the server certificates it signed (tasks/certificates.py)."""
        return self.root / "pki"

    @property
    def ca_cert(self) -> Path:
        return pki_files(self.pki, "ca")[0]

    @property
    def kubeconfig(self) -> Path:
        """The cluster's admin kubeconfig, fetched from the control plane after kubeadm init."""
        return self.root / "kubeconfig"

    @property
    def downloads(self) -> Path:
        """Pinned artifacts fetched to this machine (tasks/downloads.py), verified on every use."""
        return self.root / "downloads"

    @property
    def bin(self) -> Path:
        """Tools unpacked from pinned artifacts (kubeseal)."""
        return self.root / "bin"

    @property
    def gitlab_root_password(self) -> Path:
        return self.root / "gitlab-root-password"

    @property
    def deploy_key(self) -> Path:
        """Argo CD's read-only deploy key for gitops-repo (private half; `.pub` beside it)."""
        return self.root / "argocd-deploy-key"

    @property
    def deploy_key_public(self) -> Path:
        return self.root / "argocd-deploy-key.pub"

    @property
    def gitlab_known_hosts(self) -> Path:
        """GitLab's SSH host keys as known_hosts lines (public), recorded from the platform host in phase 1."""
        return self.root / "gitlab-known-hosts"

    @property
    def argocd_admin_password(self) -> Path:
        return self.root / "argocd-initial-admin-password"

    @property
    def slack_webhook_url(self) -> Path:
        """Written by the user (or SLACK_WEBHOOK_URL is set): the only input among these files."""
        return self.root / "slack-webhook-url"

    @property
    def slack_webhook_sealed_stamp(self) -> Path:
        """Hash of the webhook URL and controller certificate last sealed: decides whether to seal again."""
        return self.root / "slack-webhook.sealed-sha256"

    @property
    def registry_pull_password(self) -> Path:
        """The password of the nodes' read-only account on the private registry."""
        return self.root / "registry-pull-password"

    # Tokens GitLab shows once (or that the deploy generates), kept to be reused on every rerun.
    TOKENS = {
        "gitlab_api": "gitlab-api-token",  # the deploy's own personal access token on root
        "gitops": "gitops-token",  # gitops-repo project access token, app-repo's GITOPS_TOKEN
        "runner": "runner-token",  # the runner's glrt- token from POST /user/runners
    }

    def token_path(self, token: str) -> Path:
        return self.root / self.TOKENS[token]

    # -------------------------------------------------------------- reading and writing

    def write_private(self, path: Path, data: bytes | str) -> None:
        write_private(path, data.encode() if isinstance(data, str) else data)

    def secret(self, path: Path, make: Callable[[], str] | None = None) -> str | None:
        """A one-line secret kept in `path`; created with `make` when missing and `make` is given."""
        if not path.exists():
            if make is None:
                return None
            self.write_private(path, make() + "\n")
        return path.read_text().strip()

    def token(self, token: str) -> str | None:
        return self.secret(self.token_path(token))

    def store_token(self, token: str, value: str) -> None:
        self.write_private(self.token_path(token), value + "\n")

    def deploy_key_pair(self) -> str:
        """Argo CD's read-only deploy key for gitops-repo (ed25519), created once; returns the public half.
        An existing private key is never replaced (GitLab and Argo CD hold it): a lost public half is derived."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        def public_of(key) -> str:
            public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            return public.decode() + " argocd@gitops-lab\n"

        if not self.deploy_key.exists():
            key = Ed25519PrivateKey.generate()
            private = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
            self.write_private(self.deploy_key, private)
            self.deploy_key_public.write_text(public_of(key))
        elif not self.deploy_key_public.exists():
            try:
                existing = serialization.load_ssh_private_key(self.deploy_key.read_bytes(), password=None)
            except ValueError as exc:
                raise RuntimeError(
                    f"{self.deploy_key} is not an OpenSSH private key ({exc}) and its .pub is missing: restore both, "
                    "or remove the key to make a new one (then register it on gitops-repo again)"
                ) from None
            self.deploy_key_public.write_text(public_of(existing))
        return self.deploy_key_public.read_text().strip()

    def generated(self, path: Path, nbytes: int = 24, prefix: str = "") -> str:
        """A random secret created once in `path` and reused afterwards."""
        value = self.secret(path, lambda: prefix + secrets.token_urlsafe(nbytes))
        assert value is not None
        return value
