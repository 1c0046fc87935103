"""One validated view of the settings, built from the pyinfra inventory and group_data before any host is touched.

Every key is declared exactly once, below, as a field of `Settings` (lab-wide keys) or `Node` (per-host keys):
its type, the parser that validates it, and a one-line description. group_data/all.py and the role files
hold the defaults a user edits; docs/settings.md is generated from these declarations and those defaults
(tools/settings_reference.py; a test fails when they differ).

A bad value raises `SettingsError`, whose message is one line: the key, the file it was set in, what is
wrong, and a fix whose example is itself a valid value. Every task reads `Settings`, never raw host data.

Scopes: a lab-wide key has one value for the whole lab (group_data/all.py, or the inventory's group data); a
host that overrides it with a different value is an error. A host key may differ per host (inventory entry
or the role's group_data file): address, labels, minimums.
"""

from __future__ import annotations

import contextlib
import difflib
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
GROUP_DATA_DIR = REPO / "group_data"
ROLES = ("platform", "control_plane", "worker")
CNIS = ("calico", "cilium")
STORAGE_CLASSES = ("local-path", "nfs")
INGRESS_CONTROLLERS = ("traefik", "ingress-nginx")
LOG_SHIPPERS = ("alloy", "promtail")
# Components still offered because a site may run them, retired upstream: printed whenever a deploy uses one.
RETIRED = {
    ("ingress_controller", "ingress-nginx"): (
        "ingress-nginx was retired upstream in March 2026 (final chart 4.15.1, controller 1.15.1): it gets no "
        'security fixes. ingress_controller = "traefik" is the maintained choice (docs/gitops-repo.md)'
    ),
    ("log_shipper", "promtail"): (
        "Promtail reached end of life in March 2026 (final chart 6.17.1): it gets no fixes. "
        'log_shipper = "alloy" (Grafana Alloy, its successor) is the maintained choice (docs/observability.md)'
    ),
}
KUBE_PROXY_MODES = ("iptables", "ipvs", "nftables")
KUBEADM_POD_SUBNET_PER_NODE = 24  # kube-controller-manager's default --node-cidr-mask-size for IPv4

_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")
_IMAGE = re.compile(r"^[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)+:[A-Za-z0-9._-]+$")
_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+(?::\d{1,5})?$")

NO_EXAMPLE = object()

# Valid values of keys whose examples do not depend on the rest of the settings. For names and networks they
# are the defaults group_data/all.py ships (a test keeps them equal), so a clash can tell which key changed.
EXAMPLES = {
    "gitlab_domain": "gitlab.local",
    "registry_domain": "registry.local",
    "storefront_host_dev": "dev.boutique.local",
    "storefront_host_prod": "boutique.local",
    "argocd_host": "argocd.local",
    "grafana_host": "grafana.local",
    "node_network": "192.168.10.0/24",
    "pod_cidr": "10.244.0.0/16",
    "service_cidr": "10.96.0.0/12",
    "kubernetes_version": "1.37.2",
    "online_boutique_version": "v0.10.6",
    "gitlab_version": "19.6.0",
    "gitlab_runner_version": "19.6.0",
}


class SettingsError(ValueError):
    """A setting is wrong. str() is one line: key, source, problem, fix (with a valid example where one helps).

    `example` is a value that fixes this error when written as `key = example` (for a host key, on `host`)."""

    def __init__(
        self, key: str, problem: str, fix: str, source: str = "", example: Any = NO_EXAMPLE, host: str = ""
    ) -> None:
        self.key, self.problem, self.fix, self.source, self.example, self.host = (
            key,
            problem,
            fix,
            source,
            example,
            host,
        )
        where = f" ({source})" if source else ""
        eg = "" if example is NO_EXAMPLE else f", e.g. {example!r}" if "." in key else f", e.g. {key} = {example!r}"
        super().__init__(f"setting {key}{where}: {problem}. Fix: {fix}{eg}")

    def with_source(self, source: str) -> SettingsError:
        return SettingsError(self.key, self.problem, self.fix, source, self.example, self.host)


# ------------------------------------------------------------------------------------------ declarations

Parser = Callable[[dict[str, Any], str], Any]


@dataclass(frozen=True)
class Key:
    scope: str  # "cluster" or "host"
    kind: type | tuple[type, ...]
    parse: Parser
    doc: str


def setting(
    kind: type | tuple[type, ...], parse: Parser, doc: str, scope: str = "cluster", default: Any = MISSING
) -> Any:
    """A declared key: a dataclass field carrying its type, parser and one-line description."""
    return field(default=default, metadata={"key": Key(scope, kind, parse, doc)})


_KIND_PHRASES = {
    int: "a whole number without quotes",
    float: "a number without quotes",
    str: "a quoted string",
    bool: "True or False (no quotes)",
    list: "a list in square brackets",
    dict: "a mapping of name to value in curly braces",
}


def _coerced(value: Any, kind: type) -> Any:
    """What the user most likely meant by a value of the wrong type (NO_EXAMPLE when unclear)."""
    try:
        if kind is bool and isinstance(value, str) and value.lower() in ("yes", "true", "on", "no", "false", "off"):
            return value.lower() in ("yes", "true", "on")
        if kind in (int, float) and isinstance(value, str) and not isinstance(value, bool):
            return kind(value)
        if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if kind is list and isinstance(value, str):
            return [value]
    except ValueError:
        pass
    return NO_EXAMPLE


def _required(values: dict[str, Any], key: str, host: str = "") -> Any:
    if key not in values:
        spec = SCHEMA[key]
        on = f" for host {host}" if host else ""
        where = "group_data/<role>.py or the inventory" if spec.scope == "host" else "group_data/all.py"
        raise SettingsError(key, f"is missing{on}", f"set it in {where} ({spec.doc})", host=host)
    return values[key]


def _as_is(values: dict[str, Any], key: str) -> Any:
    return _required(values, key)


def _int_range(low: int, high: int) -> Parser:
    def parse(values: dict[str, Any], key: str) -> int:
        value = _required(values, key)
        if not low <= value <= high:
            raise SettingsError(
                key,
                f"{value} is out of range",
                f"use a number from {low} to {high}",
                example=min(max(value, low), high),
            )
        return int(value)

    return parse


def _choice(allowed: Iterable[str]) -> Parser:
    options = tuple(allowed)

    def parse(values: dict[str, Any], key: str) -> str:
        value = _required(values, key)
        if value not in options:
            close = difflib.get_close_matches(str(value), options, n=1)
            raise SettingsError(
                key,
                f"{value!r} is not supported",
                f"use one of: {', '.join(options)}",
                example=close[0] if close else options[0],
            )
        return str(value)

    return parse


def _str_list(allow_empty: bool, example: list[str]) -> Parser:
    def parse(values: dict[str, Any], key: str) -> tuple[str, ...]:
        value = _required(values, key)
        if not value and not allow_empty:
            raise SettingsError(key, "is empty", "list at least one entry", example=example)
        if not all(isinstance(v, str) and v for v in value):
            raise SettingsError(
                key, f"{value!r} must be a list of non-empty strings", "quote each entry", example=example
            )
        return tuple(value)

    return parse


def _matching(
    values: dict[str, Any], key: str, valid: Callable[[Any], Any], problem: str, fix: str, example: Any
) -> str:
    """A string value that `valid` accepts; otherwise "<value> <problem>" with the fix and example."""
    value = _required(values, key)
    if not valid(value):
        raise SettingsError(key, f"{value!r} {problem}", fix, example=example)
    return str(value)


def _domain(values: dict[str, Any], key: str) -> str:
    return _matching(
        values,
        key,
        lambda d: len(d.split(".")) >= 2 and all(_DNS_LABEL.match(x) for x in d.split(".")),
        "is not a valid DNS name",
        "use a lower-case name with a dot",
        EXAMPLES.get(key, "service.local"),
    )


def _label(values: dict[str, Any], key: str) -> str:
    value = str(values.get(key, ""))
    return _matching(
        values,
        key,
        _DNS_LABEL.match,
        "is not a valid name",
        "use lower-case letters, digits and '-'",
        re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-") or "lab",
    )


