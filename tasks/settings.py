"""One validated view of the settings, built from the pyinfra inventory and group_data before any host is touched.

Every task reads `Settings` (never raw `host.data` lookups). A bad value raises `SettingsError`, whose
message is one line: the key, where it comes from, what is wrong, and the fix.

Scopes of the keys (see SCHEMA):
- cluster: one value for the whole lab (group_data/all.py, or the inventory's group data). A host that
  overrides it with a different value is an error, because every host must agree on, say, the pod CIDR.
- host: may differ per host (inventory entry or the role's group_data file): address, labels, minimums.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

ROLES = ("platform", "control_plane", "worker")
GROUP_DATA_DIR = Path(__file__).resolve().parent.parent / "group_data"
CNIS = ("calico", "cilium")
STORAGE_CLASSES = ("local-path", "nfs")
KUBE_PROXY_MODES = ("iptables", "ipvs", "nftables")
KUBEADM_POD_SUBNET_PER_NODE = 24  # kube-controller-manager's default --node-cidr-mask-size for IPv4

_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


class SettingsError(ValueError):
    """A setting is wrong. str() is one line: key, source, problem, fix."""

    def __init__(self, key: str, problem: str, fix: str, source: str = "") -> None:
        self.key = key
        self.problem = problem
        self.fix = fix
        self.source = source
        where = f" ({source})" if source else ""
        super().__init__(f"setting {key}{where}: {problem}. Fix: {fix}")

    def with_source(self, source: str) -> "SettingsError":
        return SettingsError(self.key, self.problem, self.fix, source)


@dataclass(frozen=True)
class Key:
    scope: str  # "cluster" or "host"
    kind: type | tuple[type, ...]
    doc: str


# Every setting the deploy reads. Types are checked before meaning; unknown keys are rejected with a
# "did you mean" so a typo in group_data never silently falls back to a default.
SCHEMA: dict[str, Key] = {
    # names and addresses
    "address": Key("host", str, "static IPv4 address of the host on the lab network"),
    "hostname": Key("host", str, "host name to set (default: the inventory name)"),
    "node_labels": Key("host", dict, "Kubernetes labels for the node (control_plane/worker)"),
    "gitlab_domain": Key("cluster", str, "GitLab's name, resolved via /etc/hosts to the platform host"),
    "registry_domain": Key("cluster", str, "the Container Registry's name, also pointing at the platform host"),
    "node_network": Key("cluster", str, "the subnet all host addresses live in (CIDR)"),
    "gitlab_group": Key("cluster", str, "GitLab group holding app-repo and gitops-repo (also the image path)"),
    "storefront_host_dev": Key("cluster", str, "host name of the dev storefront Ingress"),
    "storefront_host_prod": Key("cluster", str, "host name of the prod storefront Ingress"),
    "argocd_host": Key("cluster", str, "host name of the Argo CD UI Ingress"),
    "grafana_host": Key("cluster", str, "host name of the Grafana Ingress"),
    "ingress_class": Key("cluster", str, "IngressClass of Ingress-NGINX, used by every Ingress"),
    # time
    "ntp_upstream_servers": Key("cluster", list, "NTP servers the platform host follows"),
    "ntp_local_stratum": Key("cluster", int, "stratum the platform serves when upstream is unreachable (0: off)"),
    # Kubernetes networking
    "pod_cidr": Key("cluster", str, "pod network (CIDR); each node gets a /24 of it"),
    "service_cidr": Key("cluster", str, "Service ClusterIP range (CIDR)"),
    "metallb_pool": Key("cluster", str, "MetalLB L2 pool, `first-last` inside node_network"),
    "cni": Key("cluster", str, "calico or cilium"),
    "kube_proxy_mode": Key("cluster", str, "iptables, ipvs or nftables"),
    "storage_class": Key("cluster", str, "default StorageClass: local-path or nfs"),
    # versions and downloads
    "kubernetes_version": Key("cluster", str, "Kubernetes release (X.Y.Z)"),
    "online_boutique_version": Key("cluster", str, "Online Boutique tag imported into app-repo"),
    "artifacts": Key("cluster", dict, "downloads: name -> {version, sha256, url}"),
    "artifact_mirror": Key("cluster", str, "base URL every download is fetched from instead of upstream ('' = upstream)"),
    "image_registry_mirrors": Key("cluster", dict, "container registry -> mirror URL containerd pulls from first"),
    "pause_image": Key("cluster", str, "pod sandbox image of containerd (match the Kubernetes release)"),
    "control_plane_endpoint": Key("cluster", str, "stable API address host[:port] ('' = the control-plane host)"),
    "api_server_extra_sans": Key("cluster", list, "extra names/addresses in the API server certificate"),
    "kubelet_fail_cgroup_v1": Key("cluster", bool, "kubelet refuses cgroup v1 hosts (Kubernetes 1.35+ default)"),
    "node_ready_timeout_s": Key("cluster", int, "how long the deploy waits for every node to be Ready"),
    # load tests (tests/acceptance passes them to k6; the same names work as k6/Locust environment variables)
    "loadtest_peak_users": Key("cluster", int, "virtual users at the top of the k6 ramp"),
    "loadtest_p95_ms": Key("cluster", int, "p95 latency threshold of the load tests, in ms"),
    "loadtest_error_rate": Key("cluster", (float, int), "highest failed-request rate the load tests accept (0-1)"),
    # platform host
    "state_dir": Key("cluster", str, "local folder for generated secrets of this inventory (git-ignored, 0700)"),
    "gitlab_version": Key("cluster", str, "GitLab CE package version (X.Y.Z)"),
    "gitlab_runner_version": Key("cluster", str, "GitLab Runner package version (X.Y.Z)"),
    "gitlab_package_source": Key("cluster", str, "base URL of GitLab's Linux package repositories ('' = do not install)"),
    "gitlab_puma_workers": Key("cluster", int, "Puma workers (0 = single mode, least memory)"),
    "gitlab_sidekiq_concurrency": Key("cluster", int, "Sidekiq threads"),
    "gitlab_backup_keep_days": Key("cluster", int, "days of GitLab backups to keep"),
    # switches
    "disable_swap": Key("cluster", bool, "turn swap off now and across reboots (kubelet needs it off)"),
    "gitlab_prometheus": Key("cluster", bool, "keep GitLab's bundled Prometheus (memory hungry on a mini PC)"),
    # resource needs, per role (group_data/<role>.py) or per host
    "memory_hard_min_mb": Key("host", int, "refuse the host below this much memory (MiB)"),
    "memory_soft_min_mb": Key("host", int, "warn below this much memory (MiB)"),
    "cpu_min": Key("host", int, "refuse the host below this many CPUs"),
    "disk_soft_min_gb": Key("host", int, "warn below this much free space on / (GiB)"),
}

# Keys pyinfra and its connectors own; allowed in data, not ours to validate.
_PYINFRA_PREFIXES = ("ssh_", "_", "fake_", "docker_", "dockerssh_", "chroot_", "local_", "vagrant_", "winrm_",
                     "terraform_", "podman_")


@dataclass(frozen=True)
class Node:
    name: str
    hostname: str
    address: ipaddress.IPv4Address
    roles: tuple[str, ...]
    node_labels: dict[str, str]
    memory_hard_min_mb: int
    memory_soft_min_mb: int
    cpu_min: int
    disk_soft_min_gb: int

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Settings:
    nodes: tuple[Node, ...]
    gitlab_domain: str
    registry_domain: str
    gitlab_group: str
    storefront_host_dev: str
    storefront_host_prod: str
    argocd_host: str
    grafana_host: str
    ingress_class: str
    node_network: ipaddress.IPv4Network
    ntp_upstream_servers: tuple[str, ...]
    ntp_local_stratum: int
    pod_cidr: ipaddress.IPv4Network
    service_cidr: ipaddress.IPv4Network
    metallb_pool: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]
    cni: str
    kube_proxy_mode: str
    storage_class: str
    kubernetes_version: str
    online_boutique_version: str
    artifacts: dict[str, dict[str, str]]
    artifact_mirror: str
    image_registry_mirrors: dict[str, str]
    pause_image: str
    control_plane_endpoint: str
    api_server_extra_sans: tuple[str, ...]
    kubelet_fail_cgroup_v1: bool
    node_ready_timeout_s: int
    loadtest_peak_users: int
    loadtest_p95_ms: int
    loadtest_error_rate: float
    state_dir: str
    gitlab_version: str
    gitlab_runner_version: str
    gitlab_package_source: str
    gitlab_puma_workers: int
    gitlab_sidekiq_concurrency: int
    gitlab_backup_keep_days: int
    disable_swap: bool
    gitlab_prometheus: bool

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if n.has_role(role)]

    @property
    def platform(self) -> Node:
        return self.with_role("platform")[0]

    @property
    def control_plane(self) -> Node:
        return self.with_role("control_plane")[0]

    @property
    def workers(self) -> list[Node]:
        return self.with_role("worker")

    @property
    def state_path(self) -> Path:
        """The state folder, relative paths taken from the repository's root."""
        path = Path(self.state_dir)
        return path if path.is_absolute() else GROUP_DATA_DIR.parent / path

    @property
    def metallb_pool_range(self) -> str:
        return f"{self.metallb_pool[0]}-{self.metallb_pool[1]}"


