"""Phase 0 tasks planned against faked facts: what runs on a fresh host, what does not on a converged one,
and how the preflight judges resources."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

from dataclasses import replace
import pytest

from tasks import foundation
from tasks.foundation import KUBERNETES_SYSCTLS, PreflightError, assess_host, preflight_all
from tests.unit.plan import plan
from tests.unit.test_debian import distribution


TRIXIE = distribution("trixie", "13")


def iface(address: str, prefix: int = 24, dynamic: bool = False, name: str = "eth0") -> dict:
    return {"interface": name, "address": address, "prefix": prefix, "dynamic": dynamic}


def converged_kernel_facts(container: str = "none") -> dict:
    return {
        "ContainerType": container,
        "ShellChecks": lambda checks: {name: True for name in checks},
        "Sysctl": lambda keys: {k: v for k, v in KUBERNETES_SYSCTLS.items() if k in keys},
        "File": {"size": 1, "mode": 644},
        "Directory": {"mode": 755},
        "Sha1File": lambda path: _sha1_of_managed(path),
    }


def _sha1_of_managed(path: str) -> str:
    contents = {
        foundation.SYSCTL_FILE: foundation.sysctl_file_content(),
        foundation.MODULES_FILE: "".join(f"{m}\n" for m in foundation.KERNEL_MODULES),
    }
    return hashlib.sha1(contents[path].encode()).hexdigest()


# ----------------------------------------------------------------------------------------- rendering


def test_hosts_block_lists_every_host_and_the_platform_names(sandbox_settings):
    lines = foundation.hosts_entries(sandbox_settings).splitlines()
    assert lines == [
        "198.51.100.10\tmini-pc", "198.51.100.11\tk8s-master", "198.51.100.12\tk8s-worker1",
        "198.51.100.13\tk8s-worker2", "198.51.100.10\tgitlab.local registry.local",
    ]


def render_chrony(settings, node_name: str, **overrides) -> str:
    return foundation.chrony_conf(replace(settings, **overrides), settings.node(node_name))


def test_platform_chrony_follows_upstream_and_serves_the_node_network(sandbox_settings):
    conf = render_chrony(sandbox_settings, "mini-pc")
    assert "pool 0.debian.pool.ntp.org iburst" in conf
    assert "allow 198.51.100.0/24" in conf
    assert "local stratum 10" in conf
    assert "server 198.51.100.10" not in conf


def test_platform_chrony_without_local_stratum_has_no_local_line(sandbox_settings):
    assert "local stratum" not in render_chrony(sandbox_settings, "mini-pc", ntp_local_stratum=0)


@pytest.mark.parametrize("name", ["k8s-master", "k8s-worker1", "k8s-worker2"])
def test_nodes_follow_the_platform_host_only(sandbox_settings, name):
    conf = render_chrony(sandbox_settings, name)
    assert "server 198.51.100.10 iburst prefer" in conf
    assert "pool " not in conf and "allow " not in conf and "local stratum" not in conf


def test_sysctl_file_persists_every_kubernetes_sysctl():
    content = foundation.sysctl_file_content()
    for key, value in KUBERNETES_SYSCTLS.items():
        assert f"{key} = {value}\n" in content
    assert KUBERNETES_SYSCTLS["net.ipv4.ip_forward"] == 1
    assert KUBERNETES_SYSCTLS["net.bridge.bridge-nf-call-iptables"] == 1


# ----------------------------------------------------------------------------------------- preflight


def test_worker_below_hard_memory_minimum_is_an_error_naming_host_and_fix(sandbox_settings):
    node = sandbox_settings.node("k8s-worker1")
    result = assess_host(node, sandbox_settings, TRIXIE, cpus=2, memory_mb=2048, disk_free_gib=50,
                         interfaces=[iface("198.51.100.12")])
    assert len(result.errors) == 1 and not result.warnings
    assert "k8s-worker1: 2048 MiB of memory is below the worker minimum of 3500 MiB" in result.errors[0]
    assert "memory_hard_min_mb" in result.errors[0] and "Fix:" in result.errors[0]


def test_worker_between_soft_and_hard_limit_is_a_warning(sandbox_settings):
    node = sandbox_settings.node("k8s-worker2")
    result = assess_host(node, sandbox_settings, TRIXIE, cpus=2, memory_mb=3900, disk_free_gib=50,
                         interfaces=[iface("198.51.100.13")])
    assert not result.errors
    assert result.warnings == ["k8s-worker2: 3900 MiB of memory is below the recommended 7500 MiB for worker; "
                               "expect memory pressure (evictions, OOM kills) under load"]


def test_host_meeting_every_need_has_no_findings(sandbox_settings):
    node = sandbox_settings.node("k8s-master")
    result = assess_host(node, sandbox_settings, TRIXIE, cpus=4, memory_mb=8192, disk_free_gib=100,
                         interfaces=[iface("127.0.0.1", 8, name="lo"), iface("198.51.100.11")])
    assert not result.errors and not result.warnings
    assert result.report.startswith("k8s-master [control_plane] 198.51.100.11: Debian 13 (trixie), 4 CPUs (min 2), "
                                    "8.0 GiB memory")


def test_too_few_cpus_and_little_disk(sandbox_settings):
    node = sandbox_settings.node("k8s-master")
    result = assess_host(node, sandbox_settings, TRIXIE, cpus=1, memory_mb=8192, disk_free_gib=3.5,
                         interfaces=[iface("198.51.100.11")])
    assert any("1 CPUs, control_plane needs at least 2" in e for e in result.errors)
    assert any("only 3.5 GiB free on /" in w for w in result.warnings)


def test_inventory_address_not_on_the_host_is_an_error(sandbox_settings):
    node = sandbox_settings.node("k8s-worker1")
    result = assess_host(node, sandbox_settings, TRIXIE, cpus=2, memory_mb=8192, disk_free_gib=50,
                         interfaces=[iface("127.0.0.1", 8, name="lo"), iface("198.51.100.99")])
    assert len(result.errors) == 1
    assert "address 198.51.100.12 from the inventory is not configured on the host (found: 198.51.100.99/24 on eth0)" \
        in result.errors[0]


def test_dhcp_address_and_wrong_prefix_are_warned_about(sandbox_settings):
    node = sandbox_settings.node("k8s-worker1")
    result = assess_host(node, sandbox_settings, TRIXIE, cpus=2, memory_mb=8192, disk_free_gib=50,
                         interfaces=[iface("198.51.100.12", prefix=16, dynamic=True)])
    assert not result.errors
    assert any("is a DHCP lease; make it static" in w for w in result.warnings)
    assert any("has another prefix than node_network 198.51.100.0/24" in w for w in result.warnings)


class FakeHost(SimpleNamespace):
    def get_fact(self, fact_cls, **kwargs):
        return self.facts[fact_cls.__name__]


def fake_host(name: str, address: str, memory_mb: int, release: dict = TRIXIE) -> FakeHost:
    return FakeHost(name=name, facts={"Cpus": 2, "Memory": memory_mb, "FreeDiskGiB": 50.0,
                                      "Ipv4Interfaces": [iface(address)], "LinuxDistribution": release})


def test_preflight_reports_every_failing_host_at_once_and_changes_nothing(sandbox_settings):
    hosts = [fake_host("mini-pc", "198.51.100.10", 16000), fake_host("k8s-master", "198.51.100.11", 4000),
             fake_host("k8s-worker1", "198.51.100.12", 1024), fake_host("k8s-worker2", "198.51.100.13", 2048)]
    with pytest.raises(PreflightError) as err:
        preflight_all(sandbox_settings, hosts)
    message = str(err.value)
    assert message.startswith("preflight failed, nothing was changed")
    assert "k8s-worker1: 1024 MiB" in message and "k8s-worker2: 2048 MiB" in message
    assert "mini-pc" not in message and "k8s-master" not in message


def test_preflight_refuses_an_unsupported_release_in_one_line_before_any_change(sandbox_settings):
    hosts = [fake_host("mini-pc", "198.51.100.10", 16000, release=distribution("bookworm", "12")),
             fake_host("k8s-worker1", "198.51.100.12", 8000, release=distribution("bullseye", "11"))]
    with pytest.raises(PreflightError) as err:
        preflight_all(sandbox_settings, hosts)
    lines = str(err.value).splitlines()
    assert lines == ["preflight failed, nothing was changed:",
                     "    k8s-worker1: Debian 11 (bullseye) is not a supported release (supported: Debian 12 (bookworm), "
                     "Debian 13 (trixie)). Fix: install Debian 13 (trixie) on it"]


def test_preflight_passes_healthy_hosts(sandbox_settings):
    hosts = [fake_host("mini-pc", "198.51.100.10", 16000), fake_host("k8s-worker1", "198.51.100.12", 8000)]
    preflight_all(sandbox_settings, hosts)  # no exception


# ----------------------------------------------------------------------------------------- task plans


def test_packages_are_installed_after_an_index_refresh_on_a_fresh_host():
    from tasks.packages import ensure_packages

    p = plan(ensure_packages, ["chrony", "kmod"], facts={"DebPackages": {"kmod": ["30"]}})
    assert p.commands()[0] == "apt-get update"
    assert "install --no-install-recommends chrony" in p.commands()[1]
    assert "kmod" not in p.commands()[1]


def test_no_apt_update_when_every_package_is_present():
    from tasks.packages import ensure_packages

    p = plan(ensure_packages, ["chrony", "kmod"], facts={"DebPackages": {"kmod": ["30"], "chrony": ["4.3"]}})
    assert p.ops == []


def test_kernel_on_a_fresh_machine_loads_modules_and_sets_sysctls(sandbox_settings):
    facts = {"ContainerType": "none", "ShellChecks": lambda checks: {name: name.startswith("fs.") or
                                                                      name.startswith("net.") for name in checks},
             "Sysctl": lambda keys: {k: 0 for k in keys}, "KernelModules": {}}
    p = plan(foundation.configure_kernel, sandbox_settings, facts=facts)
    assert "modprobe -a overlay" in p.commands() and "modprobe -a br_netfilter" in p.commands()
    for key, value in KUBERNETES_SYSCTLS.items():
        assert any(c.startswith(f"sysctl {key}=") and str(value) in c for c in p.commands()), key
    assert not p.warnings


def test_kernel_inside_a_container_warns_instead_of_crashing(sandbox_settings):
    facts = {"ContainerType": "systemd-nspawn",
             "ShellChecks": lambda checks: {name: name.startswith("net.") for name in checks},
             "Sysctl": lambda keys: {k: 0 for k in keys}}
    p = plan(foundation.configure_kernel, sandbox_settings, facts=facts)
    assert not any(c.startswith("modprobe") for c in p.commands())
    assert any("kernel module overlay is not available and cannot be loaded inside a systemd-nspawn container" in w
               for w in p.warnings)
    assert any("sysctl fs.inotify.max_user_watches is read-only here" in w for w in p.warnings)
    assert any(c.startswith("sysctl net.ipv4.ip_forward=") for c in p.commands())


def test_kernel_with_builtin_modules_and_correct_sysctls_changes_nothing(sandbox_settings):
    p = plan(foundation.configure_kernel, sandbox_settings, facts=converged_kernel_facts())
    assert p.changing() == [], [op.name for op in p.changing()]
    assert not p.warnings


def test_active_swap_is_turned_off_and_fstab_entry_commented(sandbox_settings):
    p = plan(foundation.disable_swap, sandbox_settings,
             facts={"ActiveSwap": ["/swap.img"], "FindInFile": lambda **kw: ["/swap.img none swap sw 0 0"]})
    assert p.commands()[0] == "swapoff -a"
    assert any("sed" in c and "/etc/fstab" in c for c in p.commands())


def test_no_swap_means_no_swapoff(sandbox_settings):
    p = plan(foundation.disable_swap, sandbox_settings, facts={"ActiveSwap": [], "FindInFile": lambda **kw: []})
    assert p.changing() == []


def test_disable_swap_switch_off_leaves_swap_alone(sandbox_settings):
    from dataclasses import replace

    p = plan(foundation.disable_swap, replace(sandbox_settings, disable_swap=False), facts={"ActiveSwap": ["/swap"]})
    assert p.ops == []


def test_time_on_a_fresh_node_uploads_config_and_restarts_chrony(sandbox_settings):
    node = sandbox_settings.node("k8s-worker1")
    p = plan(foundation.configure_time, sandbox_settings, node,
             facts={"File": None, "SystemdStatus": {"chrony.service": True}, "SystemdEnabled": {"chrony.service": True}})
    assert p.find("chrony.conf (follow platform)").commands
    assert any("systemctl restart chrony" in c for c in p.find("chrony restarted").commands)
    assert p.find("chrony-restart: done").commands, "the restart clears its marker"


def test_time_restarts_chrony_when_a_cut_off_run_left_the_restart_due(sandbox_settings):
    node = sandbox_settings.node("k8s-worker1")
    conf_sha1 = hashlib.sha1(foundation.chrony_conf(sandbox_settings, node).encode()).hexdigest()
    converged = {"File": {"mode": 644}, "Directory": {"mode": 755}, "Sha1File": lambda path: conf_sha1,
                 "FindFiles": ["/var/lib/gitops-lab/pending/chrony-restart"],
                 "SystemdStatus": {"chrony.service": True}, "SystemdEnabled": {"chrony.service": True}}
    p = plan(foundation.configure_time, sandbox_settings, node, facts=converged)
    assert any("systemctl restart chrony" in c for c in p.find("chrony restarted").commands)
    assert not p.find("chrony.conf").commands, "the config itself is converged"
    assert not p.find("chrony running and enabled").commands


def test_time_on_a_converged_node_restarts_nothing(sandbox_settings):
    node = sandbox_settings.node("k8s-worker1")
    conf_sha1 = hashlib.sha1(foundation.chrony_conf(sandbox_settings, node).encode()).hexdigest()
    converged = {"File": {"mode": 644}, "Directory": {"mode": 755}, "Sha1File": lambda path: conf_sha1, "FindFiles": [],
                 "SystemdStatus": {"chrony.service": True}, "SystemdEnabled": {"chrony.service": True}}
    assert plan(foundation.configure_time, sandbox_settings, node, facts=converged).changing() == []


def test_names_write_hosts_before_the_hostname(sandbox_settings):
    node = sandbox_settings.node("k8s-worker1")
    p = plan(foundation.configure_names, sandbox_settings, node,
             facts={"Hostname": "debian", "Which": "/usr/bin/hostnamectl", "FindInFile": lambda **kw: [],
                    "Block": lambda **kw: None, "File": None})
    names = p.names()
    assert names.index("/etc/hosts: lab hosts, GitLab and registry names") < names.index("Hostname k8s-worker1")
    assert "hostnamectl set-hostname k8s-worker1" in p.commands()