def _network(values: dict[str, Any], key: str) -> ipaddress.IPv4Network:
    raw = _required(values, key)
    try:
        return ipaddress.IPv4Network(raw)
    except ipaddress.AddressValueError:
        if ":" in str(raw):
            raise SettingsError(
                key,
                f"{raw!r} is an IPv6 network; this codebase supports IPv4 only",
                "use an IPv4 range",
                example=EXAMPLES[key],
            ) from None
        raise SettingsError(
            key, f"{raw!r} is not an IPv4 network", "write it in CIDR form", example=EXAMPLES[key]
        ) from None
    except ValueError as exc:
        strict = ipaddress.IPv4Network(raw, strict=False) if "host bits" in str(exc) else None
        raise SettingsError(
            key,
            f"{raw!r} is not an IPv4 network ({exc})",
            "write it in CIDR form with the host bits zero",
            example=str(strict) if strict else EXAMPLES[key],
        ) from None


def _pool(values: dict[str, Any], key: str) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]:
    raw = _required(values, key)
    try:
        first, last = (ipaddress.IPv4Address(part.strip()) for part in raw.split("-"))
    except ValueError:
        raise SettingsError(
            key, f"{raw!r} is not a range", "write it as first-last", example="192.168.10.200-192.168.10.220"
        ) from None
    if first > last:
        raise SettingsError(
            key, f"{raw!r} starts after it ends", "write the lower address first", example=f"{last}-{first}"
        )
    return first, last


def _fraction(values: dict[str, Any], key: str) -> float:
    value = _required(values, key)
    if not 0 <= value < 1:
        raise SettingsError(
            key,
            f"{value} is not a fraction below 1",
            "write one percent as 0.01",
            example=value / 100 if 1 <= value < 100 else 0.01,
        )
    return float(value)


def _version(values: dict[str, Any], key: str) -> str:
    example = EXAMPLES.get(key, "1.37.2")
    return _matching(values, key, _VERSION.match, "is not a full version", "write all three parts", example)


def _number_triple(version: str) -> tuple[int, int, int]:
    major, minor, patch = re.split(r"[.+-]", version.lstrip("v"))[:3]
    return int(major), int(minor), int(patch)


# The oldest Kubernetes release this codebase's kubeadm configuration (v1beta4 with failCgroupV1) and its
# containerd 2.x runtime are made for; upstream supports the three newest minors (1.35-1.37 in 2026-12).
KUBERNETES_MIN = (1, 35, 0)


def _kubernetes_version(values: dict[str, Any], key: str) -> str:
    value = _version(values, key)
    if value.startswith("v"):
        raise SettingsError(
            key, f"{value!r} has a leading v", "write the bare release (the templates add the v)", example=value[1:]
        )
    if not re.fullmatch(r"\d+\.\d+\.\d+", value):
        raise SettingsError(key, f"{value!r} is not a release", "write a released X.Y.Z", example="1.37.2")
    if _number_triple(value) < KUBERNETES_MIN:
        raise SettingsError(
            key,
            f"{value} is older than {'.'.join(map(str, KUBERNETES_MIN))}, the oldest release "
            "this codebase's kubeadm configuration and containerd 2.x runtime support",
            "use a supported release",
            example="1.37.2",
        )
    return value


def _package_version(values: dict[str, Any], key: str) -> str:
    value = _version(values, key)
    if not re.fullmatch(r"\d+\.\d+\.\d+", value):
        bare = re.match(r"v?(\d+\.\d+\.\d+)", value)
        raise SettingsError(
            key,
            f"{value!r} is not the bare X.Y.Z release (the deploy adds the package's distribution suffix itself)",
            "write only the release",
            example=bare.group(1) if bare else EXAMPLES[key],
        )
    return value


def _release_tag(values: dict[str, Any], key: str) -> str:
    value = _version(values, key)
    if not re.fullmatch(r"v\d+\.\d+\.\d+", value):
        raise SettingsError(
            key,
            f"{value!r} is not a release tag as upstream spells it (vX.Y.Z)",
            "write the tag of the release",
            example="v" + ".".join(map(str, _number_triple(value))),
        )
    return value


def _url(values: dict[str, Any], key: str) -> str:
    url = _required(values, key)
    if url and not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
        raise SettingsError(
            key,
            f"{url!r} is not an http(s) URL",
            "write the scheme and host, or '' for none",
            example=f"http://{url}" if "://" not in url and url else "http://mirror.lab:8080",
        )
    return str(url).rstrip("/")


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _node_url(values: dict[str, Any], key: str) -> str:
    """A URL the hosts fetch from: `localhost` there is the host itself, not the operator's machine."""
    url = _url(values, key)
    if url and _loopback(url):
        raise SettingsError(
            key,
            f"{url!r} is on loopback, but the hosts download from it (on a host, localhost is the host itself)",
            "use an address or name the hosts reach",
            example=url.replace(urlsplit(url).hostname or "", "mirror.lab", 1),
        )
    return url


def _artifacts(values: dict[str, Any], key: str) -> dict[str, dict[str, str]]:
    artifacts = _required(values, key)
    for name, spec in artifacts.items():
        where = f"{key}.{name}"
        if not isinstance(spec, dict) or not {"version", "url"} <= spec.keys():
            raise SettingsError(where, "needs version and url", "copy the entry's shape from group_data/all.py")
        if not _VERSION.match(str(spec["version"])):
            raise SettingsError(
                f"{where}.version",
                f"{spec['version']!r} is not a full version",
                "write all three parts",
                example="2.3.7",
            )
        if str(spec["version"]).startswith("v"):
            raise SettingsError(
                f"{where}.version",
                f"{spec['version']!r} has a leading v",
                "write the bare release (the URL adds the v where the release needs it)",
                example=str(spec["version"])[1:],
            )
        try:
            url = spec["url"].format(version=spec["version"])
        except (KeyError, IndexError, ValueError):
            raise SettingsError(
                f"{where}.url",
                f"{spec['url']!r} has a placeholder other than {{version}}",
                "use {version} only",
                example="https://example.org/v{version}/tool.tar.gz",
            ) from None
        if not re.match(r"^https?://[^/\s]+/\S+$", url):
            raise SettingsError(
                f"{where}.url",
                f"{spec['url']!r} is not an http(s) URL of a file",
                "write the release file's full URL with its scheme",
                example="https://" + spec["url"]
                if "://" not in spec["url"]
                else "https://example.org/v{version}/tool.tar.gz",
            )
    return {name: {"checksums": "", **spec, "sha256": ""} for name, spec in artifacts.items()}


def _registry_mirrors(values: dict[str, Any], key: str) -> dict[str, str]:
    mirrors = _required(values, key)
    for registry, mirror in mirrors.items():
        where = f"{key}.{registry}"
        if not isinstance(registry, str) or not _HOST_PORT.match(registry):
            raise SettingsError(
                where,
                f"{registry!r} is not a registry host name",
                "use the registry as images name it",
                example={"registry.k8s.io": "https://registry.local"},
            )
        if not isinstance(mirror, str) or not mirror:
            raise SettingsError(where, "has no mirror URL", "write the mirror's URL", example="https://registry.local")
        _node_url({where: mirror}, where)
    return {registry: mirror.rstrip("/") for registry, mirror in mirrors.items()}


def _image(values: dict[str, Any], key: str) -> str:
    problem, fix = "is not an image reference with a tag", "name the registry and tag"
    return _matching(values, key, _IMAGE.match, problem, fix, "registry.k8s.io/pause:3.10.2")


def _images(values: dict[str, Any], key: str) -> dict[str, dict[str, str]]:
    """name -> upstream reference `registry/path:tag` (digests come from the images lock, never from here)."""
    images = _required(values, key)
    for name, ref in images.items():
        if isinstance(ref, str) and _IMAGE.match(ref) and "." in ref.split("/")[0]:
            continue
        # Docker's default registry is the one a reference without a registry means; a missing tag has no guess.
        tagged = isinstance(ref, str) and re.search(r":[\w.-]+$", ref.split("/")[-1])
        example = f"docker.io/{ref}" if tagged and _IMAGE.match(f"docker.io/{ref}") else NO_EXAMPLE
        raise SettingsError(
            f"{key}.{name}",
            f"{ref!r} is not a reference with its registry and tag",
            "write registry/path:tag as upstream publishes it (the digest goes into the images lock)",
            example=example,
        )
    return {name: {"ref": ref, "digest": ""} for name, ref in images.items()}


def _left_out(known_names: Callable[[], Iterable[str]], unknown: str, what: str) -> Parser:
    """Parser of a `name -> reason` setting whose names are `known_names()` (each reason is printed by every
    deploy, so it must say something)."""

    def parse(values: dict[str, Any], key: str) -> dict[str, str]:
        entries = _required(values, key)
        known = tuple(known_names())
        for name, reason in entries.items():
            if name not in known:
                raise SettingsError(
                    f"{key}.{name}", unknown, f"use one of {what}: {', '.join(known)}", example=NO_EXAMPLE
                )
            if not isinstance(reason, str) or not reason.strip():
                raise SettingsError(
                    f"{key}.{name}",
                    "gives no reason",
                    "say why it is left out: every deploy prints it",
                    example="its software cannot run at this site",
                )
        return {name: reason.strip() for name, reason in entries.items()}

    return parse