# ---------------------------------------------------------------------------------------------- loading


def load_settings(inventory: Any) -> Settings:
    """Build and validate Settings from a pyinfra Inventory (every host, not only those in --limit)."""
    hosts = list(inventory)
    if not hosts:
        raise SettingsError("inventory", "has no hosts", "list hosts in the groups platform, control_plane, worker")
    datas = {h.name: h.data.dict() for h in hosts}
    groups = {h.name: tuple(g for g in ROLES if g in h.groups) for h in hosts}
    try:
        return build_settings(datas, groups)
    except SettingsError as exc:
        root_key = exc.key.split(".")[0]
        if exc.source or SCHEMA.get(root_key, Key("host", str, "")).scope != "cluster":
            raise
        raise exc.with_source(_source_of(inventory, hosts[0], root_key)) from None


def _source_of(inventory: Any, host: Any, key: str) -> str:
    """Where pyinfra took a host's value of `key` from, in its own precedence order."""
    layers = [("--data on the command line", inventory.get_override_data()),
              (f"inventory entry of {host.name}", inventory.get_host_data(host.name))]
    layers += [(f"group {group}", inventory.get_group_data(group)) for group in reversed(host.groups)]
    layers.append(("group all", inventory.get_data()))
    for label, data in layers:
        if key in (data or {}):
            group = label.removeprefix("group ")
            if label.startswith("group ") and (GROUP_DATA_DIR / f"{group}.py").exists():
                return f"group_data/{group}.py"
            return label if not label.startswith("group ") else f"inventory group {group}"
    return "group_data/all.py"


