"""Phase 1 on the platform host: GitLab Runner with the docker executor, and the Docker engine it drives.

Stages: `install` (Docker from Debian's `docker.io`, always: it installs offline through any Debian mirror;
`gitlab-runner` from GitLab's repository at the pinned version when `gitlab_package_source` is set),
`configure` (Docker's and the runner's copy of the lab CA; `config.toml` with the runner's `glrt-` token
from the state folder), `activate` (Docker running; the runner restarted when its config changed).
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.facts.hardware import Cpus
from pyinfra.operations import files, python, systemd

from tasks import artifacts, debian, follow_up
from tasks.facts import snapshot
from tasks.packages import ensure_packages, ensure_vendor_packages
from tasks.phases import announce_once, stage
from tasks.remote import put_private_file
from tasks.settings import Node, Settings
from tasks.state import LocalState
from tasks.templating import render

RUNNER_CONFIG = "/etc/gitlab-runner/config.toml"
RUNNER_CA = "/etc/gitlab-runner/certs/ca.crt"


def runner_concurrency(cpus: int) -> int:
    """GitLab shares the host: half the CPUs build, at least one."""
    return max(1, cpus // 2)


def runner_config(settings: Settings, node: Node, cpus: int, runner_token: str) -> str:
    return render(
        "gitlab-runner-config.toml.j2",
        concurrent=runner_concurrency(cpus),
        runner_name=f"{node.hostname} docker",
        gitlab_domain=settings.gitlab_domain,
        registry_domain=settings.registry_domain,
        runner_token=runner_token,
        platform_address=str(node.address),
    )


@stage("Phase 1: Docker engine")
def install_docker() -> None:
    ensure_packages(list(debian.host_release().docker_packages))
    systemd.service(name="docker running and enabled", service="docker", running=True, enabled=True)


@stage("Phase 1: registry trust for Docker and the runner")
def trust_lab_ca(settings: Settings, ca_pem: bytes) -> None:
    files.put(
        name=f"Docker trusts {settings.registry_domain}",
        src=StringIO(ca_pem.decode()),
        dest=f"/etc/docker/certs.d/{settings.registry_domain}/ca.crt",
        mode="644",
        create_remote_dir=True,
    )
    files.put(
        name="GitLab Runner trusts the lab CA",
        src=StringIO(ca_pem.decode()),
        dest=RUNNER_CA,
        mode="644",
        create_remote_dir=True,
    )


def write_config_once_registered(settings: Settings, node: Node, state: LocalState) -> None:
    """Run time (python.call): the runner was registered by this run's GitLab bootstrap, after planning."""
    token = state.token("runner")
    if token is None:
        announce_once(
            "runner-not-registered",
            "    GitLab Runner: installed, not yet registered: GitLab's API is not "
            "answering yet; rerun the deploy once GitLab is up.",
        )
        return
    put_private_file(runner_config(settings, node, host.get_fact(Cpus) or 1, token), RUNNER_CONFIG)
    host.run_shell_command("systemctl restart gitlab-runner")


@stage("Phase 1: GitLab Runner")
def deploy_runner(settings: Settings, node: Node, state: LocalState, ca_pem: bytes) -> None:
    install_docker()
    trust_lab_ca(settings, ca_pem)
    if not settings.gitlab_package_source:
        announce_once(
            "runner-skip",
            "    GitLab Runner: not installed: gitlab_package_source is empty (no package "
            "source offline). Docker and the runner's CA file are in place.",
        )
        return
    keyring = artifacts.apt_keyring(settings, "gitlab-runner-apt-key")
    suite = debian.host_release().gitlab_suite
    ensure_vendor_packages(
        "GitLab Runner",
        "runner_gitlab-runner",
        f"deb [signed-by={keyring}] {settings.gitlab_package_source}/runner/gitlab-runner/debian/ {suite} main",
        [f"gitlab-runner={settings.gitlab_runner_version}-1"],
    )
    token = state.token("runner")
    if token is None:
        python.call(
            name="Runner config.toml (once the bootstrap registered the runner)",
            function=write_config_once_registered,
            settings=settings,
            node=node,
            state=state,
        )
        return
    config = files.put(
        name="Runner config.toml",
        src=StringIO(runner_config(settings, node, snapshot(Cpus) or 1, token)),
        dest=RUNNER_CONFIG,
        mode="600",
    )
    follow_up.restart("gitlab-runner", [config], "its config changed")
    systemd.service(name="gitlab-runner running", service="gitlab-runner", running=True, enabled=True)