def _application_names() -> list[str]:
    from tasks.gitops_repo import application_names  # (it imports this module: read at validation time)

    return application_names()


# Parts of kube-prometheus-stack a site can leave out (monitoring_left_out), for software it cannot run.
MONITORING_PARTS = ("grafana", "admission-webhooks")


def _mirror_project(values: dict[str, Any], key: str) -> str:
    value = _required(values, key)
    if value and not _DNS_LABEL.match(value):
        raise SettingsError(
            key, f"{value!r} is not a project name", "use lower-case letters, digits and '-', or ''", example="mirror"
        )
    return str(value)


def _preflight_errors(values: dict[str, Any], key: str) -> tuple[str, ...]:
    checks = _str_list(True, ["SystemVerification"])(values, key)
    for check in checks:
        if check.lower() == "all":
            raise SettingsError(
                key,
                "'all' would hide every failed kubeadm preflight check",
                "name each check to ignore, with the reason in a comment",
                example=["SystemVerification"],
            )
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", check):
            raise SettingsError(
                key,
                f"{check!r} is not a kubeadm preflight check name",
                "use the name kubeadm prints in [ERROR Name]",
                example=["SystemVerification"],
            )
    return checks


EVICTION_SIGNALS = (
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
)
KUBELET_EVICTION_DEFAULTS = {
    "memory.available": "100Mi",
    "nodefs.available": "10%",
    "nodefs.inodesFree": "5%",
    "imagefs.available": "15%",
    "imagefs.inodesFree": "5%",
}
# kubeadm's timeouts (v1beta4 `timeouts`, shared by init and join) and its defaults, in seconds.
KUBEADM_TIMEOUT_DEFAULTS = {
    "controlPlaneComponentHealthCheck": 240,
    "kubeletHealthCheck": 240,
    "kubernetesAPICall": 60,
    "etcdAPICall": 120,
    "tlsBootstrap": 300,
    "discovery": 300,
}
_EVICTION_VALUE = re.compile(r"(\d+(\.\d+)?%|\d+(Ki|Mi|Gi|Ti|k|M|G|T)?)")


def _keyed(values: dict[str, Any], key: str, names: Iterable[str], shape: str, name_is: str, example: Any) -> dict:
    """A mapping whose keys must be among `names` (its values are each caller's to check)."""
    mapping = _required(values, key)
    if not isinstance(mapping, dict):
        raise SettingsError(key, f"must be a mapping of {shape}", "write one entry per name", example=example)
    for name in mapping:
        if name not in names:
            raise SettingsError(f"{key}.{name}", f"{name!r} is not {name_is}", f"use one of {', '.join(names)}")
    return mapping


def _kubeadm_timeouts(values: dict[str, Any], key: str) -> dict[str, int]:
    timeouts = _keyed(
        values, key, KUBEADM_TIMEOUT_DEFAULTS, "kubeadm timeout to seconds", "one of kubeadm's timeouts", {}
    )
    for name, seconds in timeouts.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int) or not 10 <= seconds <= 3600:
            raise SettingsError(
                f"{key}.{name}",
                f"{seconds!r} is not a number of seconds from 10 to 3600",
                "write whole seconds",
                example=KUBEADM_TIMEOUT_DEFAULTS[name],
            )
    return dict(timeouts)


def _eviction_hard(values: dict[str, Any], key: str) -> dict[str, str]:
    thresholds = _keyed(
        values,
        key,
        EVICTION_SIGNALS,
        "eviction signal to threshold",
        "a kubelet eviction signal",
        KUBELET_EVICTION_DEFAULTS,
    )
    for signal, threshold in thresholds.items():
        if not isinstance(threshold, str) or not _EVICTION_VALUE.fullmatch(threshold):
            raise SettingsError(
                f"{key}.{signal}",
                f"{threshold!r} is neither a percentage nor a quantity",
                "write a percentage of the filesystem or memory, or a quantity",
                example=KUBELET_EVICTION_DEFAULTS[signal],
            )
    missing = [s for s in EVICTION_SIGNALS if s not in thresholds]
    if missing:
        raise SettingsError(
            f"{key}.{missing[0]}",
            "is missing, and the kubelet enforces no threshold at all for a signal left out of evictionHard",
            "name every signal (the kubelet's default for this one is shown)",
            example=KUBELET_EVICTION_DEFAULTS[missing[0]],
        )
    return {signal: thresholds[signal] for signal in EVICTION_SIGNALS}


def _endpoint(values: dict[str, Any], key: str) -> str:
    value = _required(values, key)
    fix = "write a DNS name or IPv4 address, optionally with :6443, or '' for the control-plane host"
    if "://" not in value and (value.count(":") > 1 or value.startswith("[")):
        raise SettingsError(
            key, f"{value!r} is an IPv6 endpoint; this codebase supports IPv4 only", fix, example="api.lab.example:6443"
        )
    if value and not _HOST_PORT.match(value):
        host = re.sub(r"^[a-z]+://", "", value).split("/")[0]
        raise SettingsError(
            key,
            f"{value!r} is not host[:port] (no scheme, no path)",
            fix,
            example=host if _HOST_PORT.match(host) else "api.lab.example:6443",
        )
    host, _, port = value.partition(":")
    if port and not 1 <= int(port) <= 65535:
        raise SettingsError(key, f"port {port} is outside 1-65535", fix, example=f"{host}:6443")
    return str(value)


def _sans(values: dict[str, Any], key: str) -> tuple[str, ...]:
    sans = _str_list(True, ["api.lab.example"])(values, key)
    for san in sans:
        try:
            ipaddress.ip_address(san)
            continue
        except ValueError:
            pass
        labels = san.removeprefix("*.").split(".")
        if not all(_DNS_LABEL.match(label) for label in labels):
            raise SettingsError(
                key,
                f"{san!r} is neither an IP address nor a DNS name",
                "list only IP addresses and lower-case DNS names (a certificate can name nothing else)",
                example=[s for s in sans if s != san] or ["api.lab.example"],
            )
    return sans


def _service_cidr(values: dict[str, Any], key: str) -> ipaddress.IPv4Network:
    network = _network(values, key)
    # kube-apiserver refuses a range larger than /12; kubeadm gives CoreDNS the 10th address (a /28 or more).
    if not 12 <= network.prefixlen <= 28:
        raise SettingsError(
            key,
            f"{network} is {'larger than /12' if network.prefixlen < 12 else 'smaller than /28'}, "
            "which kube-apiserver and kubeadm refuse",
            "use a range from /12 to /28",
            example=str(
                next(network.subnets(new_prefix=12))
                if network.prefixlen < 12
                else ipaddress.IPv4Network(f"{network.network_address}/24", strict=False)
            ),
        )
    return network


def _state_dir(values: dict[str, Any], key: str) -> str:
    """Secrets go there: never a folder Git tracks. `~` is not expanded (pyinfra's data is not a shell)."""
    value = str(_required(values, key))
    fix = "use a folder under the git-ignored state/ (or an absolute path outside the repository)"
    if not value.strip():
        raise SettingsError(
            key, "is empty, which would put the secrets in the repository's root", fix, example="state/lab"
        )
    if value.startswith("~"):
        raise SettingsError(
            key,
            f"{value!r} starts with ~, which is not expanded here",
            fix + " and write it out",
            example=str(Path.home() / value.lstrip("~/")) if value.startswith("~/") else "state/lab",
        )
    path = (Path(value) if Path(value).is_absolute() else REPO / value).resolve()
    if (path == REPO or REPO in path.parents) and not _git_ignored(path):
        raise SettingsError(
            key,
            f"{value!r} is inside the repository and not git-ignored, so secrets could be committed",
            fix,
            example="state/" + (path.name if path != REPO else "lab"),
        )
    return value


def _git_ignored(path: Path) -> bool:
    """Whether Git ignores `path` in this repository (without git or outside a checkout: only state/ counts)."""

    relative = path.relative_to(REPO).as_posix()
    if shutil.which("git") and (REPO / ".git").exists():
        probe = f"{relative}/.gitops-lab-probe"
        return (
            subprocess.run(
                ["git", "-C", str(REPO), "check-ignore", "-q", "--no-index", probe], capture_output=True
            ).returncode
            == 0
        )
    return relative == "state" or relative.startswith("state/")


