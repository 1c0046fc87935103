"""Phase 1 on the platform host: GitLab CE with its Container Registry, served with the lab CA's certificates.

Stages: `install` (GitLab's package repository and `gitlab-ce` at the pinned version, held), `configure`
(TLS files, the initial root password, `gitlab.rb`), `activate` (`gitlab-ctl reconfigure` whenever the
configuration or a certificate differs from what was last applied; the deploy's API token on root), then
the API bootstrap of the projects (tasks/gitlab_api.py). With `gitlab_package_source` empty (the offline
lab) the package and everything that needs a running GitLab are skipped with a printed reason.
"""

from __future__ import annotations

import hashlib
from io import StringIO

from pyinfra import host, logger
from pyinfra.facts.server import Command
from pyinfra.operations import files, python, server

from tasks import artifacts, debian, gitlab_api
from tasks.certificates import LabPki
from tasks.facts import ShellChecks
from tasks.packages import ensure_vendor_packages
from tasks.phases import announce_once, stage
from tasks.settings import Settings
from tasks.state import LocalState
from tasks.templating import TEMPLATES, render

GITLAB_RB = "/etc/gitlab/gitlab.rb"
GITLAB_SSL = "/etc/gitlab/ssl"
ROOT_PASSWORD_FILE = "/etc/gitlab/lab-initial-root-password"
API_TOKEN_FILE = "/etc/gitlab/lab-api-token"
# Hashes of what was applied last, on the host: a run cut off before reconfigure still reconfigures.
RECONFIGURED_MARK = "/etc/gitlab/.lab-reconfigured-sha256"
API_TOKEN_MARK = "/etc/gitlab/.lab-api-token-sha256"


def gitlab_rb(settings: Settings) -> str:
    return render(
        "gitlab.rb.j2",
        gitlab_domain=settings.gitlab_domain,
        registry_domain=settings.registry_domain,
        puma_workers=settings.gitlab_puma_workers,
        sidekiq_concurrency=settings.gitlab_sidekiq_concurrency,
        prometheus=settings.gitlab_prometheus,
        backup_keep_days=settings.gitlab_backup_keep_days,
    )


def reconfigure_stamp(content: str, pki: LabPki) -> str:
    return hashlib.sha256(content.encode() + pki.gitlab.cert_pem + pki.registry.cert_pem).hexdigest()


def recorded(mark: str) -> str:
    return (host.get_fact(Command, command=f"cat {mark} 2>/dev/null || true") or "").strip()


@stage("Phase 1: GitLab CE configured")
def configure(settings: Settings, pki: LabPki, state: LocalState) -> str:
    """TLS files, the initial root password and gitlab.rb; returns gitlab.rb's content."""
    files.directory(name=GITLAB_SSL, path=GITLAB_SSL, mode="755")
    for issued, domain in ((pki.gitlab, settings.gitlab_domain), (pki.registry, settings.registry_domain)):
        files.put(
            name=f"TLS certificate {domain}", src=str(issued.cert_path), dest=f"{GITLAB_SSL}/{domain}.crt", mode="644"
        )
        files.put(name=f"TLS key {domain}", src=str(issued.key_path), dest=f"{GITLAB_SSL}/{domain}.key", mode="600")
    state.generated(state.gitlab_root_password)
    files.put(
        name="GitLab initial root password (root only)",
        src=str(state.gitlab_root_password),
        dest=ROOT_PASSWORD_FILE,
        mode="600",
    )
    content = gitlab_rb(settings)
    files.put(name="gitlab.rb", src=StringIO(content), dest=GITLAB_RB, mode="600")
    return content


@stage("Phase 1: GitLab CE installed")
def install(settings: Settings) -> None:
    keyring = artifacts.apt_keyring(settings, "gitlab-ce-apt-key")
    suite = debian.host_release().gitlab_suite
    ensure_vendor_packages(
        "GitLab CE",
        "gitlab_gitlab-ce",
        f"deb [signed-by={keyring}] {settings.gitlab_package_source}/gitlab/gitlab-ce/debian/ {suite} main",
        [f"gitlab-ce={settings.gitlab_version}-ce.0"],
    )
    held = host.get_fact(ShellChecks, checks={"gitlab-ce": "apt-mark showhold | grep -qx gitlab-ce"})
    if not held.get("gitlab-ce"):
        server.shell(name="Hold gitlab-ce at its pinned version", commands=["apt-mark hold gitlab-ce"])


