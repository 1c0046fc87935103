"""Phase 1 planned against faked facts: the lab CA's trust, a fresh and a converged platform host, rendered
gitlab.rb and runner config, the state folder's secrets."""

from __future__ import annotations

import hashlib
import stat
from dataclasses import replace

import pytest

from tasks import certificates, gitlab, gitlab_api, gitlab_runner
from tasks.state import LocalState
from tests.unit.plan import plan
from tests.unit.test_debian import distribution


@pytest.fixture
def state(tmp_path):
    return LocalState(tmp_path / "state")


@pytest.fixture
def pki(state, sandbox_settings):
    return certificates.ensure_lab_pki(state, sandbox_settings)


@pytest.fixture
def online(sandbox_settings, state):
    return replace(sandbox_settings, gitlab_package_source="https://packages.gitlab.com", state_dir=str(state.root))


def test_gitlab_rb_has_urls_tls_memory_settings_and_backups(sandbox_settings):
    rb = gitlab.gitlab_rb(sandbox_settings)
    assert "external_url 'https://gitlab.local'" in rb and "registry_external_url 'https://registry.local'" in rb
    assert "nginx['ssl_certificate'] = '/etc/gitlab/ssl/gitlab.local.crt'" in rb
    assert "registry_nginx['ssl_certificate_key'] = '/etc/gitlab/ssl/registry.local.key'" in rb
    assert "puma['worker_processes'] = 0" in rb and "sidekiq['concurrency'] = 10" in rb
    assert "prometheus_monitoring['enable'] = false" in rb
    assert "gitlab_rails['backup_keep_time'] = 604800" in rb
    assert "prometheus_monitoring['enable'] = true" in gitlab.gitlab_rb(replace(sandbox_settings, gitlab_prometheus=True))


def test_runner_config_is_sized_from_cpus_and_trusts_the_ca(sandbox_settings):
    toml = gitlab_runner.runner_config(sandbox_settings, sandbox_settings.platform, 8, "glrt-abc")
    assert "concurrent = 4" in toml and 'executor = "docker"' in toml and 'token = "glrt-abc"' in toml
    assert 'tls-ca-file = "/etc/gitlab-runner/certs/ca.crt"' in toml and "privileged = false" in toml
    assert '"registry.local:198.51.100.10"' in toml
    assert gitlab_runner.runner_concurrency(1) == 1 and gitlab_runner.runner_concurrency(2) == 1


FRESH = {"Command": "", "File": None, "Directory": None, "AptSources": [], "AptKeys": {}, "DebPackages": {},
         "GpgKey": {}, "LinuxDistribution": distribution("trixie", "13"), "SystemdStatus": {}, "SystemdEnabled": {}, "Cpus": 2,
         "ShellChecks": lambda checks: {name: False for name in checks}}


@pytest.mark.parametrize("codename, version", [("bookworm", "12"), ("trixie", "13")])
def test_gitlab_and_runner_repositories_follow_the_hosts_release_and_trust_only_their_pinned_key(
        online, pki, state, codename, version):
    facts = {**FRESH, "LinuxDistribution": distribution(codename, version)}
    gitlab_plan = plan(gitlab.deploy_gitlab, online, pki, state, host_name="mini-pc", facts=facts)
    runner_plan = plan(gitlab_runner.deploy_runner, online, online.platform, state, pki.ca.cert_pem,
                       host_name="mini-pc", facts=facts)
    for p, key, path in ((gitlab_plan, "gitlab-ce-apt-key", "gitlab/gitlab-ce"),
                         (runner_plan, "gitlab-runner-apt-key", "runner/gitlab-runner")):
        keyring = f"/etc/apt/keyrings/{key}.asc"
        line = f"deb [signed-by={keyring}] https://packages.gitlab.com/{path}/debian/ {codename} main"
        assert any(line in c for c in p.commands()), p.commands()
        download = p.find(f"Download {key}")
        assert any(keyring in c for c in download.commands)
        assert not any(c.startswith("apt-key ") or "gpg --dearmor" in c for c in p.commands())


def test_fresh_platform_installs_gitlab_pinned_and_reconfigures(online, pki, state):
    p = plan(gitlab.deploy_gitlab, online, pki, state, host_name="mini-pc", facts=FRESH)
    names = p.names()
    assert "gitlab.rb" in names and any("gitlab-ce=19.6.0-ce.0" in n for n in names)
    assert any("gitlab-ce=19.6.0-ce.0" in c for c in p.commands())
    assert "apt-mark hold gitlab-ce" in p.commands()
    assert any(c.startswith("gitlab-ctl reconfigure") for c in p.commands())
    assert "gitlab-rails runner /etc/gitlab/lab-api-token.rb" in p.commands()
    assert any(n.startswith("GitLab bootstrap") for n in names)


def test_converged_platform_does_not_reconfigure(online, pki, state):
    wanted = gitlab.reconfigure_stamp(gitlab.gitlab_rb(online), pki)
    token_hash = hashlib.sha256(gitlab_api.deploy_api_token(state).encode()).hexdigest()
    recorded = {gitlab.RECONFIGURED_MARK: wanted, gitlab.API_TOKEN_MARK: token_hash}
    p = plan(gitlab.deploy_gitlab, online, pki, state, host_name="mini-pc",
             facts={**FRESH, "Command": lambda command: next((v for k, v in recorded.items() if k in command), ""),
                    "DebPackages": {"gitlab-ce": ["19.6.0-ce.0"], "curl": ["8.14.1"]},
                    "ShellChecks": lambda checks: {name: True for name in checks}})
    apt_commands = [c for c in p.commands() if "apt-get" in c or "apt-mark" in c]
    assert not any("reconfigure" in c or "gitlab-rails" in c for c in p.commands()) and apt_commands == []
    assert any(n.startswith("GitLab bootstrap") for n in p.names())  # find-or-create: cheap when converged