def build_settings(datas: dict[str, dict[str, Any]], roles: dict[str, tuple[str, ...]]) -> Settings:
    """Validate raw per-host data (as pyinfra merged it) and the role membership of each host."""
    for name, data in datas.items():
        _check_known_keys(name, data)
        _check_host_roles(name, roles[name])
    cluster = _cluster_values(datas)
    nodes = tuple(_build_node(name, datas[name], roles[name]) for name in datas)
    settings = Settings(
        nodes=nodes,
        gitlab_domain=_domain(cluster, "gitlab_domain"),
        registry_domain=_domain(cluster, "registry_domain"),
        gitlab_group=_label(cluster, "gitlab_group"),
        storefront_host_dev=_domain(cluster, "storefront_host_dev"),
        storefront_host_prod=_domain(cluster, "storefront_host_prod"),
        argocd_host=_domain(cluster, "argocd_host"),
        grafana_host=_domain(cluster, "grafana_host"),
        ingress_class=_label(cluster, "ingress_class"),
        node_network=_network(cluster, "node_network"),
        ntp_upstream_servers=tuple(_str_list(cluster, "ntp_upstream_servers", allow_empty=True)),
        ntp_local_stratum=_int_range(cluster, "ntp_local_stratum", 0, 15),
        pod_cidr=_network(cluster, "pod_cidr"),
        service_cidr=_network(cluster, "service_cidr"),
        metallb_pool=_pool(cluster, "metallb_pool"),
        cni=_choice(cluster, "cni", CNIS),
        kube_proxy_mode=_choice(cluster, "kube_proxy_mode", KUBE_PROXY_MODES),
        storage_class=_choice(cluster, "storage_class", STORAGE_CLASSES),
        kubernetes_version=_version(cluster, "kubernetes_version"),
        online_boutique_version=_version(cluster, "online_boutique_version"),
        artifacts=_artifacts(cluster),
        artifact_mirror=_mirror(cluster),
        image_registry_mirrors=_registry_mirrors(cluster),
        pause_image=_image(cluster, "pause_image"),
        control_plane_endpoint=_endpoint(cluster, "control_plane_endpoint"),
        api_server_extra_sans=tuple(_str_list(cluster, "api_server_extra_sans", allow_empty=True)),
        kubelet_fail_cgroup_v1=_required(cluster, "kubelet_fail_cgroup_v1"),
        node_ready_timeout_s=_int_range(cluster, "node_ready_timeout_s", 30, 3600),
        loadtest_peak_users=_int_range(cluster, "loadtest_peak_users", 1, 5000),
        loadtest_p95_ms=_int_range(cluster, "loadtest_p95_ms", 10, 60000),
        loadtest_error_rate=_fraction(cluster, "loadtest_error_rate"),
        state_dir=_required(cluster, "state_dir"),
        gitlab_version=_version(cluster, "gitlab_version"),
        gitlab_runner_version=_version(cluster, "gitlab_runner_version"),
        gitlab_package_source=_url(cluster, "gitlab_package_source"),
        gitlab_puma_workers=_int_range(cluster, "gitlab_puma_workers", 0, 16),
        gitlab_sidekiq_concurrency=_int_range(cluster, "gitlab_sidekiq_concurrency", 1, 50),
        gitlab_backup_keep_days=_int_range(cluster, "gitlab_backup_keep_days", 1, 365),
        disable_swap=_required(cluster, "disable_swap"),
        gitlab_prometheus=_required(cluster, "gitlab_prometheus"),
    )
    _check_roles(settings)
    _check_names_and_addresses(settings)
    _check_networks(settings)
    _check_time(settings)
    _check_kubernetes_artifacts(settings)
    return settings