# ---- host keys (the node's name is filled in as the default of `hostname`)


def _address(values: dict[str, Any], key: str) -> ipaddress.IPv4Address:
    raw = _required(values, key)
    try:
        return ipaddress.IPv4Address(raw)
    except ValueError:
        v6 = ":" in str(raw)
        raise SettingsError(
            key,
            f"{raw!r} is " + ("an IPv6 address; this codebase supports IPv4 only" if v6 else "not an IPv4 address"),
            "write the host's static IPv4 address",
            example="192.168.10.12",
        ) from None


def _hostname(values: dict[str, Any], key: str) -> str:
    hostname = _required(values, key)
    if not _DNS_LABEL.match(hostname):
        raise SettingsError(
            key,
            f"{hostname!r} is not a valid host name",
            "use lower-case letters, digits and '-' (no '_' or dots), at most 63 characters",
            example=re.sub(r"[^a-z0-9-]+", "-", hostname.lower()).strip("-")[:63] or "node",
        )
    return str(hostname)


def _labels(values: dict[str, Any], key: str) -> dict[str, str]:
    labels = _required(values, key)
    example = {"lab.gitops/role": "worker"}
    for label, value in labels.items():
        prefix, _, name = str(label).rpartition("/")
        valid_prefix = not prefix or all(_DNS_LABEL.match(p) for p in prefix.split(".")) and len(prefix) <= 253
        if not (isinstance(label, str) and valid_prefix and _LABEL_NAME.match(name)):
            raise SettingsError(
                key,
                f"label key {label!r} is not a valid Kubernetes label key",
                "use [prefix/]name with name of at most 63 letters, digits, '-', '_', '.'",
                example=example,
            )
        if not (isinstance(value, str) and _LABEL_VALUE.match(value)):
            raise SettingsError(
                key,
                f"label {label}={value!r} has an invalid value",
                "use a string of at most 63 letters, digits, '-', '_', '.' (or empty)",
                example=example,
            )
    return dict(labels)


def _positive(values: dict[str, Any], key: str) -> int:
    value = _required(values, key)
    if value < 0:
        raise SettingsError(key, f"{value} is negative", "use 0 or more", example=0)
    return int(value)


# ------------------------------------------------------------------------------------------ the settings


@dataclass(frozen=True)
class Node:
    name: str
    roles: tuple[str, ...]
    address: ipaddress.IPv4Address = setting(
        str, _address, "static IPv4 address of the host on the lab network", "host"
    )
    hostname: str = setting(str, _hostname, "host name to set (default: the inventory name)", "host")
    node_labels: dict[str, str] = setting(
        dict, _labels, "Kubernetes labels for the node (control_plane/worker)", "host"
    )
    memory_hard_min_mb: int = setting(int, _positive, "refuse the host below this much memory (MiB)", "host")
    memory_soft_min_mb: int = setting(int, _positive, "warn below this much memory (MiB)", "host")
    cpu_min: int = setting(int, _positive, "refuse the host below this many CPUs", "host")
    disk_soft_min_gb: int = setting(int, _positive, "warn below this much free space on / (GiB)", "host")

    def has_role(self, role: str) -> bool:
        return role in self.roles


@dataclass(frozen=True)
class Settings:
    nodes: tuple[Node, ...]
    # ---- names: resolved through /etc/hosts on every host
    gitlab_domain: str = setting(str, _domain, "GitLab's name, resolved via /etc/hosts to the platform host")
    registry_domain: str = setting(str, _domain, "the Container Registry's name, also pointing at the platform host")
    gitlab_group: str = setting(str, _label, "GitLab group holding app-repo and gitops-repo (also the image path)")
    storefront_host_dev: str = setting(str, _domain, "host name of the dev storefront Ingress")
    storefront_host_prod: str = setting(str, _domain, "host name of the prod storefront Ingress")
    argocd_host: str = setting(str, _domain, "host name of the Argo CD UI Ingress")
    grafana_host: str = setting(str, _domain, "host name of the Grafana Ingress")
    ingress_controller: str = setting(
        str, _choice(INGRESS_CONTROLLERS), "ingress controller: traefik, or ingress-nginx (retired upstream)"
    )
    ingress_class: str = setting(str, _label, "IngressClass the ingress controller registers, used by every Ingress")
    log_shipper: str = setting(
        str, _choice(LOG_SHIPPERS), "what ships pod logs to Loki: alloy, or promtail (end of life upstream)"
    )
    # ---- the hosts' network and time
    node_network: ipaddress.IPv4Network = setting(str, _network, "the subnet all host addresses live in (CIDR)")
    ntp_upstream_servers: tuple[str, ...] = setting(
        list, _str_list(True, ["0.debian.pool.ntp.org"]), "NTP servers the platform host follows"
    )
    ntp_local_stratum: int = setting(
        int, _int_range(0, 15), "stratum the platform serves when upstream is unreachable (0: off)"
    )
    # ---- Kubernetes networking
    pod_cidr: ipaddress.IPv4Network = setting(str, _network, "pod network (CIDR); each node gets a /24 of it")
    service_cidr: ipaddress.IPv4Network = setting(str, _service_cidr, "Service ClusterIP range (CIDR, /12 to /28)")
    metallb_pool: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] = setting(
        str, _pool, "MetalLB L2 pool, `first-last` inside node_network, used by no host"
    )
    cni: str = setting(str, _choice(CNIS), "pod network: calico or cilium")
    kube_proxy_mode: str = setting(str, _choice(KUBE_PROXY_MODES), "kube-proxy mode: iptables, ipvs or nftables")
    storage_class: str = setting(str, _choice(STORAGE_CLASSES), "default StorageClass: local-path or nfs")
    # ---- versions and downloads
    kubernetes_version: str = setting(
        str, _kubernetes_version, "Kubernetes release (X.Y.Z, 1.35 or newer); kubeadm/kubelet/kubectl match it"
    )
    online_boutique_version: str = setting(
        str, _release_tag, "Online Boutique release tag imported into app-repo (vX.Y.Z)"
    )
    artifacts: dict[str, dict[str, str]] = setting(
        dict, _artifacts, "every download: name -> version, url (with {version}), checksums (published file)"
    )
    artifacts_lock: str = setting(
        str,
        _as_is,
        "the lock file with each download's sha256 (tools/pin_artifacts.py writes it; relative to the repository)",
    )
    artifact_mirror: str = setting(
        str, _node_url, "base URL every download is fetched from instead of upstream ('' = upstream)"
    )
    image_registry_mirrors: dict[str, str] = setting(
        dict, _registry_mirrors, "container registry -> mirror URL containerd pulls from first"
    )
    images: dict[str, dict[str, str]] = setting(
        dict, _images, "every container image the cluster and post-bootstrap use: name -> upstream registry/path:tag"
    )
    image_overrides: dict[str, dict[str, str]] = setting(
        dict,
        _images,
        "catalog images replaced by another build: name -> registry/path:tag (where the release a manifest names "
        "cannot be had; the pod specs that name the original are rewritten)",
    )
    images_lock: str = setting(
        str,
        _as_is,
        "the lock file with each image's digest (tools/pin_artifacts.py --images "
        "writes it; relative to the repository)",
    )
    image_mirror_project: str = setting(
        str,
        _mirror_project,
        "GitLab project whose registry holds copies of every upstream image the nodes pull "
        "('' = the nodes pull from upstream)",
    )
    # ---- the Kubernetes API and nodes
    control_plane_endpoint: str = setting(
        str, _endpoint, "stable API address host[:port] ('' = the control-plane host, port 6443)"
    )
    api_server_extra_sans: tuple[str, ...] = setting(list, _sans, "extra names/addresses in the API server certificate")
    kubelet_fail_cgroup_v1: bool = setting(bool, _as_is, "kubelet refuses cgroup v1 hosts (Kubernetes 1.35+ default)")
    kubelet_eviction_hard: dict[str, str] = setting(
        dict, _eviction_hard, "the kubelet's hard eviction thresholds (evictionHard), every signal named"
    )
    kubeadm_ignore_preflight_errors: tuple[str, ...] = setting(
        list, _preflight_errors, "kubeadm preflight checks whose failure init and join accept (each with its reason)"
    )
    kubeadm_timeouts: dict[str, int] = setting(
        dict, _kubeadm_timeouts, "kubeadm init's and join's timeouts in seconds, by name ({}: kubeadm's defaults)"
    )
    cni_values: dict = setting(dict, _as_is, "Helm values merged over the deploy's own for the CNI's chart")
    argocd_install: bool = setting(
        bool,
        _as_is,
        "install Argo CD and hand the platform to it (False: post-bootstrap stops after the CNI, storage and labels)",
    )
    argocd_dex: bool = setting(
        bool,
        _as_is,
        "run Argo CD's Dex (SSO through an identity provider); False installs Argo CD without it (local users only)",
    )
    helm_chart_mirror: str = setting(
        str,
        _node_url,
        "one Helm repository that serves every platform chart at its pinned version, which Argo CD pulls from "
        "instead of each chart's upstream repository ('' = upstream)",
    )
    gitops_apps_left_out: dict[str, str] = setting(
        dict,
        _left_out(_application_names, "names no Application of the gitops repository", "its names"),
        "Applications of the gitops repository left out of what Argo CD installs: name -> reason (printed by every "
        "deploy; {}: none left out)",
    )
    monitoring_left_out: dict[str, str] = setting(
        dict,
        _left_out(
            lambda: MONITORING_PARTS, "is not a part of kube-prometheus-stack this deploy can leave out", "the parts"
        ),
        "parts of kube-prometheus-stack left out: grafana and/or admission-webhooks (the operator's webhook and "
        "the job making its certificate) -> reason (printed by every deploy; {}: none left out)",
    )
    alert_group_interval_s: int = setting(
        int,
        _int_range(10, 3600),
        "how long Alertmanager waits before it notifies Slack again about an alert group it already notified "
        "(a new alert in it, or its alerts resolved), in seconds",
    )
    node_ready_timeout_s: int = setting(
        int, _int_range(30, 3600), "how long the deploy waits for every node to be Ready"
    )
    # ---- load tests (tests/acceptance passes them to k6; the same names work as k6/Locust variables)
    loadtest_peak_users: int = setting(int, _int_range(1, 5000), "virtual users at the top of the k6 ramp")
    loadtest_p95_ms: int = setting(int, _int_range(10, 60000), "p95 latency threshold of the load tests, in ms")
    loadtest_error_rate: float = setting(
        (float, int), _fraction, "highest failed-request rate the load tests accept (0-1)"
    )
    # ---- the platform host
    state_dir: str = setting(str, _state_dir, "local folder for this inventory's generated secrets (git-ignored, 0700)")
    gitlab_version: str = setting(str, _package_version, "GitLab CE package version (X.Y.Z)")
    gitlab_runner_version: str = setting(str, _package_version, "GitLab Runner package version (X.Y.Z)")
    gitlab_package_source: str = setting(
        str, _url, "base URL of GitLab's Linux package repositories ('' = do not install)"
    )
    gitlab_puma_workers: int = setting(int, _int_range(0, 16), "Puma workers (0 = single mode, least memory)")
    gitlab_sidekiq_concurrency: int = setting(int, _int_range(1, 50), "Sidekiq threads")
    gitlab_backup_keep_days: int = setting(int, _int_range(1, 365), "days of GitLab backups to keep")
    # ---- switches
    disable_swap: bool = setting(bool, _as_is, "turn swap off now and across reboots (kubelet needs it off)")
    gitlab_prometheus: bool = setting(bool, _as_is, "keep GitLab's bundled Prometheus (memory hungry on a mini PC)")

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
        return path if path.is_absolute() else REPO / path

    def needed_images(self) -> list[str]:
        """The catalog's images this lab pulls: kubeadm's, those of the chosen CNI and storage class, Argo CD's
        when it is installed, and those of the platform charts it syncs (the catalog's part of them)."""
        chosen = [name for key, options in CHOSEN_IMAGES.items() for name in options[getattr(self, key)]]
        argocd = [*ARGOCD_IMAGES, *(["dex"] if self.argocd_dex else [])] if self.argocd_install else []
        charts = [
            name
            for app, names in CHART_IMAGES.items()
            if self.argocd_install and app not in self.gitops_apps_left_out and self.chooses(app)
            for name in names
        ]
        return [*KUBEADM_IMAGES, *chosen, *argocd, *charts]

    def chooses(self, app: str) -> bool:
        """Whether the settings choose a platform app: true unless it exists only with one choice (CHART_CHOICES,
        e.g. the ingress controller) and the settings made another."""
        key, value = CHART_CHOICES.get(app, ("", None))
        return not key or getattr(self, key) == value

    def retired_choices(self) -> list[str]:
        """What the deploy prints about the chosen components that upstream has retired."""
        return [message for (key, value), message in RETIRED.items() if getattr(self, key) == value]

    def mirrored_registries(self) -> list[str]:
        """Upstream registries the nodes pull through the private registry (none without image_mirror_project)."""
        if not self.image_mirror_project:
            return []
        catalog = {image["ref"].split("/", 1)[0] for image in self.images.values()}
        return sorted(catalog | set(MIRRORED_REGISTRIES))

    def chosen_artifact(self, choice: str) -> str:
        """The artifact a choice needs, e.g. chosen_artifact("cni") -> "cilium-chart"."""
        return CHOSEN_ARTIFACTS[choice][getattr(self, choice)]

    @property
    def metallb_pool_range(self) -> str:
        return f"{self.metallb_pool[0]}-{self.metallb_pool[1]}"


