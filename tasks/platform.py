"""Phase 1: the lab CA trusted everywhere; on the platform host GitLab CE with its registry, and GitLab Runner.

Stages: `prepare_secrets` (local: CA, server certificates, root password, in the state folder), then per
host `trust_lab_ca` (install), and on the platform host `configure_gitlab` (TLS files, gitlab.rb, package,
reconfigure when the configuration changed) and `configure_runner`. With `gitlab_package_source` empty
(the offline sandbox) the packages are skipped with a printed reason; everything else still runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import tempfile
import time
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Callable

import jinja2
from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.hardware import Cpus
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, python, server, systemd

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
API_TOKEN_MARK = "/etc/gitlab/.lab-api-token-sha256"


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


def ensure_deploy_key(state_path: Path) -> str:
    """Argo CD's read-only deploy key for gitops-repo (ed25519), created once; returns the public half."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tasks.certificates import _write_private

    private, public = state_path / "argocd-deploy-key", state_path / "argocd-deploy-key.pub"
    if not private.exists() or not public.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                  serialization.NoEncryption()))
        public.write_text(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                        serialization.PublicFormat.OpenSSH).decode() + " argocd@gitops-lab\n")
    return public.read_text().strip()


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
    # The deploy's API token on root, set through gitlab-rails (the value travels in a root-only file).
    token = deploy_api_token(settings.state_path)
    files.put(name="GitLab API token for the deploy (root only)", src=StringIO(token + "\n"),
              dest="/etc/gitlab/lab-api-token", mode="600")
    files.put(name="gitlab-rails script for the API token", src=str(TEMPLATES / "gitlab-api-token.rb"),
              dest="/etc/gitlab/lab-api-token.rb", mode="600")
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    if (host.get_fact(Command, command=f"cat {API_TOKEN_MARK} 2>/dev/null || true") or "").strip() != token_hash:
        server.shell(name="Set the deploy's API token on root (gitlab-rails runner)",
                     commands=["gitlab-rails runner /etc/gitlab/lab-api-token.rb", f"echo {token_hash} > {API_TOKEN_MARK}"])
    python.call(name="GitLab bootstrap: group, projects, tokens, variables, deploy key, runner, seeded repos",
                function=run_bootstrap, settings=settings, lab_secrets=lab_secrets)


@deploy("Phase 1: Docker engine")
def install_docker() -> None:
    """Docker for the runner's docker executor, from Debian's own package (maintained, reachable through any
    Debian mirror, so it installs offline in the lab too)."""
    ensure_packages(["docker.io"])
    systemd.service(name="docker running and enabled", service="docker", running=True, enabled=True)


@deploy("Phase 1: GitLab Runner")
def configure_runner(settings: Settings, node: Node, runner_token: str | None) -> None:
    if not settings.gitlab_package_source:
        announce_once("runner-skip", "    GitLab Runner: not installed: gitlab_package_source is empty (no package "
                      "source offline). Docker and the runner's CA file are in place.")
        return
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


# ------------------------------------------------------------------------------------------ GitLab bootstrap

OB_UPSTREAM = "https://github.com/GoogleCloudPlatform/microservices-demo.git"
APP_REPO_FILES = Path(__file__).resolve().parent.parent / "files" / "app-repo"
APP_BRANCH = "lab"


def state_secret(state_path: Path, name: str, make: Callable[[], str] | None = None) -> str | None:
    """A secret kept in the state folder (0600); created with `make` when missing and `make` is given."""
    from tasks.certificates import _write_private

    path = state_path / name
    if not path.exists():
        if make is None:
            return None
        _write_private(path, (make() + "\n").encode())
    return path.read_text().strip()


def deploy_api_token(state_path: Path) -> str:
    """The personal access token the deploy uses for GitLab's API; set on root by `gitlab-rails runner`."""
    return state_secret(state_path, "gitlab-api-token", lambda: "glpat-" + secrets.token_urlsafe(24))


