"""Phase 1 planned against faked facts: fresh and converged platform host, rendered gitlab.rb and runner config."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from tasks import platform
from tests.unit.plan import plan


@pytest.fixture
def lab_secrets(tmp_path, sandbox_settings):
    return platform.prepare_secrets(replace(sandbox_settings, state_dir=str(tmp_path / "state")))


@pytest.fixture
def online(sandbox_settings, tmp_path):
    return replace(sandbox_settings, gitlab_package_source="https://packages.gitlab.com", state_dir=str(tmp_path / "state"))


def test_gitlab_rb_has_urls_tls_memory_settings_and_backups(sandbox_settings):
    rb = platform.gitlab_rb(sandbox_settings)
    assert "external_url 'https://gitlab.local'" in rb and "registry_external_url 'https://registry.local'" in rb
    assert "nginx['ssl_certificate'] = '/etc/gitlab/ssl/gitlab.local.crt'" in rb
    assert "registry_nginx['ssl_certificate_key'] = '/etc/gitlab/ssl/registry.local.key'" in rb
    assert "puma['worker_processes'] = 0" in rb and "sidekiq['concurrency'] = 10" in rb
    assert "prometheus_monitoring['enable'] = false" in rb
    assert "gitlab_rails['backup_keep_time'] = 604800" in rb
    assert "prometheus_monitoring['enable'] = true" in platform.gitlab_rb(replace(sandbox_settings, gitlab_prometheus=True))


def test_runner_config_is_sized_from_cpus_and_trusts_the_ca(sandbox_settings):
    toml = platform.runner_config(sandbox_settings, sandbox_settings.platform, 8, "glrt-abc")
    assert "concurrent = 4" in toml and 'executor = "docker"' in toml and 'token = "glrt-abc"' in toml
    assert 'tls-ca-file = "/etc/gitlab-runner/certs/ca.crt"' in toml and "privileged = false" in toml
    assert '"registry.local:198.51.100.10"' in toml
    assert platform.runner_concurrency(1) == 1 and platform.runner_concurrency(2) == 1


def test_fresh_platform_installs_gitlab_pinned_and_reconfigures(online, lab_secrets):
    p = plan(platform.configure_gitlab, online, lab_secrets, host_name="mini-pc",
             facts={"Command": "", "File": None, "Directory": None, "AptSources": [], "AptKeys": {}, "DebPackages": {},
                    "GpgKey": {}})
    names = p.names()
    assert "gitlab.rb" in names and any("gitlab-ce 19.6.0" in n for n in names)
    assert any("gitlab-ce=19.6.0-ce.0" in c for c in p.commands())
    assert "apt-mark hold gitlab-ce" in p.commands()
    assert any(c.startswith("gitlab-ctl reconfigure") for c in p.commands())
    assert "gitlab-rails runner /etc/gitlab/lab-api-token.rb" in p.commands()
    assert any(n.startswith("GitLab bootstrap") for n in names)


def test_converged_platform_does_not_reconfigure(online, lab_secrets):
    wanted = hashlib.sha256(platform.gitlab_rb(online).encode() + lab_secrets.gitlab_cert.cert_pem
                            + lab_secrets.registry_cert.cert_pem).hexdigest()
    token_hash = hashlib.sha256(platform.deploy_api_token(online.state_path).encode()).hexdigest()
    recorded = {platform.RECONFIGURED_MARK: wanted, platform.API_TOKEN_MARK: token_hash}
    p = plan(platform.configure_gitlab, online, lab_secrets, host_name="mini-pc",
             facts={"Command": lambda command: next(v for k, v in recorded.items() if k in command),
                    "File": None, "Directory": None, "AptSources": [], "AptKeys": {},
                    "DebPackages": {"gitlab-ce": ["19.6.0-ce.0"]}, "GpgKey": {}})
    assert not any("reconfigure" in c or "gitlab-rails" in c for c in p.commands())
    assert any(n.startswith("GitLab bootstrap") for n in p.names())  # find-or-create: cheap when converged


def test_offline_sandbox_skips_the_package_with_a_reason(sandbox_settings, lab_secrets):
    p = plan(platform.configure_gitlab, sandbox_settings, lab_secrets, host_name="mini-pc",
             facts={"File": None, "Directory": None})
    assert "gitlab.rb" in p.names() and not any("apt" in c for c in p.commands())
    assert any("GitLab CE: not installed: gitlab_package_source is empty" in w for w in p.warnings)


def test_ca_trust_updates_the_bundle_only_when_the_ca_is_missing(lab_secrets):
    missing = plan(platform.trust_lab_ca, lab_secrets, facts={"DebPackages": {"ca-certificates": ["1"]},
                                                              "ShellChecks": lambda checks: {"ca": False}, "File": None,
                                                              "Directory": lambda path: None if path.endswith(".crt") else {"mode": 755}})
    assert "update-ca-certificates" in missing.commands()
    present = plan(platform.trust_lab_ca, lab_secrets, facts={"DebPackages": {"ca-certificates": ["1"]},
                                                              "ShellChecks": lambda checks: {"ca": True}, "File": None,
                                                              "Directory": lambda path: None if path.endswith(".crt") else {"mode": 755}})
    assert "update-ca-certificates" not in present.commands()


def test_secrets_are_created_once_and_private(tmp_path, sandbox_settings):
    settings = replace(sandbox_settings, state_dir=str(tmp_path / "state"))
    first = platform.prepare_secrets(settings)
    again = platform.prepare_secrets(settings)
    assert first.root_password_file.read_text() == again.root_password_file.read_text()
    assert oct(first.root_password_file.stat().st_mode & 0o777) == "0o600"
    assert again.ca.cert_pem == first.ca.cert_pem