def _declared(cls: type) -> dict[str, Key]:
    return {f.name: f.metadata["key"] for f in fields(cls) if "key" in f.metadata}


# Every setting the deploy reads: name -> Key. Unknown keys are rejected with a "did you mean".
SCHEMA: dict[str, Key] = {**_declared(Node), **_declared(Settings)}

# Keys pyinfra and its connectors own; allowed in data, not ours to validate.
_PYINFRA_PREFIXES = (
    "ssh_",
    "_",
    "fake_",
    "docker_",
    "dockerssh_",
    "chroot_",
    "local_",
    "vagrant_",
    "winrm_",
    "terraform_",
    "podman_",
)

KUBERNETES_BINARIES = ("kubeadm", "kubelet", "kubectl")
# What each phase downloads; a missing entry would only fail halfway through the deploy.
REQUIRED_ARTIFACTS = ("containerd", "runc", "cni-plugins", *KUBERNETES_BINARIES, "argocd-install", "kubeseal")
# Downloads that depend on a choice: only the chosen one is fetched (and must be pinned).
# Downloaded only where GitLab and its runner are installed from a package source (gitlab_package_source).
GITLAB_APT_KEYS = ("gitlab-ce-apt-key", "gitlab-runner-apt-key")
CHOSEN_ARTIFACTS = {
    "cni": {"calico": "calico-chart", "cilium": "cilium-chart"},
    "storage_class": {"local-path": "local-path-provisioner", "nfs": "nfs-provisioner-chart"},
}


# ---------------------------------------------------------------------------------------------- loading


def load_settings(inventory: Any, inventory_file: str | None = None) -> Settings:
    """Build and validate Settings from a pyinfra Inventory (every host, not only those in --limit).

    inventory_file: the inventory's path, for messages (default: the one named on pyinfra's command line)."""
    hosts = list(inventory)
    if not hosts:
        raise SettingsError("inventory", "has no hosts", "list hosts in the groups platform, control_plane, worker")
    inventory_file = inventory_file or _inventory_file_from_argv(inventory)
    try:
        _check_groups(inventory)
        datas = {h.name: h.data.dict() for h in hosts}
        groups = {h.name: tuple(g for g in ROLES if g in h.groups) for h in hosts}
        return build_settings(datas, groups)
    except SettingsError as exc:
        if exc.source:
            raise
        root_key = exc.key.split(".")[0]
        if root_key == "inventory":
            raise exc.with_source(inventory_file or "the inventory") from None
        host = next((h for h in hosts if h.name == exc.host), hosts[0])
        if root_key not in SCHEMA or SCHEMA[root_key].scope == "cluster" or exc.host:
            raise exc.with_source(_source_of(inventory, host, root_key, inventory_file)) from None
        raise


def _inventory_file_from_argv(inventory: Any) -> str | None:
    """The pyinfra CLI puts every host into a group named after the inventory file's stem."""
    for arg in sys.argv[1:]:
        path = Path(arg)
        if arg.endswith(".py") and path.stem in inventory.groups and path.is_file():
            resolved = path.resolve()
            return resolved.relative_to(REPO).as_posix() if REPO in resolved.parents else arg
    return None


