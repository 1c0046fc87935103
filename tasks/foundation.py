"""Phase 0 on every host: preflight, names, time, swap, kernel modules and sysctls for Kubernetes.

Stages: `preflight` (read-only: facts only, fails the run before any change), then `prepare_host`
(install packages, configure files, activate services), in the order that avoids slow first runs:
/etc/hosts before the hostname, so nothing waits on a name lookup of the new name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from pyinfra import host, logger
from pyinfra.api.exceptions import PyinfraError
from pyinfra.facts.hardware import Cpus, Memory
from pyinfra.facts.server import LinuxDistribution, Sysctl
from pyinfra.operations import files, server, systemd

from tasks import debian, follow_up
from tasks.facts import ActiveSwap, ContainerType, FreeDiskGiB, Ipv4Interfaces, ShellChecks, snapshot
from tasks.packages import ensure_packages
from tasks.phases import stage
from tasks.settings import Node, Settings
from tasks.templating import render

BASE_PACKAGES = ["chrony", "kmod"]

# Kernel modules Kubernetes networking and containerd need, each with a test of its feature. A module
# built into the kernel is never listed in /proc/modules, so test the feature, not the module list.
KERNEL_MODULES = {
    "overlay": "grep -qw overlay /proc/filesystems",
    "br_netfilter": "test -d /proc/sys/net/bridge",
}

# Bridged pod traffic must pass iptables; nodes route pod traffic. inotify limits: Promtail and the
# kubelet watch many files, and the Debian defaults (128 instances) run out on a busy node.
KUBERNETES_SYSCTLS = {
    "net.ipv4.ip_forward": 1,
    "net.bridge.bridge-nf-call-iptables": 1,
    "net.bridge.bridge-nf-call-ip6tables": 1,
    "fs.inotify.max_user_instances": 8192,
    "fs.inotify.max_user_watches": 524288,
}

SYSCTL_FILE = "/etc/sysctl.d/90-kubernetes.conf"
MODULES_FILE = "/etc/modules-load.d/kubernetes.conf"
CHRONY_CONF = "/etc/chrony/chrony.conf"
HOSTS_MARKER = "# {mark} gitops-lab hosts, managed by pyinfra"


class PreflightError(PyinfraError):
    pass


# ------------------------------------------------------------------------------------------ preflight


@dataclass
class Assessment:
    report: str
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def assess_host(
    node: Node,
    settings: Settings,
    distribution: dict[str, Any],
    cpus: int,
    memory_mb: int,
    disk_free_gib: float,
    interfaces: list[dict[str, Any]],
) -> Assessment:
    """Compare one host's release, resources and addressing with its role's needs. Pure: facts are passed in."""
    roles = "+".join(node.roles)
    report = (
        f"{node.name} [{roles}] {node.address}: {debian.describe(distribution)}, {cpus} CPUs (min {node.cpu_min}), "
        f"{memory_mb / 1024:.1f} GiB memory (min {node.memory_hard_min_mb / 1024:.1f}, "
        f"recommended {node.memory_soft_min_mb / 1024:.1f}), {disk_free_gib:.0f} GiB free on / "
        f"(recommended {node.disk_soft_min_gb})"
    )
    result = Assessment(report)
    release_problem = debian.release_problem(distribution)
    if release_problem:
        result.errors.append(f"{node.name}: {release_problem}")
    if memory_mb < node.memory_hard_min_mb:
        result.errors.append(
            f"{node.name}: {memory_mb} MiB of memory is below the {roles} minimum of {node.memory_hard_min_mb} MiB. "
            "Fix: give the machine more memory (workers need 4-8 GB), or lower memory_hard_min_mb for it "
            "if you accept an unstable host"
        )
    elif memory_mb < node.memory_soft_min_mb:
        result.warnings.append(
            f"{node.name}: {memory_mb} MiB of memory is below the recommended {node.memory_soft_min_mb} MiB for "
            f"{roles}; expect memory pressure (evictions, OOM kills) under load"
        )
    if cpus < node.cpu_min:
        result.errors.append(
            f"{node.name}: {cpus} CPUs, {roles} needs at least {node.cpu_min}. "
            "Fix: give the machine more CPUs (kubeadm refuses fewer than 2 on a control plane)"
        )
    if disk_free_gib < node.disk_soft_min_gb:
        result.warnings.append(
            f"{node.name}: only {disk_free_gib:.1f} GiB free on /, {node.disk_soft_min_gb} GiB recommended for {roles}"
        )
    matching = [i for i in interfaces if i["address"] == str(node.address)]
    if not matching:
        found = (
            ", ".join(
                f"{i['address']}/{i['prefix']} on {i['interface']}"
                for i in interfaces
                if not i["address"].startswith("127.")
            )
            or "none"
        )
        result.errors.append(
            f"{node.name}: address {node.address} from the inventory is not configured on the host "
            f"(found: {found}). Fix: give the host that static address, or correct its address in the inventory"
        )
    else:
        iface = matching[0]
        if iface["dynamic"]:
            result.warnings.append(
                f"{node.name}: {node.address} on {iface['interface']} is a DHCP lease; make it static "
                "(or reserve it): certificates, /etc/hosts and the cluster all depend on it"
            )
        if iface["prefix"] != settings.node_network.prefixlen:
            result.warnings.append(
                f"{node.name}: {node.address}/{iface['prefix']} has another prefix than node_network "
                f"{settings.node_network}"
            )
    return result


def preflight_all(settings: Settings, hosts: list[Any]) -> None:
    """Read resources of every active host, print one line each, warn, and stop the run on hard failures.

    Called once (for the first host) so the report covers all hosts before any host changes.
    """
    errors: list[str] = []
    for target in hosts:
        node = settings.node(target.name)
        result = assess_host(
            node,
            settings,
            distribution=snapshot(LinuxDistribution, target),
            cpus=snapshot(Cpus, target) or 0,
            memory_mb=int(snapshot(Memory, target) or 0),
            disk_free_gib=snapshot(FreeDiskGiB, target, path="/"),
            interfaces=snapshot(Ipv4Interfaces, target),
        )
        logger.info(f"    preflight {result.report}")
        for warning in result.warnings:
            logger.warning(f"    preflight warning: {warning}")
        errors += result.errors
    if errors:
        raise PreflightError("preflight failed, nothing was changed:\n    " + "\n    ".join(errors))


# ------------------------------------------------------------------------------------------ rendering


def hosts_entries(settings: Settings) -> str:
    """The managed /etc/hosts block: every lab host, and the GitLab and registry names on the platform host."""
    lines = [f"{n.address}\t{n.hostname}" for n in settings.nodes]
    lines.append(f"{settings.platform.address}\t{settings.gitlab_domain} {settings.registry_domain}")
    return "\n".join(lines)


def chrony_context(settings: Settings, node: Node) -> dict[str, Any]:
    serves = node.has_role("platform")
    return {
        "serves_time": serves,
        "upstream": [("pool" if "pool" in s else "server", s) for s in settings.ntp_upstream_servers],
        "allow": str(settings.node_network),
        "local_stratum": settings.ntp_local_stratum,
        "platform_address": str(settings.platform.address),
        "platform_name": settings.platform.hostname,
    }


def chrony_conf(settings: Settings, node: Node) -> str:
    return render("chrony.conf.j2", **chrony_context(settings, node))


def sysctl_file_content() -> str:
    header = "# Kubernetes node settings (managed by pyinfra: tasks/foundation.py)\n"
    return header + "".join(f"{key} = {value}\n" for key, value in KUBERNETES_SYSCTLS.items())


# ------------------------------------------------------------------------------------------ stages


@stage("Phase 0: names")
def configure_names(settings: Settings, node: Node) -> None:
    # Entries first: setting the hostname (and sudo, and some package scripts) resolve the new name,
    # and without an entry every lookup waits for a DNS timeout.
    files.block(
        name="/etc/hosts: lab hosts, GitLab and registry names",
        path="/etc/hosts",
        content=hosts_entries(settings),
        marker=HOSTS_MARKER,
    )
    # Debian maps the hostname to 127.0.1.1; the kubelet would then advertise loopback as the node IP.
    files.line(name="/etc/hosts: drop the 127.0.1.1 alias", path="/etc/hosts", line=r"^127\.0\.1\.1\s", present=False)
    server.hostname(name=f"Hostname {node.hostname}", hostname=node.hostname)


@stage("Phase 0: time")
def configure_time(settings: Settings, node: Node) -> None:
    conf = files.put(
        name="chrony.conf (platform serves the lab)" if node.has_role("platform") else "chrony.conf (follow platform)",
        src=StringIO(chrony_conf(settings, node)),
        dest=CHRONY_CONF,
        mode="644",
    )
    follow_up.restart("chrony", [conf], "its config changed")
    systemd.service(name="chrony running and enabled", service="chrony", running=True, enabled=True)


@stage("Phase 0: swap off")
def disable_swap(settings: Settings) -> None:
    if not settings.disable_swap:
        return
    if host.get_fact(ActiveSwap):
        server.shell(name="Turn swap off now", commands=["swapoff -a"])
    # Comment out swap in fstab so it stays off after a reboot (kubelet will not start with swap on).
    files.replace(
        name="Keep swap off across reboots (fstab)",
        path="/etc/fstab",
        text=r"^([^#].*[[:space:]]swap[[:space:]].*)$",
        replace=r"# disabled for kubelet: \1",
        extended_regex=True,
    )


@stage("Phase 0: kernel modules and sysctls")
def configure_kernel(settings: Settings) -> None:
    files.put(
        name=f"Load {', '.join(KERNEL_MODULES)} at boot",
        src=StringIO("".join(f"{m}\n" for m in KERNEL_MODULES)),
        dest=MODULES_FILE,
        mode="644",
    )
    container = host.get_fact(ContainerType)
    available = host.get_fact(ShellChecks, checks=KERNEL_MODULES)
    for module in KERNEL_MODULES:
        if available.get(module):
            continue  # loaded already, or built into the kernel
        if container != "none":
            logger.warning(
                f"    [{host.name}] kernel module {module} is not available and cannot be loaded inside a "
                f"{container} container: load it on the machine that runs the container (modprobe {module})"
            )
            continue
        server.modprobe(name=f"Load kernel module {module}", module=module)

    files.put(
        name=f"Persist Kubernetes sysctls ({SYSCTL_FILE})",
        src=StringIO(sysctl_file_content()),
        dest=SYSCTL_FILE,
        mode="644",
    )
    writable = host.get_fact(
        ShellChecks, checks={key: f"test -w /proc/sys/{key.replace('.', '/')}" for key in KUBERNETES_SYSCTLS}
    )
    current = host.get_fact(Sysctl, keys=list(KUBERNETES_SYSCTLS))
    for key, value in KUBERNETES_SYSCTLS.items():
        if current.get(key) == value:
            continue
        if not writable.get(key):
            logger.warning(
                f"    [{host.name}] sysctl {key} is read-only here ({container} container): set it to "
                f"{value} on the machine that runs the container"
            )
            continue
        server.sysctl(name=f"sysctl {key} = {value}", key=key, value=value)


@stage("Phase 0: host preparation")
def prepare_host(settings: Settings, node: Node) -> None:
    configure_names(settings, node)
    ensure_packages(BASE_PACKAGES)
    configure_time(settings, node)
    disable_swap(settings)
    configure_kernel(settings)
