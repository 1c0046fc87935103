"""Phase 1: the lab CA trusted everywhere; on the platform host GitLab CE with its registry, and GitLab Runner.

Stages: `prepare_secrets` (local: CA, server certificates, root password, in the state folder), then per
host `trust_lab_ca` (install), and on the platform host `configure_gitlab` (TLS files, gitlab.rb, package,
reconfigure when the configuration changed) and `configure_runner`. With `gitlab_package_source` empty
(the offline sandbox) the packages are skipped with a printed reason; everything else still runs.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import jinja2
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.hardware import Cpus
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server

from tasks.certificates import Issued, ensure_ca, ensure_server_cert
from tasks.facts import ShellChecks
from tasks.packages import ensure_packages
from tasks.phases import announce_once
from tasks.settings import Node, Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
CA_TRUST_FILE = "/usr/local/share/ca-certificates/gitops-lab-ca.crt"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
GITLAB_RB = "/etc/gitlab/gitlab.rb"
GITLAB_SSL = "/etc/gitlab/ssl"
RECONFIGURED_MARK = "/etc/gitlab/.lab-reconfigured-sha256"
RUNNER_CONFIG = "/etc/gitlab-runner/config.toml"
RUNNER_CA = "/etc/gitlab-runner/certs/ca.crt"


@dataclass(frozen=True)
class PlatformSecrets:
    ca: Issued
    gitlab_cert: Issued
    registry_cert: Issued
    root_password_file: Path


def prepare_secrets(settings: Settings) -> PlatformSecrets:
    """Create (once) or reuse the CA, the server certificates and the GitLab root password, locally."""
    pki = settings.state_path / "pki"
    ip = [str(settings.platform.address)]
    ca = ensure_ca(pki)
    gitlab = ensure_server_cert(pki, settings.gitlab_domain, [settings.gitlab_domain], ip)
    registry = ensure_server_cert(pki, settings.registry_domain, [settings.registry_domain], ip)
    password_file = settings.state_path / "gitlab-root-password"
    if not password_file.exists():
        password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        password_file.write_text(secrets.token_urlsafe(24) + "\n")
        password_file.chmod(0o600)
    return PlatformSecrets(ca, gitlab, registry, password_file)


def ca_in_bundle_check(ca_pem: bytes) -> str:
    """A shell test: is our CA in the system bundle? (Its base64 body's second line is distinctive.)"""
    marker = ca_pem.decode().splitlines()[2]
    return f"grep -qF '{marker}' {CA_BUNDLE}"


@deploy("Phase 1: trust the lab CA")
def trust_lab_ca(lab_secrets: PlatformSecrets) -> None:
    ensure_packages(["ca-certificates"])
    files.put(name="Lab CA in the system trust store", src=StringIO(lab_secrets.ca.cert_pem.decode()),
              dest=CA_TRUST_FILE, mode="644")
    # Checked against the bundle, not "did the file change": a run cut off between the two converges.
    trusted = host.get_fact(ShellChecks, checks={"ca": ca_in_bundle_check(lab_secrets.ca.cert_pem)})
    if not trusted.get("ca"):
        server.shell(name="update-ca-certificates", commands=["update-ca-certificates"])


def render(template: str, **context: object) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template(template).render(**context)


def gitlab_rb(settings: Settings) -> str:
    return render("gitlab.rb.j2", gitlab_domain=settings.gitlab_domain, registry_domain=settings.registry_domain,
                  puma_workers=settings.gitlab_puma_workers, sidekiq_concurrency=settings.gitlab_sidekiq_concurrency,
                  prometheus=settings.gitlab_prometheus, backup_keep_days=settings.gitlab_backup_keep_days)


def runner_config(settings: Settings, node: Node, cpus: int, runner_token: str) -> str:
    return render("gitlab-runner-config.toml.j2", concurrent=runner_concurrency(cpus), runner_name=f"{node.hostname} docker",
                  gitlab_domain=settings.gitlab_domain, registry_domain=settings.registry_domain,
                  runner_token=runner_token, platform_address=str(node.address))


def runner_concurrency(cpus: int) -> int:
    """GitLab shares the host: half the CPUs build, at least one."""
    return max(1, cpus // 2)


@deploy("Phase 1: registry trust for Docker and the runner")
def trust_registry_for_docker(settings: Settings, lab_secrets: PlatformSecrets) -> None:
    ca = lab_secrets.ca.cert_pem.decode()
    files.put(name=f"Docker trusts {settings.registry_domain}", src=StringIO(ca),
              dest=f"/etc/docker/certs.d/{settings.registry_domain}/ca.crt", mode="644", create_remote_dir=True)
    files.put(name="GitLab Runner trusts the lab CA", src=StringIO(ca), dest=RUNNER_CA, mode="644",
              create_remote_dir=True)


@deploy("Phase 1: GitLab CE")
def configure_gitlab(settings: Settings, lab_secrets: PlatformSecrets) -> None:
    files.directory(name=GITLAB_SSL, path=GITLAB_SSL, mode="755")
    for issued, domain in ((lab_secrets.gitlab_cert, settings.gitlab_domain),
                           (lab_secrets.registry_cert, settings.registry_domain)):
        files.put(name=f"TLS certificate {domain}", src=str(issued.cert_path), dest=f"{GITLAB_SSL}/{domain}.crt", mode="644")
        files.put(name=f"TLS key {domain}", src=str(issued.key_path), dest=f"{GITLAB_SSL}/{domain}.key", mode="600")
    files.put(name="GitLab initial root password (root only)", src=str(lab_secrets.root_password_file),
              dest="/etc/gitlab/lab-initial-root-password", mode="600")
    content = gitlab_rb(settings)
    files.put(name="gitlab.rb", src=StringIO(content), dest=GITLAB_RB, mode="600")
    if not settings.gitlab_package_source:
        announce_once("gitlab-skip", "    GitLab CE: not installed: gitlab_package_source is empty (no package source "
                      "offline and no mirror configured). Its TLS files and gitlab.rb are in place.")
        return
    apt.key(name="GitLab package signing key", src=f"{settings.gitlab_package_source}/gpg.key")
    apt.repo(name="GitLab CE repository", filename="gitlab_gitlab-ce",
             src=f"deb {settings.gitlab_package_source}/gitlab/gitlab-ce/debian/ bookworm main")
    apt.packages(name=f"gitlab-ce {settings.gitlab_version}", packages=[f"gitlab-ce={settings.gitlab_version}-ce.0"],
                 update=True, cache_time=3600)
    server.shell(name="Hold gitlab-ce at its pinned version", commands=["apt-mark hold gitlab-ce"])
    # Reconfigure exactly when the configuration (or a certificate) differs from the last one applied,
    # recorded on the host, so a run cut off before reconfigure still reconfigures on the rerun.
    wanted = hashlib.sha256(content.encode() + lab_secrets.gitlab_cert.cert_pem + lab_secrets.registry_cert.cert_pem).hexdigest()
    applied = host.get_fact(Command, command=f"cat {RECONFIGURED_MARK} 2>/dev/null || true")
    if (applied or "").strip() != wanted:
        server.shell(name="gitlab-ctl reconfigure (configuration changed)",
                     commands=["gitlab-ctl reconfigure >/var/log/gitlab-lab-reconfigure.log 2>&1 || "
                               "{ tail -30 /var/log/gitlab-lab-reconfigure.log; exit 1; }",
                               f"echo {wanted} > {RECONFIGURED_MARK}"])


@deploy("Phase 1: GitLab Runner")
def configure_runner(settings: Settings, node: Node, runner_token: str | None) -> None:
    if not settings.gitlab_package_source:
        announce_once("runner-skip", "    GitLab Runner and Docker: not installed: gitlab_package_source is empty (no "
                      "package source offline). The runner's CA file is in place.")
        return
    ensure_packages(["docker.io"])
    apt.repo(name="GitLab Runner repository", filename="runner_gitlab-runner",
             src=f"deb {settings.gitlab_package_source}/runner/gitlab-runner/debian/ bookworm main")
    apt.packages(name=f"gitlab-runner {settings.gitlab_runner_version}",
                 packages=[f"gitlab-runner={settings.gitlab_runner_version}-1"], update=True, cache_time=3600)
    if runner_token is None:
        announce_once("runner-token", "    GitLab Runner: installed, not yet registered: GitLab's API is not "
                      "answering yet; rerun the deploy once GitLab is up.")
        return
    files.put(name="Runner config.toml", src=StringIO(runner_config(settings, node, host.get_fact(Cpus) or 1, runner_token)),
              dest=RUNNER_CONFIG, mode="600")