def _source_of(inventory: Any, host: Any, key: str, inventory_file: str | None) -> str:
    """Where pyinfra took a host's value of `key` from, in its own precedence order."""
    file = inventory_file or "the inventory"
    layers = [
        ("--data on the command line", inventory.get_override_data()),
        (f"{file}, host {host.name}", inventory.get_host_data(host.name)),
    ]
    layers += [(f"group {group}", inventory.get_group_data(group)) for group in reversed(host.groups)]
    layers.append(("group all", inventory.get_data()))
    for label, data in layers:
        if key in (data or {}):
            if not label.startswith("group "):
                return label
            group = label.removeprefix("group ")
            if (GROUP_DATA_DIR / f"{group}.py").exists():
                return f"group_data/{group}.py"
            return f"{file}, group {group}"
    return "group_data/all.py"


def _check_groups(inventory: Any) -> None:
    """A group that is no role but looks like one (`workers`, `controlplane`) leaves its hosts without a role."""
    for group in inventory.groups:
        if group in ROLES:
            continue
        close = difflib.get_close_matches(group, ROLES, n=1, cutoff=0.75)
        if close:
            raise SettingsError(
                "inventory",
                f"group {group!r} is not a role, so its hosts get no role from it",
                f"rename it to {close[0]} (the role groups are {', '.join(ROLES)})",
            )


def build_settings(datas: dict[str, dict[str, Any]], roles: dict[str, tuple[str, ...]]) -> Settings:
    """Validate raw per-host data (as pyinfra merged it) and the role membership of each host."""
    for name, data in datas.items():
        _check_known_keys(name, data)
        _check_host_roles(name, roles[name])
    cluster = _cluster_values(datas)
    nodes = tuple(_build_node(name, datas[name], roles[name], cluster) for name in datas)
    try:
        parsed = {name: key.parse(cluster, name) for name, key in _declared(Settings).items()}
    except SettingsError as exc:
        if exc.key == "node_network" and nodes:  # the hosts' own subnet is the example that fits
            example = str(ipaddress.IPv4Network(f"{nodes[0].address}/24", strict=False))
            raise SettingsError(exc.key, exc.problem, exc.fix, example=example) from None
        raise
    parsed["artifacts"] = _with_lock(parsed["artifacts"], parsed["artifacts_lock"])
    parsed["images"] = _with_image_lock(
        _with_overrides(parsed["images"], parsed["image_overrides"]), parsed["images_lock"]
    )
    settings = Settings(nodes=nodes, **parsed)
    for check in LAB_WIDE_CHECKS:
        check(settings)
    return settings


def _kind_name(kind: type | tuple[type, ...]) -> type:
    return kind[0] if isinstance(kind, tuple) else kind


def _check_known_keys(host: str, data: dict[str, Any]) -> None:
    for key, value in data.items():
        if key.startswith(_PYINFRA_PREFIXES):
            continue
        if key not in SCHEMA:
            close = difflib.get_close_matches(key, SCHEMA, n=1)
            hint = f"did you mean {close[0]}?" if close else "remove it, or see docs/settings.md"
            raise SettingsError(key, "is not a setting of this codebase", hint, host=host)
        expected = SCHEMA[key].kind
        # bool is an int in Python; a flag where a number belongs (or the reverse) is still a mistake
        wrong_bool = isinstance(value, bool) and expected is int
        if not isinstance(value, expected) or wrong_bool:
            kind = _kind_name(expected)
            example = _coerced(value, kind)
            if example is not NO_EXAMPLE:
                try:
                    SCHEMA[key].parse({**data, key: example}, key)
                except (SettingsError, TypeError, AttributeError):
                    example = NO_EXAMPLE  # not a valid value either: say only how to write it
            raise SettingsError(
                key,
                f"is {type(value).__name__} {value!r}",
                f"write it as {_KIND_PHRASES[kind]}",
                example=example,
                host=host,
            )


