"""Host state after the deploy: phase 0 (names, time, swap, kernel modules, sysctls) and phase 1 (CA trust,
the platform host's TLS files and GitLab configuration)."""

from __future__ import annotations

import os
import time

import pytest

from tasks.foundation import KERNEL_MODULES, KUBERNETES_SYSCTLS, MODULES_FILE, SYSCTL_FILE
from tasks.state import LocalState
from tests.conftest import sandbox_settings_now
from tests.testinfra.conftest import NODES, node_ids, nodes_with

ALL = pytest.mark.parametrize("node", NODES, ids=node_ids)
PLATFORM = nodes_with("platform")[0]
STATE = LocalState(sandbox_settings_now().state_path)


@ALL
def test_the_host_runs_the_debian_release_the_lab_was_asked_for(connect, node):
    """So a run meant for Debian 12 (LAB_RELEASE=bookworm) cannot pass on Debian 13 hosts, or the reverse."""
    from tools.lab.lab import DEFAULT_RELEASE

    assert connect(node).system_info.codename == os.environ.get("LAB_RELEASE", DEFAULT_RELEASE)


@ALL
def test_hostname_is_the_inventory_name(connect, node):
    host = connect(node)
    assert host.check_output("hostname") == node.hostname
    assert host.file("/etc/hostname").content_string.strip() == node.hostname


@ALL
def test_every_lab_name_resolves_to_its_address(connect, node):
    host = connect(node)
    for other in NODES:
        assert host.check_output(f"getent hosts {other.hostname}").split()[0] == str(other.address)
    for service in ("gitlab.local", "registry.local"):
        assert host.check_output(f"getent hosts {service}").split()[0] == str(PLATFORM.address)
    assert "127.0.1.1" not in host.file("/etc/hosts").content_string


@ALL
def test_chrony_is_active_and_enabled(connect, node):
    service = connect(node).service("chrony")
    assert service.is_running and service.is_enabled


def test_platform_serves_time_to_the_node_network(connect):
    host = connect(PLATFORM)
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert "allow 198.51.100.0/24" in conf and "local stratum 10" in conf
    assert host.socket("udp://0.0.0.0:123").is_listening


@pytest.mark.parametrize("node", [n for n in NODES if not n.has_role("platform")], ids=node_ids)
def test_nodes_sync_from_the_platform_host(connect, node):
    host = connect(node)
    deadline = time.monotonic() + 60  # iburst needs a few polls after chrony starts
    sources = ""
    while time.monotonic() < deadline:
        sources = host.check_output("chronyc -n sources")
        if f"^* {PLATFORM.address}" in sources:
            break
        time.sleep(2)
    assert f"^* {PLATFORM.address}" in sources, sources
    tracking = host.check_output("chronyc -n tracking")
    assert "Leap status     : Normal" in tracking, tracking


@ALL
def test_swap_is_off_now_and_after_reboot(connect, node):
    host = connect(node)
    assert host.check_output("tail -n +2 /proc/swaps") == ""
    active_swap_lines = [line for line in host.file("/etc/fstab").content_string.splitlines()
                         if not line.lstrip().startswith("#") and " swap " in f" {line} "]
    assert active_swap_lines == []


@ALL
def test_kernel_modules_are_persisted_and_available(connect, node):
    host = connect(node)
    assert host.file(MODULES_FILE).content_string.split() == list(KERNEL_MODULES)
    for module, check in KERNEL_MODULES.items():
        assert host.run(check).rc == 0, f"{module} is not available"
    assert host.package("kmod").is_installed


@ALL
def test_kubernetes_sysctls(connect, node):
    host = connect(node)
    persisted = host.file(SYSCTL_FILE).content_string
    for key, value in KUBERNETES_SYSCTLS.items():
        assert f"{key} = {value}" in persisted
        if key.startswith("net."):
            # net.* are per network namespace, so the lab host really has them
            assert host.sysctl(key) == value, key
        # fs.inotify.* belong to the machine that runs the lab containers, which the deploy must not change
        # (it warns instead); on a real host they are applied like the others (unit-tested).


# ------------------------------------------------------------------------------------------ phase 1


@ALL
def test_lab_ca_is_trusted_by_the_system(connect, node):
    host = connect(node)
    assert host.file("/usr/local/share/ca-certificates/gitops-lab-ca.crt").exists
    gitlab_cert = (STATE.pki / "gitlab.local.crt").read_text()
    # openssl with only the system bundle: the lab's server certificate verifies against it
    result = host.run(f"printf '%s' '{gitlab_cert}' > /tmp/gitlab.crt && openssl verify -CAfile "
                      "/etc/ssl/certs/ca-certificates.crt /tmp/gitlab.crt")
    assert result.rc == 0 and "OK" in result.stdout, result.stderr


def test_platform_has_tls_files_gitlab_rb_and_docker_trust(connect):
    host = connect(PLATFORM)
    ca = STATE.ca_cert.read_text()
    assert host.file("/etc/docker/certs.d/registry.local/ca.crt").content_string == ca
    assert host.file("/etc/gitlab-runner/certs/ca.crt").content_string == ca
    for name in ("gitlab.local", "registry.local"):
        assert host.file(f"/etc/gitlab/ssl/{name}.key").mode == 0o600
        assert host.file(f"/etc/gitlab/ssl/{name}.crt").exists
    rb = host.file("/etc/gitlab/gitlab.rb")
    assert rb.mode == 0o600 and "external_url 'https://gitlab.local'" in rb.content_string
    assert host.file("/etc/gitlab/lab-initial-root-password").mode == 0o600


@pytest.mark.parametrize("name", ["gitlab.local", "registry.local"])
def test_the_deployed_server_certificates_name_the_platform_address(connect, name):
    """What the platform phase really installed: the nodes and the runner also reach the registry by IP."""
    san = connect(PLATFORM).check_output(f"openssl x509 -noout -ext subjectAltName -in /etc/gitlab/ssl/{name}.crt")
    assert f"DNS:{name}" in san and f"IP Address:{PLATFORM.address}" in san, san


def test_only_the_platform_gets_gitlab_files(connect):
    for node in NODES:
        if not node.has_role("platform"):
            assert not connect(node).file("/etc/gitlab").exists


def test_platform_runs_docker_for_the_runner(connect):
    host = connect(PLATFORM)
    assert host.service("docker").is_running and host.service("docker").is_enabled
    assert "Server Version" in host.check_output("docker info")