def wait_for_import(gl, project_id: int, timeout: float = 900, sleep: Callable[[float], None] = time.sleep) -> None:
    from tasks.gitlab_api import GitLabError

    deadline = time.monotonic() + timeout
    while True:
        status = gl.get(f"/projects/{project_id}").get("import_status") or "none"
        if status in ("finished", "none"):
            return
        if status == "failed" or time.monotonic() >= deadline:
            raise GitLabError("GET", f"/projects/{project_id}", None,
                              f"importing Online Boutique from {OB_UPSTREAM} ended as {status!r}: the platform host needs "
                              "internet access for the import (or import it by hand and rerun)")
        sleep(5)


def bootstrap_gitlab(gl, settings: Settings, state_path: Path, seed_token: str, ca_file: str | None,
                     import_url: str | None = OB_UPSTREAM) -> list[str]:
    """Everything in GitLab the platform needs, find-or-create: group, app-repo (Online Boutique at the pinned
    tag plus this repo's pipeline), gitops-repo (seeded), the gitops token as app-repo's CI variable, Argo CD's
    deploy key and the runner. Returns what it created or changed."""
    from tasks.gitlab_api import (bootstrap_projects, ensure_branch_from_tag, ensure_files_committed,
                                  ensure_project_token, ensure_runner, wait_until_ready)
    from tasks.gitops_repo import render_gitops_repo
    from tasks.seeding import seed_repository

    wait_until_ready(gl)
    created: list[str] = []

    def gitops_token(project_id: int) -> str:
        return ensure_project_token(gl, project_id, "gitops-bump", (dt.date.today() + dt.timedelta(days=360)).isoformat(),
                                    lambda: state_secret(state_path, "gitops-token"),
                                    lambda t: state_secret(state_path, "gitops-token", lambda: t), created)

    result = bootstrap_projects(gl, settings.gitlab_group, gitops_token, ensure_deploy_key(state_path), import_url)
    created += result.created
    if import_url:
        wait_for_import(gl, result.app_project_id)
        ensure_branch_from_tag(gl, result.app_project_id, APP_BRANCH, settings.online_boutique_version, created)
    pipeline = {p.relative_to(APP_REPO_FILES).as_posix(): p.read_text() for p in sorted(APP_REPO_FILES.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts}
    ensure_files_committed(gl, result.app_project_id, APP_BRANCH, pipeline, "Add the lab's CI pipeline [skip ci]", created)
    head = gl.get(f"/projects/{result.app_project_id}/repository/branches/{APP_BRANCH}")["commit"]["id"]
    gitops = gl.get(f"/projects/{result.gitops_project_id}")
    with tempfile.TemporaryDirectory() as tmp:
        content = render_gitops_repo(settings, Path(tmp) / "gitops-repo", image_tag=head)
        if seed_repository(gitops["http_url_to_repo"], seed_token, content, "Seed the gitops repository", ca_file=ca_file):
            created.append("gitops-repo seeded")
    ensure_runner(gl, f"{settings.platform.hostname} docker", ["docker", "lab"],
                  lambda: state_secret(state_path, "runner-token"),
                  lambda t: state_secret(state_path, "runner-token", lambda: t), created)
    return created


def gitlab_client(settings: Settings):
    """GitLab's API on the platform host with the deploy's own token, trusting the lab CA."""
    from tasks.gitlab_api import GitLab

    return GitLab(f"https://{settings.platform.address}", deploy_api_token(settings.state_path),
                  ca_file=str(settings.state_path / "pki" / "ca.crt"))


def run_bootstrap(settings: Settings, lab_secrets: PlatformSecrets) -> None:
    """Runtime step (python.call) once GitLab is installed: bootstrap GitLab through its API, then write the
    runner's config.toml if the runner was registered just now (later runs manage it as a planned file)."""
    from pyinfra import logger

    gl = gitlab_client(settings)
    created = bootstrap_gitlab(gl, settings, settings.state_path, gl.token, str(lab_secrets.ca.cert_path))
    logger.info(f"    GitLab bootstrap: {', '.join(created) if created else 'nothing to change'}")
    if any(c.startswith("runner ") for c in created):
        config = runner_config(settings, settings.platform, host.get_fact(Cpus) or 1,
                               state_secret(settings.state_path, "runner-token") or "")
        host.put_file(StringIO(config), RUNNER_CONFIG)
        host.run_shell_command(f"chmod 600 {RUNNER_CONFIG} && systemctl restart gitlab-runner")