def _cluster_values(datas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cluster: dict[str, Any] = {}
    first: dict[str, str] = {}
    for host, data in datas.items():
        for key, spec in SCHEMA.items():
            if spec.scope != "cluster" or key not in data:
                continue
            if key in cluster and data[key] != cluster[key]:
                raise SettingsError(
                    key,
                    f"differs between hosts ({first[key]}: {cluster[key]!r}, {host}: {data[key]!r})",
                    "it is lab-wide: set it once in group_data/all.py and remove per-host or per-role overrides",
                    host=host,
                )
            cluster.setdefault(key, data[key])
            first.setdefault(key, host)
    return cluster


def _build_node(name: str, data: dict[str, Any], roles: tuple[str, ...], cluster: dict[str, Any]) -> Node:
    values = {"hostname": name, "node_labels": {}, **data}
    try:
        node = Node(name=name, roles=roles, **{key: spec.parse(values, key) for key, spec in _declared(Node).items()})
    except SettingsError as exc:
        example = exc.example
        if exc.key == "address":  # an address of the lab's own network, where it can be known
            with contextlib.suppress(KeyError, ValueError, IndexError):
                example = str(list(ipaddress.IPv4Network(cluster["node_network"]).hosts())[-2])
        raise SettingsError(exc.key, exc.problem, exc.fix, example=example, host=name) from None
    if node.memory_soft_min_mb < node.memory_hard_min_mb:
        raise SettingsError(
            "memory_soft_min_mb",
            f"{node.memory_soft_min_mb} is below memory_hard_min_mb {node.memory_hard_min_mb}",
            "the warning threshold must be at least the refusal threshold",
            example=node.memory_hard_min_mb,
            host=name,
        )
    return node


def _with_lock(artifacts: dict[str, dict[str, str]], lock_file: str) -> dict[str, dict[str, str]]:
    """group_data's artifacts with the sha256 the lock file pins for exactly that version and URL."""
    lock = _read_lock(lock_file, "artifacts_lock")
    result = {}
    for name, spec in artifacts.items():
        pin = lock.get(name, {})
        url = spec["url"].format(version=spec["version"])
        sha = pin.get("sha256", "") if pin.get("version") == spec["version"] and pin.get("url") == url else ""
        _check_pin(sha, _SHA256, f"artifacts.{name}.sha256", "a sha256", "`python3 tools/pin_artifacts.py`", lock_file)
        result[name] = {**spec, "sha256": sha}
    return result


def _read_lock(lock_file: str, key: str) -> dict:
    path = Path(lock_file) if Path(lock_file).is_absolute() else REPO / lock_file
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except ValueError as exc:
        raise SettingsError(
            key,
            f"{lock_file} is not JSON ({exc})",
            "regenerate it with `python3 tools/pin_artifacts.py`",
            source=lock_file,
        ) from None


_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _check_pin(pin: str, pattern: re.Pattern, key: str, what: str, pin_command: str, lock_file: str) -> None:
    """A lock's entry is empty (not pinned yet) or has the shape of a pin."""
    if pin and not pattern.fullmatch(pin):
        raise SettingsError(
            key,
            f"the lock pins {pin!r}, which is not {what}",
            f"regenerate the lock with {pin_command}",
            source=lock_file,
        )


def _with_overrides(
    catalog: dict[str, dict[str, str]], overrides: dict[str, dict[str, str]]
) -> dict[str, dict[str, str]]:
    """The catalog with each overridden entry's reference replaced; `upstream` keeps the one manifests name."""
    for name in overrides:
        if name not in catalog:
            raise SettingsError(
                f"image_overrides.{name}",
                "names no image of the catalog (`images`)",
                f"use one of its names: {', '.join(sorted(catalog))}",
                example=NO_EXAMPLE,
            )
    return {
        name: {**image, "ref": overrides[name]["ref"], "upstream": image["ref"]} if name in overrides else image
        for name, image in catalog.items()
    }


def _with_image_lock(images: dict[str, dict[str, str]], lock_file: str) -> dict[str, dict[str, str]]:
    """The catalog with the digest the images lock pins for exactly that reference (registry/path:tag)."""
    lock = _read_lock(lock_file, "images_lock")
    result = {}
    for name, image in images.items():
        digest = lock.get(image["ref"], "")
        _check_pin(
            digest, _DIGEST, f"images.{name}", "a sha256 digest", "`python3 tools/pin_artifacts.py --images`", lock_file
        )
        result[name] = {**image, "digest": digest}
    return result


def pin_images_command(inventory_file: str | None) -> str:
    """The pin tool's command line that pins every image the inventory's deploy pulls."""
    return f"python3 tools/pin_artifacts.py --images --inventory {inventory_file or 'YOUR_INVENTORY.py'}"


def lock_entry(spec: dict[str, str], sha256: str) -> dict[str, str]:
    """One entry of an artifacts lock file (tools/pin_artifacts.py and the mirror builder write them)."""
    return {"version": spec["version"], "url": spec["url"].format(version=spec["version"]), "sha256": sha256}


# ------------------------------------------------------------------------------------------ lab-wide rules


def _check_host_roles(name: str, roles: tuple[str, ...]) -> None:
    if not roles:
        raise SettingsError(
            "inventory",
            f"host {name} has no role",
            "put it in one of the groups platform, control_plane, worker (or remove it)",
        )
    if "control_plane" in roles and "worker" in roles:
        raise SettingsError(
            "inventory",
            f"host {name} is in both control_plane and worker",
            "keep it in one of them; the control plane runs no app workloads here",
        )


def _check_roles(s: Settings) -> None:
    counts = {role: len(s.with_role(role)) for role in ROLES}
    if counts["control_plane"] == 0:
        raise SettingsError("inventory", "there is no control_plane host", "put exactly one host in control_plane")
    if counts["control_plane"] > 1:
        raise SettingsError(
            "inventory",
            f"{counts['control_plane']} control_plane hosts; this codebase builds a single control plane",
            "keep one host in control_plane and make the others workers",
        )
    if counts["platform"] != 1:
        raise SettingsError("inventory", f"{counts['platform']} platform hosts", "put exactly one host in platform")
    if counts["worker"] == 0:
        raise SettingsError("inventory", "there is no worker host", "put at least one host in worker")


def _free_address(s: Settings, start: int = 20) -> str:
    taken = {n.address for n in s.nodes}
    for candidate in list(s.node_network.hosts())[start:]:
        if candidate not in taken and not s.metallb_pool[0] <= candidate <= s.metallb_pool[1]:
            return str(candidate)
    return str(next(s.node_network.hosts()))


def _changed(s: Settings, key: str) -> bool:
    """Whether a key differs from the value this codebase ships (group_data/all.py's defaults, see
    SHIPPED_DEFAULTS): of two keys that clash, the changed one is the likelier mistake."""
    return str(getattr(s, key)) != SHIPPED_DEFAULTS.get(key)


# Every name the lab serves: the platform host's two, and the four Ingress hosts on the VIP.
SERVED_NAMES = (
    "gitlab_domain",
    "registry_domain",
    "storefront_host_dev",
    "storefront_host_prod",
    "argocd_host",
    "grafana_host",
)
SHIPPED_DEFAULTS = {key: EXAMPLES[key] for key in (*SERVED_NAMES, "node_network", "pod_cidr", "service_cidr")}


def _blame(s: Settings, first: str, second: str) -> str:
    """Of two clashing keys, the one to fix: the one changed from its shipped default (else the second)."""
    return first if _changed(s, first) and not _changed(s, second) else second


def _check_names_and_addresses(s: Settings) -> None:
    seen_addresses: dict[ipaddress.IPv4Address, str] = {}
    seen_names: dict[str, str] = {}
    for n in s.nodes:
        if n.address in seen_addresses:
            raise SettingsError(
                "address",
                f"{n.address} is used by both {seen_addresses[n.address]} and {n.name}",
                "give every host its own static address",
                example=_free_address(s),
                host=n.name,
            )
        seen_addresses[n.address] = n.name
        if n.hostname.lower() in seen_names:
            raise SettingsError(
                "hostname",
                f"{n.hostname!r} is used by both {seen_names[n.hostname.lower()]} and {n.name}",
                "give every host its own name (names are case-insensitive)",
                example=n.name if n.name.lower() not in seen_names else f"{n.hostname}-2",
                host=n.name,
            )
        seen_names[n.hostname.lower()] = n.name
    outside = [n for n in s.nodes if n.address not in s.node_network]
    if outside and len(outside) == len(s.nodes):
        n = outside[0]
        raise SettingsError(
            "node_network",
            f"{s.node_network} contains none of the hosts' addresses (e.g. {n.address} of {n.name})",
            "set node_network to the subnet your hosts are in",
            example=str(ipaddress.IPv4Network(f"{n.address}/24", strict=False)),
        )
    for n in outside:
        raise SettingsError(
            "address",
            f"{n.address} of host {n.name} is outside node_network {s.node_network}",
            "give the host an address inside node_network (or correct node_network)",
            example=_free_address(s),
            host=n.name,
        )
    for n in s.nodes:
        if n.address in (s.node_network.network_address, s.node_network.broadcast_address):
            raise SettingsError(
                "address",
                f"{n.address} of host {n.name} is the network or broadcast address of {s.node_network}",
                "use a host address inside the subnet",
                example=_free_address(s),
                host=n.name,
            )
    for key in ("gitlab_domain", "registry_domain"):
        domain = getattr(s, key)
        if domain.split(".")[0] in seen_names:
            raise SettingsError(
                key,
                f"{domain!r} clashes with the host name {domain.split('.')[0]!r}",
                "rename the service name",
                example=EXAMPLES[key],
            )
    # Every name the lab serves is its own.
    for i, key in enumerate(SERVED_NAMES):
        for other in SERVED_NAMES[:i]:
            if getattr(s, key) != getattr(s, other):
                continue
            blamed = _blame(s, other, key)
            taken = {getattr(s, k) for k in SERVED_NAMES}
            example = EXAMPLES[blamed]
            if example in taken:
                example = f"{blamed.split('_')[0]}.{s.gitlab_domain.split('.', 1)[1]}"
            raise SettingsError(
                blamed,
                f"{getattr(s, key)!r} is both {other} and {key}",
                "give GitLab, the registry, both storefronts, Argo CD and Grafana a name each",
                example=example,
            )


def _check_networks(s: Settings) -> None:
    ranges = {"node_network": s.node_network, "pod_cidr": s.pod_cidr, "service_cidr": s.service_cidr}
    names = list(ranges)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if not ranges[a].overlaps(ranges[b]):
                continue
            # The node network is where the hosts are: the cluster's own ranges move, not it.
            key = b if a == "node_network" else _blame(s, a, b)
            candidates = (EXAMPLES[key], "10.244.0.0/16", "172.20.0.0/16", "10.96.0.0/12", "172.16.0.0/16")
            example = next(
                c
                for c in candidates
                if not any(ipaddress.IPv4Network(c).overlaps(r) for k, r in ranges.items() if k != key)
            )
            raise SettingsError(
                key,
                f"{ranges[b]} ({b}) overlaps {ranges[a]} ({a})",
                "choose a range that overlaps neither of the other two",
                example=example,
            )
    node_slots = 2 ** max(0, KUBEADM_POD_SUBNET_PER_NODE - s.pod_cidr.prefixlen)
    if s.pod_cidr.prefixlen > KUBEADM_POD_SUBNET_PER_NODE or node_slots < len(s.nodes):
        raise SettingsError(
            "pod_cidr",
            f"{s.pod_cidr} holds {node_slots if s.pod_cidr.prefixlen <= 24 else 0} "
            f"/24 node subnets for {len(s.nodes)} hosts",
            "use a larger range",
            example=str(ipaddress.IPv4Network(f"{s.pod_cidr.network_address}/16", strict=False)),
        )
    first, last = s.metallb_pool
    base, size = s.node_network.network_address, s.node_network.num_addresses
    suggestion = f"{base + 200}-{base + 220}" if size > 222 else f"{base + size - 4}-{base + size - 2}"
    if first not in s.node_network or last not in s.node_network:
        raise SettingsError(
            "metallb_pool",
            f"{s.metallb_pool_range} is not inside node_network {s.node_network}",
            "MetalLB L2 answers ARP on the node subnet: pick free addresses inside it",
            example=suggestion,
        )
    for n in s.nodes:
        if first <= n.address <= last:
            raise SettingsError(
                "metallb_pool",
                f"{s.metallb_pool_range} contains {n.address} of host {n.name}",
                "shrink the pool to free addresses that no host or DHCP lease uses",
                example=suggestion,
            )
    if first <= s.node_network.broadcast_address <= last or first <= s.node_network.network_address <= last:
        raise SettingsError(
            "metallb_pool",
            f"{s.metallb_pool_range} includes the network or broadcast address",
            "use addresses strictly inside the subnet",
            example=suggestion,
        )


def _check_endpoint(s: Settings) -> None:
    """The API endpoint must reach the control plane, never a MetalLB VIP (those are Services in the cluster)."""
    host, _, port = s.control_plane_endpoint.partition(":")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return
    if s.metallb_pool[0] <= address <= s.metallb_pool[1]:
        raise SettingsError(
            "control_plane_endpoint",
            f"{host} is in metallb_pool {s.metallb_pool_range}: MetalLB hands "
            "it to a Service, and the API would become unreachable",
            "use the control plane's address or a DNS name for it",
            example=f"{s.control_plane.address}:{port or 6443}",
        )


def _check_time(s: Settings) -> None:
    if not s.ntp_upstream_servers and not s.ntp_local_stratum:
        raise SettingsError(
            "ntp_upstream_servers",
            "is empty and ntp_local_stratum is 0, so nothing serves time",
            "list upstream NTP servers (or set ntp_local_stratum for an isolated lab)",
            example=["0.debian.pool.ntp.org"],
        )


def unused_artifacts(choices: dict[str, str], gitlab_package_source: str) -> set[str]:
    """Artifacts never downloaded: those of the options not chosen (choices: setting -> value, e.g.
    {"cni": "cilium", ...}), and GitLab's apt signing keys when GitLab is not installed from packages."""
    unchosen = {
        artifact
        for key, options in CHOSEN_ARTIFACTS.items()
        for option, artifact in options.items()
        if option != choices[key]
    }
    return unchosen | (set() if gitlab_package_source else set(GITLAB_APT_KEYS))


def _chosen(s: Settings) -> dict[str, str]:
    return {key: getattr(s, key) for key in CHOSEN_ARTIFACTS}


def _check_kubernetes_artifacts(s: Settings) -> None:
    for name in (*REQUIRED_ARTIFACTS, *(s.chosen_artifact(key) for key in CHOSEN_ARTIFACTS)):
        if name not in s.artifacts:
            raise SettingsError(f"artifacts.{name}", "is missing", "copy its entry from group_data/all.py of this repo")
    for name in KUBERNETES_BINARIES:
        if s.artifacts[name]["version"] != s.kubernetes_version:
            raise SettingsError(
                f"artifacts.{name}.version",
                f"{s.artifacts[name]['version']} differs from kubernetes_version {s.kubernetes_version}",
                "bump them together (and pin the new sha256s)",
                example=s.kubernetes_version,
            )
    # containerd 2.x reads config version 3; Kubernetes 1.36+ supports containerd 2.2 or newer only.
    containerd = s.artifacts["containerd"]["version"]
    needed = (2, 2, 0) if _number_triple(s.kubernetes_version) >= (1, 36, 0) else (2, 0, 0)
    if _number_triple(containerd) < needed:
        raise SettingsError(
            "artifacts.containerd.version",
            f"containerd {containerd} is too old for Kubernetes {s.kubernetes_version} and this "
            f"codebase's config.toml (version 3): it needs {'.'.join(map(str, needed[:2]))} or newer",
            "use the 2.3 LTS series (and pin its sha256)",
            example="2.3.7",
        )


# kubeadm's own images (`kubeadm config images list`), all from one repository (its imageRepository).
KUBEADM_IMAGES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "etcd",
    "coredns",
    "pause",
)
KUBERNETES_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
# Images of a choice: only the chosen option's are pulled (Calico's operator and NFS's provisioner are not in
# the catalog yet: docs/artifacts.md says how to add them for a mirrored install).
CHOSEN_IMAGES = {
    "cni": {"cilium": ("cilium", "cilium-operator"), "calico": ()},
    "storage_class": {"local-path": ("local-path-provisioner", "busybox"), "nfs": ()},
}
# Argo CD's install.yaml: its own image (every component) and Redis; Dex only with argocd_dex.
ARGOCD_IMAGES = ("argocd", "argocd-redis")
# The platform charts' images in the catalog, by gitops app (gitops-repo pins each by digest in its values);
# the other charts' images are not in the catalog yet (docs/artifacts.md).
CHART_IMAGES = {
    "sealed-secrets": ("sealed-secrets-controller",),
    "metrics-server": ("metrics-server",),
    "metallb": ("metallb-controller", "metallb-speaker"),
    "traefik": ("traefik",),
    "kube-prometheus-stack": (
        "prometheus-operator",
        "prometheus-config-reloader",
        "prometheus",
        "alertmanager",
        "node-exporter",
        "kube-state-metrics",
    ),
}
# The platform apps that exist only with one choice, (setting, value): the gitops repo renders them (and the
# nodes pull their images) only when the setting has that value.
CHART_CHOICES = {
    "traefik": ("ingress_controller", "traefik"),
    "ingress-nginx": ("ingress_controller", "ingress-nginx"),
    "alloy": ("log_shipper", "alloy"),
    "promtail": ("log_shipper", "promtail"),
}
# With image_mirror_project, the registries whose pulls go to the private registry: the catalog's, and the
# public registries most charts and manifests name.
MIRRORED_REGISTRIES = ("registry.k8s.io", "quay.io", "docker.io", "ghcr.io")