def _check_known_keys(host: str, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if key.startswith(_PYINFRA_PREFIXES):
            continue
        if key not in SCHEMA:
            close = difflib.get_close_matches(key, SCHEMA, n=1)
            hint = f"did you mean {close[0]}?" if close else "remove it, or see the settings table in the README"
            raise SettingsError(key, f"unknown setting on host {host}", hint)
        expected = SCHEMA[key].kind
        # bool is an int in Python; a flag where a number belongs (or the reverse) is still a mistake
        wrong_bool = isinstance(value, bool) and expected is int
        if not isinstance(value, expected) or wrong_bool:
            names = expected.__name__ if isinstance(expected, type) else "/".join(t.__name__ for t in expected)
            raise SettingsError(key, f"is {type(value).__name__} {value!r} on host {host}, expected {names}",
                                f"write it as a {names} (see the settings table in the README)")


def _cluster_values(datas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cluster: dict[str, Any] = {}
    first: dict[str, str] = {}
    for host, data in datas.items():
        for key, spec in SCHEMA.items():
            if spec.scope != "cluster" or key not in data:
                continue
            if key in cluster and data[key] != cluster[key]:
                raise SettingsError(
                    key, f"differs between hosts ({first[key]}: {cluster[key]!r}, {host}: {data[key]!r})",
                    "it is lab-wide: set it once in group_data/all.py and remove per-host or per-role overrides",
                )
            cluster.setdefault(key, data[key])
            first.setdefault(key, host)
    return cluster


def _required(values: dict[str, Any], key: str, host: str = "") -> Any:
    if key not in values:
        on = f" for host {host}" if host else ""
        where = "group_data/<role>.py or the inventory" if SCHEMA[key].scope == "host" else "group_data/all.py"
        raise SettingsError(key, f"is missing{on}", f"set it in {where} ({SCHEMA[key].doc})")
    return values[key]


def _build_node(name: str, data: dict[str, Any], roles: tuple[str, ...]) -> Node:
    raw_address = _required(data, "address", name)
    try:
        address = ipaddress.IPv4Address(raw_address)
    except ValueError:
        raise SettingsError("address", f"{raw_address!r} of host {name} is not an IPv4 address",
                            "write the host's static address, e.g. 192.168.10.12") from None
    hostname = data.get("hostname", name)
    if not _DNS_LABEL.match(hostname):
        raise SettingsError("hostname", f"{hostname!r} of host {name} is not a valid host name",
                            "use lower-case letters, digits and '-' (no '_' or dots), at most 63 characters")
    labels = data.get("node_labels", {})
    for label, value in labels.items():
        _check_label(name, label, value)
    node = Node(
        name=name, hostname=hostname, address=address, roles=roles, node_labels=dict(labels),
        memory_hard_min_mb=_required(data, "memory_hard_min_mb", name),
        memory_soft_min_mb=_required(data, "memory_soft_min_mb", name),
        cpu_min=_required(data, "cpu_min", name),
        disk_soft_min_gb=_required(data, "disk_soft_min_gb", name),
    )
    if node.memory_soft_min_mb < node.memory_hard_min_mb:
        raise SettingsError("memory_soft_min_mb",
                            f"{node.memory_soft_min_mb} is below memory_hard_min_mb {node.memory_hard_min_mb} on host {name}",
                            "the warning threshold must be at least the refusal threshold")
    return node


def _check_label(host: str, label: Any, value: Any) -> None:
    prefix, _, name = str(label).rpartition("/")
    valid_prefix = not prefix or all(_DNS_LABEL.match(p) for p in prefix.split(".")) and len(prefix) <= 253
    if not (isinstance(label, str) and valid_prefix and _LABEL_NAME.match(name)):
        raise SettingsError("node_labels", f"label key {label!r} of host {host} is not a valid Kubernetes label key",
                            "use [prefix/]name with name of at most 63 letters, digits, '-', '_', '.'")
    if not (isinstance(value, str) and _LABEL_VALUE.match(value)):
        raise SettingsError("node_labels", f"label {label}={value!r} of host {host} has an invalid value",
                            "use a string of at most 63 letters, digits, '-', '_', '.' (or empty)")


def _domain(values: dict[str, Any], key: str) -> str:
    domain = _required(values, key)
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DNS_LABEL.match(label) for label in labels):
        raise SettingsError(key, f"{domain!r} is not a valid DNS name", "use a lower-case name like gitlab.local")
    return domain


def _label(values: dict[str, Any], key: str) -> str:
    value = _required(values, key)
    if not _DNS_LABEL.match(value):
        raise SettingsError(key, f"{value!r} is not a valid name", "use lower-case letters, digits and '-'")
    return value


def _network(values: dict[str, Any], key: str) -> ipaddress.IPv4Network:
    raw = _required(values, key)
    try:
        return ipaddress.IPv4Network(raw)
    except ValueError as exc:
        raise SettingsError(key, f"{raw!r} is not an IPv4 network ({exc})",
                            "write it in CIDR form with the host bits zero, e.g. 10.244.0.0/16") from None


def _pool(values: dict[str, Any], key: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    raw = _required(values, key)
    try:
        first, last = (ipaddress.IPv4Address(part.strip()) for part in raw.split("-"))
    except ValueError:
        raise SettingsError(key, f"{raw!r} is not a range", "write it as first-last, e.g. 192.168.10.200-192.168.10.220") from None
    if first > last:
        raise SettingsError(key, f"{raw!r} starts after it ends", "write the lower address first")
    return first, last


def _choice(values: dict[str, Any], key: str, allowed: Iterable[str]) -> str:
    value = _required(values, key)
    if value not in allowed:
        raise SettingsError(key, f"{value!r} is not supported", f"use one of: {', '.join(allowed)}")
    return value


def _int_range(values: dict[str, Any], key: str, low: int, high: int) -> int:
    value = _required(values, key)
    if not low <= value <= high:
        raise SettingsError(key, f"{value} is out of range", f"use a number from {low} to {high}")
    return value


def _fraction(values: dict[str, Any], key: str) -> float:
    value = _required(values, key)
    if not 0 <= value < 1:
        raise SettingsError(key, f"{value} is not a fraction below 1", "write it like 0.01 (one percent)")
    return float(value)


def _str_list(values: dict[str, Any], key: str, allow_empty: bool = False) -> list[str]:
    value = _required(values, key)
    if not value and not allow_empty:
        raise SettingsError(key, "is empty", "list at least one entry")
    if not all(isinstance(v, str) and v for v in value):
        raise SettingsError(key, f"{value!r} must be a list of names", 'write it like ["0.debian.pool.ntp.org"]')
    return value


def _version(values: dict[str, Any], key: str) -> str:
    value = _required(values, key)
    if not _VERSION.match(value):
        raise SettingsError(key, f"{value!r} is not a full version", "write all three parts, e.g. 1.37.1 or v0.10.6")
    return value


def _artifacts(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    artifacts = _required(values, "artifacts")
    for name, spec in artifacts.items():
        key = f"artifacts.{name}"
        if not isinstance(spec, dict) or not {"version", "sha256", "url"} <= spec.keys():
            raise SettingsError(key, "needs version, sha256 and url", "see the other entries in group_data/all.py")
        if not _VERSION.match(str(spec["version"])):
            raise SettingsError(f"{key}.version", f"{spec['version']!r} is not a full version",
                                "write all three parts, e.g. 2.3.1")
        try:
            spec["url"].format(version=spec["version"])
        except (KeyError, IndexError, ValueError):
            raise SettingsError(f"{key}.url", f"{spec['url']!r} has a placeholder other than {{version}}",
                                "use {version} only, e.g. https://example.org/v{version}/tool.tar.gz") from None
        if spec["sha256"] != "" and not _SHA256.match(str(spec["sha256"])):
            raise SettingsError(f"{key}.sha256", f"{spec['sha256']!r} is not a sha256",
                                "use the 64 lower-case hex digits published with the release (sha256sum FILE)")
    return {name: dict(spec) for name, spec in artifacts.items()}


def _url(values: dict[str, Any], key: str) -> str:
    url = _required(values, key)
    if url and not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
        raise SettingsError(key, f"{url!r} is not an http(s) URL",
                            "write it like http://mirror.lab:8080/artifacts, or '' (see the settings table)")
    return url.rstrip("/")


def _mirror(values: dict[str, Any]) -> str:
    return _url(values, "artifact_mirror")


_IMAGE = re.compile(r"^[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)+:[A-Za-z0-9._-]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$")


def _registry_mirrors(values: dict[str, Any]) -> dict[str, str]:
    mirrors = _required(values, "image_registry_mirrors")
    for registry, mirror in mirrors.items():
        key = f"image_registry_mirrors.{registry}"
        if not isinstance(registry, str) or not _HOST_PORT.match(registry):
            raise SettingsError(key, f"{registry!r} is not a registry host name",
                                'use the registry as images name it, e.g. "registry.k8s.io" or "docker.io"')
        if not isinstance(mirror, str) or not mirror:
            raise SettingsError(key, "has no mirror URL", 'write it like "http://mirror.lab:5000"')
        _url({key: mirror}, key)
    return {registry: mirror.rstrip("/") for registry, mirror in mirrors.items()}


def _image(values: dict[str, Any], key: str) -> str:
    value = _required(values, key)
    if not _IMAGE.match(value):
        raise SettingsError(key, f"{value!r} is not an image reference with a tag",
                            "write it like registry.k8s.io/pause:3.10.1")
    return value


def _endpoint(values: dict[str, Any], key: str) -> str:
    value = _required(values, key)
    if value and not _HOST_PORT.match(value):
        raise SettingsError(key, f"{value!r} is not host[:port]",
                            "write a DNS name or address, optionally with :6443, or '' for the control-plane host")
    return value


# ------------------------------------------------------------------------------------------ lab-wide rules


def _check_host_roles(name: str, roles: tuple[str, ...]) -> None:
    if not roles:
        raise SettingsError("inventory", f"host {name} has no role",
                            "put it in one of the groups platform, control_plane, worker (or remove it)")
    if "control_plane" in roles and "worker" in roles:
        raise SettingsError("inventory", f"host {name} is in both control_plane and worker",
                            "keep it in one of them; the control plane runs no app workloads here")


def _check_roles(s: Settings) -> None:
    counts = {role: len(s.with_role(role)) for role in ROLES}
    if counts["control_plane"] == 0:
        raise SettingsError("inventory", "there is no control_plane host", "put exactly one host in control_plane")
    if counts["control_plane"] > 1:
        raise SettingsError("inventory", f"{counts['control_plane']} control_plane hosts; this codebase builds a "
                            "single control plane", "keep one host in control_plane and make the others workers")
    if counts["platform"] != 1:
        raise SettingsError("inventory", f"{counts['platform']} platform hosts", "put exactly one host in platform")
    if counts["worker"] == 0:
        raise SettingsError("inventory", "there is no worker host", "put at least one host in worker")


def _check_names_and_addresses(s: Settings) -> None:
    seen_addresses: dict[ipaddress.IPv4Address, str] = {}
    seen_names: dict[str, str] = {}
    for n in s.nodes:
        if n.address in seen_addresses:
            raise SettingsError("address", f"{n.address} is used by both {seen_addresses[n.address]} and {n.name}",
                                "give every host its own static address")
        seen_addresses[n.address] = n.name
        if n.hostname.lower() in seen_names:
            raise SettingsError("hostname", f"{n.hostname!r} is used by both {seen_names[n.hostname.lower()]} and "
                                f"{n.name}", "give every host its own name (names are case-insensitive)")
        seen_names[n.hostname.lower()] = n.name
        if n.address not in s.node_network:
            raise SettingsError("address", f"{n.address} of host {n.name} is outside node_network {s.node_network}",
                                "fix the address, or set node_network to the subnet your hosts are in")
        if n.address in (s.node_network.network_address, s.node_network.broadcast_address):
            raise SettingsError("address", f"{n.address} of host {n.name} is the network or broadcast address of "
                                f"{s.node_network}", "use a host address inside the subnet")
    for domain in (s.gitlab_domain, s.registry_domain):
        if domain.split(".")[0] in seen_names:
            raise SettingsError("gitlab_domain" if domain == s.gitlab_domain else "registry_domain",
                                f"{domain!r} clashes with the host name {domain.split('.')[0]!r}",
                                "rename the host or the service name")
    ingress_hosts = [s.storefront_host_dev, s.storefront_host_prod, s.argocd_host, s.grafana_host]
    if len(set(ingress_hosts)) != len(ingress_hosts):
        raise SettingsError("storefront_host_dev", f"the Ingress host names {ingress_hosts} are not all different",
                            "give the dev and prod storefronts, Argo CD and Grafana a name each")
    if s.gitlab_domain == s.registry_domain:
        raise SettingsError("registry_domain", "equals gitlab_domain",
                            "give the registry its own name, e.g. registry.local (its certificate and vhost differ)")


def _check_networks(s: Settings) -> None:
    ranges = {"node_network": s.node_network, "pod_cidr": s.pod_cidr, "service_cidr": s.service_cidr}
    names = list(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if ranges[a].overlaps(ranges[b]):
                key = b if b != "node_network" else a
                raise SettingsError(key, f"{ranges[b]} ({b}) overlaps {ranges[a]} ({a})",
                                    "choose non-overlapping ranges, e.g. pod_cidr 10.244.0.0/16 and service_cidr "
                                    "10.96.0.0/12 with a 192.168.x.0/24 node network")
    node_slots = 2 ** max(0, KUBEADM_POD_SUBNET_PER_NODE - s.pod_cidr.prefixlen)
    if s.pod_cidr.prefixlen > KUBEADM_POD_SUBNET_PER_NODE or node_slots < len(s.nodes):
        raise SettingsError("pod_cidr", f"{s.pod_cidr} holds {node_slots if s.pod_cidr.prefixlen <= 24 else 0} "
                            f"/24 node subnets for {len(s.nodes)} hosts", "use a larger range, e.g. a /16")
    first, last = s.metallb_pool
    if first not in s.node_network or last not in s.node_network:
        raise SettingsError("metallb_pool", f"{s.metallb_pool_range} is not inside node_network {s.node_network}",
                            "MetalLB L2 answers ARP on the node subnet: pick free addresses inside it")
    for n in s.nodes:
        if first <= n.address <= last:
            raise SettingsError("metallb_pool", f"{s.metallb_pool_range} contains {n.address} of host {n.name}",
                                "shrink the pool to free addresses that no host or DHCP lease uses")
    if first <= s.node_network.broadcast_address <= last or first <= s.node_network.network_address <= last:
        raise SettingsError("metallb_pool", f"{s.metallb_pool_range} includes the network or broadcast address",
                            "use addresses strictly inside the subnet")


def _check_time(s: Settings) -> None:
    if not s.ntp_upstream_servers and not s.ntp_local_stratum:
        raise SettingsError("ntp_upstream_servers", "is empty and ntp_local_stratum is 0, so nothing serves time",
                            "list upstream NTP servers, or set ntp_local_stratum (e.g. 10) for an isolated lab")


# ------------------------------------------------------------------------------------------- CLI hook


KUBERNETES_BINARIES = ("kubeadm", "kubelet", "kubectl")
# What each phase downloads; a missing entry would only fail halfway through the deploy.
REQUIRED_ARTIFACTS = ("containerd", "runc", "cni-plugins", *KUBERNETES_BINARIES, "argocd-install", "kubeseal")
# Downloads that depend on a choice: only the chosen one is fetched (and must be pinned).
CHOSEN_ARTIFACTS = {
    "cni": {"calico": "calico-chart", "cilium": "cilium-chart"},
    "storage_class": {"local-path": "local-path-provisioner", "nfs": "nfs-provisioner-chart"},
}


def unused_artifacts(choices: dict[str, str]) -> set[str]:
    """Artifacts of the options not chosen (choices: setting -> value, e.g. {"cni": "cilium", ...})."""
    return {artifact for key, options in CHOSEN_ARTIFACTS.items()
            for option, artifact in options.items() if option != choices[key]}


def _chosen(s: Settings) -> dict[str, str]:
    return {"cni": s.cni, "storage_class": s.storage_class}


def _check_kubernetes_artifacts(s: Settings) -> None:
    chosen = [options[_chosen(s)[key]] for key, options in CHOSEN_ARTIFACTS.items()]
    for name in (*REQUIRED_ARTIFACTS, *chosen):
        if name not in s.artifacts:
            raise SettingsError(f"artifacts.{name}", "is missing", "copy its entry from group_data/all.py of this repo")
    for name in KUBERNETES_BINARIES:
        if s.artifacts[name]["version"].lstrip("v") != s.kubernetes_version.lstrip("v"):
            raise SettingsError(f"artifacts.{name}.version",
                                f"{s.artifacts[name]['version']} differs from kubernetes_version {s.kubernetes_version}",
                                "bump them together (and pin the new sha256s)")


def require_pinned_artifacts(settings: Settings) -> None:
    """A deploy never downloads an unpinned file. group_data ships versions and URLs; the sha256 of each
    upstream release file is filled in by tools/pin_artifacts.py (or by hand) before the first deploy."""
    unused = unused_artifacts(_chosen(settings))
    for name, spec in settings.artifacts.items():
        if name in unused:
            continue  # an option not chosen: never downloaded
        if not spec["sha256"]:
            raise SettingsError(
                f"artifacts.{name}.sha256", f"{name} {spec['version']} is not pinned yet",
                "run `python3 tools/pin_artifacts.py` on a machine that reaches the release sites (it writes every "
                "sha256 into group_data/all.py), or copy the published checksum by hand (README: Pinning artifacts)")


def validate_before_connect(state: Any, on_error: Callable[[str], Exception]) -> None:
    """Make the pyinfra CLI validate the whole inventory before its first connection.

    The CLI loads config.py, then the inventory file and group_data, then calls `state.init(inventory)`,
    then connects. Right after `state.init` is the earliest point that sees the merged data, and it is
    still in the main flow, so the error reaches the user as pyinfra's own one-line error.
    """
    original_init = state.init

    def init_then_validate(inventory: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            require_pinned_artifacts(load_settings(inventory))
        except SettingsError as exc:
            raise on_error(str(exc)) from None
        return original_init(inventory, *args, **kwargs)

    state.init = init_then_validate