def test_a_changed_certificate_reconfigures_gitlab(online, pki, state):
    """The guard is the recorded hash of gitlab.rb and both certificates: a new certificate alone must do."""
    other = certificates.ensure_lab_pki(LocalState(state.root.parent / "other"), online)
    stale = gitlab.reconfigure_stamp(gitlab.gitlab_rb(online), other)
    p = plan(gitlab.deploy_gitlab, online, pki, state, host_name="mini-pc",
             facts={**FRESH, "Command": lambda command: stale if gitlab.RECONFIGURED_MARK in command else "",
                    "DebPackages": {"gitlab-ce": ["19.6.0-ce.0"]}})
    assert any(c.startswith("gitlab-ctl reconfigure") for c in p.commands())


def test_offline_sandbox_skips_the_package_with_a_reason(sandbox_settings, pki, state):
    p = plan(gitlab.deploy_gitlab, sandbox_settings, pki, state, host_name="mini-pc",
             facts={"File": None, "Directory": None, "Command": ""})
    assert "gitlab.rb" in p.names() and not any("apt" in c for c in p.commands())
    assert any("GitLab CE: not installed: gitlab_package_source is empty" in w for w in p.warnings)


def test_secret_files_go_to_the_platform_host_root_only(online, pki, state):
    """Keys, the root password, gitlab.rb and the API token are uploaded 0600 (as the plan's chmod shows)."""
    p = plan(gitlab.deploy_gitlab, online, pki, state, host_name="mini-pc", facts=FRESH)
    for fragment in ("TLS key gitlab.local", "TLS key registry.local", "GitLab initial root password",
                     "gitlab.rb", "GitLab API token for the deploy"):
        op = p.find(fragment)
        assert any(c.startswith("chmod 600 ") for c in op.commands), (fragment, op.commands)


def test_ca_trust_updates_the_bundle_only_when_the_ca_is_missing(pki):
    facts = {"DebPackages": {"ca-certificates": ["1"]}, "File": None,
             "Directory": lambda path: None if path.endswith(".crt") else {"mode": 755}}
    missing = plan(certificates.trust_lab_ca, pki.ca.cert_pem, facts={**facts, "ShellChecks": lambda checks: {"ca": False}})
    assert "update-ca-certificates" in missing.commands()
    present = plan(certificates.trust_lab_ca, pki.ca.cert_pem, facts={**facts, "ShellChecks": lambda checks: {"ca": True}})
    assert "update-ca-certificates" not in present.commands()


def test_secrets_are_created_once_and_private(state, sandbox_settings):
    first = state.generated(state.gitlab_root_password)
    assert state.generated(state.gitlab_root_password) == first
    assert stat.S_IMODE(state.gitlab_root_password.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
    ca = certificates.ensure_lab_pki(state, sandbox_settings).ca
    assert certificates.ensure_lab_pki(state, sandbox_settings).ca.cert_pem == ca.cert_pem
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600


def test_the_platform_phase_issues_certificates_naming_the_platform_ip(state, sandbox_settings):
    """What the phase itself issues (not a certificate made by hand in a test) must carry the host's IP:
    nodes and the runner reach the registry by that address too."""
    from cryptography import x509

    pki = certificates.ensure_lab_pki(state, sandbox_settings)
    for issued, name in ((pki.gitlab, "gitlab.local"), (pki.registry, "registry.local")):
        san = x509.load_pem_x509_certificate(issued.cert_pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["198.51.100.10"]
        assert san.get_values_for_type(x509.DNSName) == [name]


HOST_KEYS = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE root@mini-pc\n"
             "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY= root@mini-pc\n"
             "ssh-rsa AAAAB3NzaC1yc2E= root@mini-pc\n")


def test_gitlab_s_ssh_host_keys_are_recorded_for_argo_cd_as_known_hosts_of_its_name(sandbox_settings, pki, state):
    """Argo CD checks gitops-repo's host key: phase 1 records every key the platform host's sshd offers."""
    facts = {"File": None, "Directory": None,
             "Command": lambda command: HOST_KEYS if "ssh_host_" in command else ""}
    plan(gitlab.deploy_gitlab, sandbox_settings, pki, state, host_name="mini-pc", facts=facts)
    assert state.gitlab_known_hosts.read_text() == (
        "gitlab.local ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY=\n"
        "gitlab.local ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE\n"
        "gitlab.local ssh-rsa AAAAB3NzaC1yc2E=\n")
    # a rebuilt host has new keys: the record follows; a host that shows none leaves the last record alone
    plan(gitlab.deploy_gitlab, sandbox_settings, pki, state, host_name="mini-pc",
         facts={**facts, "Command": lambda command: "ssh-ed25519 AAAAnew root@mini-pc\n"})
    assert state.gitlab_known_hosts.read_text() == "gitlab.local ssh-ed25519 AAAAnew\n"
    plan(gitlab.deploy_gitlab, sandbox_settings, pki, state, host_name="mini-pc", facts={**facts, "Command": ""})
    assert state.gitlab_known_hosts.read_text() == "gitlab.local ssh-ed25519 AAAAnew\n"
    assert gitlab.known_hosts_lines("gitlab.local", "garbage\n\n") == ""