def image_repository(ref: str) -> str:
    """registry/path of a reference (without the tag)."""
    return ref.rsplit(":", 1)[0]


def _check_images(s: Settings) -> None:
    for name in s.needed_images():
        if name not in s.images:
            raise SettingsError(f"images.{name}", "is missing", "copy its entry from group_data/all.py of this repo")
    repository = image_repository(s.images["kube-apiserver"]["ref"]).rsplit("/", 1)[0]
    for name in KUBEADM_IMAGES:
        path = {"coredns": "coredns/coredns"}.get(name, name)
        if image_repository(s.images[name]["ref"]) != f"{repository}/{path}":
            raise SettingsError(
                f"images.{name}",
                f"{s.images[name]['ref']} is not in {repository}, where kubeadm takes all its images from",
                "name every kubeadm image from one repository",
                example=f"{repository}/{path}:{s.images[name]['ref'].rsplit(':', 1)[1]}",
            )
    for name in KUBERNETES_IMAGES:
        if not s.images[name]["ref"].endswith(f":v{s.kubernetes_version}"):
            raise SettingsError(
                f"images.{name}",
                f"{s.images[name]['ref']} is not kubernetes_version {s.kubernetes_version}",
                "bump them together (and pin the new digests)",
                example=f"{image_repository(s.images[name]['ref'])}:v{s.kubernetes_version}",
            )
    clash = set(s.mirrored_registries()) & set(s.image_registry_mirrors)
    if clash:
        raise SettingsError(
            "image_registry_mirrors",
            f"also names {', '.join(sorted(clash))}, which "
            "image_mirror_project already mirrors through the private registry",
            "use one of the two for each registry",
            example={},
        )


LAB_WIDE_CHECKS: tuple[Callable[[Settings], None], ...] = (
    _check_roles,
    _check_names_and_addresses,
    _check_networks,
    _check_endpoint,
    _check_time,
    _check_kubernetes_artifacts,
    _check_images,
)


# ------------------------------------------------------------------------------------------- CLI hook


def require_pinned_artifacts(settings: Settings) -> None:
    """A deploy never downloads an unpinned file. group_data names versions and URLs; the lock file
    (`artifacts_lock`, written by tools/pin_artifacts.py) holds the sha256 of each, for exactly that version."""
    unused = unused_artifacts(_chosen(settings), settings.gitlab_package_source)
    for name, spec in settings.artifacts.items():
        if name in unused:
            continue  # never downloaded (an option not chosen, or GitLab's keys without its packages)
        if not spec["sha256"]:
            raise SettingsError(
                f"artifacts.{name}.sha256",
                f"{name} {spec['version']} is not pinned in {settings.artifacts_lock}",
                "run `python3 tools/pin_artifacts.py` on a machine that reaches the release sites (it writes every "
                "sha256 into the lock file), or add it there by hand (docs/artifacts.md)",
            )


def require_pinned_images(settings: Settings, inventory_file: str | None = None) -> None:
    """Every image the cluster pulls is pinned by digest in the images lock (tools/pin_artifacts.py --images)."""
    for name in settings.needed_images():
        image = settings.images[name]
        if not image["digest"]:
            raise SettingsError(
                f"images.{name}",
                f"{image['ref']} has no digest in {settings.images_lock}",
                f"run `{pin_images_command(inventory_file)}` on a machine that reaches the registries (it writes "
                "every digest into the lock), or add it there by hand (docs/artifacts.md)",
            )


def validate_before_connect(state: Any, on_error: Callable[[str], Exception]) -> None:
    """Make the pyinfra CLI validate the whole inventory before its first connection.

    The CLI loads config.py, then the inventory file and group_data, then calls `state.init(inventory)`,
    then connects. Right after `state.init` is the earliest point that sees the merged data, and it is
    still in the main flow, so the error reaches the user as pyinfra's own one-line error.
    """
    original_init = state.init

    def init_then_validate(inventory: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            settings = load_settings(inventory)
            require_pinned_artifacts(settings)
            require_pinned_images(settings, _inventory_file_from_argv(inventory))
        except SettingsError as exc:
            raise on_error(str(exc)) from None
        return original_init(inventory, *args, **kwargs)

    state.init = init_then_validate