@stage("Phase 1: GitLab CE running")
def activate(settings: Settings, pki: LabPki, state: LocalState, content: str) -> None:
    wanted = reconfigure_stamp(content, pki)
    if recorded(RECONFIGURED_MARK) != wanted:
        server.shell(
            name="gitlab-ctl reconfigure (configuration changed)",
            commands=[
                "gitlab-ctl reconfigure >/var/log/gitlab-lab-reconfigure.log 2>&1 || "
                "{ tail -30 /var/log/gitlab-lab-reconfigure.log; exit 1; }",
                f"echo {wanted} > {RECONFIGURED_MARK}",
            ],
        )
    # The deploy's API token on root, set through gitlab-rails (the value travels in a root-only file).
    token = gitlab_api.deploy_api_token(state)
    files.put(
        name="GitLab API token for the deploy (root only)", src=StringIO(token + "\n"), dest=API_TOKEN_FILE, mode="600"
    )
    files.put(
        name="gitlab-rails script for the API token",
        src=str(TEMPLATES / "gitlab-api-token.rb"),
        dest="/etc/gitlab/lab-api-token.rb",
        mode="600",
    )
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    if recorded(API_TOKEN_MARK) != token_hash:
        server.shell(
            name="Set the deploy's API token on root (gitlab-rails runner)",
            commands=["gitlab-rails runner /etc/gitlab/lab-api-token.rb", f"echo {token_hash} > {API_TOKEN_MARK}"],
        )


def run_bootstrap(settings: Settings, state: LocalState) -> None:
    """python.call at run time, once GitLab answers: group, projects, tokens, variables, deploy key, runner."""
    gl = gitlab_api.gitlab_client(settings, state)
    created = gitlab_api.bootstrap_gitlab(gl, settings, state, gl.token, str(state.ca_cert))
    logger.info(f"    GitLab bootstrap: {', '.join(created) if created else 'nothing to change'}")


def known_hosts_lines(domain: str, public_keys: str) -> str:
    """known_hosts lines for `domain` from the host's `ssh_host_*_key.pub` files (type, key; no comment),
    sorted so the text is the same on every run."""
    lines = set()
    for line in public_keys.splitlines():
        fields = line.split()
        if len(fields) >= 2 and (fields[0].startswith("ssh-") or fields[0].startswith("ecdsa-")):
            lines.add(f"{domain} {fields[0]} {fields[1]}")
    return "".join(f"{line}\n" for line in sorted(lines))


def record_ssh_host_keys(settings: Settings, state: LocalState) -> None:
    """GitLab's SSH endpoint is the platform host's own sshd (Omnibus's default): its host keys, as known_hosts
    lines for `gitlab_domain`, go to the state folder, where the post-bootstrap step gives them to Argo CD.
    Every key type the host offers, so whichever one the client negotiates is known."""
    keys = host.get_fact(Command, command="cat /etc/ssh/ssh_host_*_key.pub 2>/dev/null || true") or ""
    lines = known_hosts_lines(settings.gitlab_domain, keys)
    target = state.gitlab_known_hosts
    if lines and (not target.exists() or target.read_text() != lines):
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        target.write_text(lines)


@stage("Phase 1: GitLab CE")
def deploy_gitlab(settings: Settings, pki: LabPki, state: LocalState) -> None:
    record_ssh_host_keys(settings, state)
    content = configure(settings, pki, state)
    if not settings.gitlab_package_source:
        announce_once(
            "gitlab-skip",
            "    GitLab CE: not installed: gitlab_package_source is empty (no package source "
            "offline and no mirror configured). Its TLS files and gitlab.rb are in place.",
        )
        return
    install(settings)
    activate(settings, pki, state, content)
    python.call(
        name="GitLab bootstrap: group, projects, tokens, variables, deploy key, runner, seeded repos",
        function=run_bootstrap,
        settings=settings,
        state=state,
    )
