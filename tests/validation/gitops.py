"""Validation of a rendered gitops repository: it renders, every object matches a real schema strictly, and
the policies that catch real mistakes hold. `validate_repo(path)` returns a list of problems (empty = good).

Schemas: core kinds against Kubernetes 1.37's OpenAPI (kubernetes-validate, strict); custom resources
against the upstream CRDs (tests/validation/upstream.py), made strict: every object schema that lists
properties and does not preserve unknown fields is closed, so a typo such as `automatd:` fails. A kind
with no schema at all is a failure, never a warning.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import kubernetes_validate
import yaml

from tests.validation.upstream import crd_schemas

KUBERNETES_VERSION = "1.37"
SHA = re.compile(r"^[0-9a-f]{7,40}$")
EXACT_VERSION = re.compile(r"^v?\d+\.\d+\.\d+$")
OVERLAYS = ("apps/online-boutique/overlays/dev", "apps/online-boutique/overlays/prod")
# Containers without probes upstream, with the reason.
NO_PROBES = {"loadgenerator": "a load client that serves nothing"}
# *_ADDR values that point at services deliberately not deployed, with the reason.
UNDEPLOYED_ADDRESSES = {"SHOPPING_ASSISTANT_SERVICE_ADDR": "the optional AI assistant is not part of this platform"}
# Traffic allowed beyond the calls the app's configuration implies: the ingress controller's namespace (the
# chosen one's) to the storefront. Every controller's namespace is checked: the other one must be blocked.
INGRESS_TO = "frontend"
CONTROLLER_NAMESPACES = ("traefik", "ingress-nginx")
# Which app provides which CRD group (its Application must sync in an earlier wave than users of the group).
CRD_PROVIDERS = {"metallb.io": "metallb", "monitoring.coreos.com": "kube-prometheus-stack", "bitnami.com": "sealed-secrets"}


def kubectl() -> str:
    found = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    return found


def kustomize(path: Path) -> list[dict]:
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RenderError(f"{path}: kubectl kustomize failed: {proc.stderr.strip()}")
    return [doc for doc in yaml.load_all(proc.stdout, Loader=_Loader) if doc]


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class RenderError(Exception):
    pass


def _render_or_error(root: Path) -> list[dict] | RenderError:
    try:
        return kustomize(root)
    except RenderError as err:
        return err


def kustomize_roots(repo: Path) -> list[Path]:
    return sorted(p.parent for p in repo.rglob("kustomization.yaml") if "components" not in p.parts)


def plain_manifests(repo: Path) -> list[tuple[Path, dict]]:
    """Objects in files that are not part of any kustomization (e.g. argocd/root.yaml)."""
    in_kustomizations = set()
    for root in kustomize_roots(repo):
        in_kustomizations |= {p for p in root.rglob("*.yaml")}
    result = []
    for path in sorted(repo.rglob("*.yaml")):
        if path in in_kustomizations or "components" in path.parts or path.name.endswith(".template.yaml") \
                or path.parent.parent.name == "platform":  # Helm values files
            continue
        result += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return result


def name_of(obj: dict) -> str:
    meta = obj.get("metadata", {})
    ns = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {ns}{meta.get('name')}"


# ----------------------------------------------------------------------------------------- schemas


def strict(schema: Any) -> Any:
    """An OpenAPI v3 CRD schema as closed-world JSON Schema."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = out.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    for key in list(out):
        if key.startswith("x-kubernetes-"):
            out.pop(key)
    return out


@lru_cache(maxsize=None)
def _validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    return {key: jsonschema.Draft7Validator(strict(copy.deepcopy(schema))) for key, schema in crd_schemas().items()}


def schema_problems(obj: dict) -> list[str]:
    return list(_schema_problems(json.dumps(obj, sort_keys=True)))


@lru_cache(maxsize=4096)
def _schema_problems(canonical: str) -> tuple[str, ...]:
    """Cached per object: kubernetes-validate reads its schema files on every call."""
    return tuple(_check_schema(json.loads(canonical)))


def _check_schema(obj: dict) -> list[str]:
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    validator = _validators().get(key)
    if validator is not None:
        return [f"{name_of(obj)}: {'.'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
                for err in validator.iter_errors(obj)]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name_of(obj)}: no schema for {key[0]} {key[1]} (neither Kubernetes {KUBERNETES_VERSION} nor a "
                "pinned CRD): add its CRD to tests/validation/upstream.py"]
    except kubernetes_validate.ValidationError as err:
        return [f"{name_of(obj)}: {str(err).splitlines()[0]}"]
    return []


# ----------------------------------------------------------------------------------------- policies


def workloads(objects: list[dict]) -> list[dict]:
    return [o for o in objects if o["kind"] == "Deployment"]


def containers(deployment: dict) -> list[dict]:
    return deployment["spec"]["template"]["spec"]["containers"]


def image_problems(objects: list[dict], registry: str) -> list[str]:
    problems = []
    for d in workloads(objects):
        for c in containers(d):
            image = c["image"]
            repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
            where = f"{name_of(d)} container {c['name']}"
            if not tag:
                problems.append(f"{where}: image {image} has no tag")
            elif tag == "latest":
                problems.append(f"{where}: image {image} uses the tag latest")
            if not image.startswith(f"{registry}/"):
                problems.append(f"{where}: image {image} is not from the private registry {registry}")
            elif tag and d["metadata"]["name"] != "redis-cart" and not SHA.match(tag):
                problems.append(f"{where}: image {image} is not tagged with a commit SHA")
    return problems


def container_problems(objects: list[dict]) -> list[str]:
    problems = []
    for d in workloads(objects):
        pod = d["spec"]["template"]["spec"]
        name = d["metadata"]["name"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{name_of(d)}: pod securityContext lacks runAsNonRoot: true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name_of(d)}: pod securityContext lacks seccompProfile RuntimeDefault")
        for c in containers(d):
            where = f"{name_of(d)} container {c['name']}"
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in res.get(kind, {}):
                        problems.append(f"{where}: no {resource} in resources.{kind}")
            if name not in NO_PROBES:
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        problems.append(f"{where}: has no {probe}")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem is not true")
    return problems


def selects(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", selector if "matchExpressions" not in selector else {})
    return all(labels.get(k) == v for k, v in match.items())


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def env_value(objects: list[dict], var: dict) -> str | None:
    if "value" in var:
        return var["value"]
    ref = var.get("valueFrom", {}).get("configMapKeyRef")
    if ref:
        return by_kind(objects, "ConfigMap").get(ref["name"], {}).get("data", {}).get(ref["key"])
    return None


def target_port(service: dict, port: int, pods: list[dict]) -> int | None:
    """The container port a Service port forwards to (resolving named target ports)."""
    for p in service["spec"]["ports"]:
        if p["port"] == port:
            target = p.get("targetPort", port)
            if isinstance(target, int):
                return target
            for d in pods:
                for c in containers(d):
                    for cp in c.get("ports", []):
                        if cp.get("name") == target:
                            return cp["containerPort"]
    return None


def calls(objects: list[dict]) -> tuple[list[tuple[str, str, int]], list[str]]:
    """(caller, callee, container port) for every *_ADDR the configuration gives, and the problems found."""
    services = by_kind(objects, "Service")
    deployments = workloads(objects)
    result, problems = [], []
    for d in deployments:
        for c in containers(d):
            for var in c.get("env", []):
                if not var["name"].endswith("_ADDR") or var["name"] in UNDEPLOYED_ADDRESSES:
                    continue
                value = env_value(objects, var)
                where = f"{name_of(d)}: {var['name']}={value}"
                if not value or ":" not in value:
                    problems.append(f"{where} is not host:port")
                    continue
                host, port = value.rsplit(":", 1)
                service = services.get(host)
                if service is None:
                    problems.append(f"{where}: no Service named {host} in this overlay")
                    continue
                pods = [p for p in deployments
                        if selects(service["spec"]["selector"], p["spec"]["template"]["metadata"]["labels"])]
                tport = target_port(service, int(port), pods)
                if tport is None:
                    problems.append(f"{where}: port {port} is not a port of Service {host} "
                                    f"(it has {[p['port'] for p in service['spec']['ports']]})")
                    continue
                for pod in pods:
                    ports = [cp["containerPort"] for cc in containers(pod) for cp in cc.get("ports", [])]
                    if tport not in ports:
                        problems.append(f"{where}: Service {host} forwards to {tport}, which {name_of(pod)} does not expose")
                    result.append((d["metadata"]["name"], pod["metadata"]["name"], tport))
    return result, problems


def service_problems(objects: list[dict]) -> list[str]:
    problems = []
    templates = [d["spec"]["template"]["metadata"]["labels"] for d in workloads(objects)]
    for s in by_kind(objects, "Service").values():
        if not any(selects(s["spec"].get("selector", {}), labels) for labels in templates):
            problems.append(f"{name_of(s)}: selects no pod template")
    for ing in (o for o in objects if o["kind"] == "Ingress"):
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = by_kind(objects, "Service").get(backend["name"])
                if svc is None or backend["port"]["number"] not in [p["port"] for p in svc["spec"]["ports"]]:
                    problems.append(f"{name_of(ing)}: backend {backend['name']}:{backend['port']['number']} does not exist")
    return problems


def hpa_problems(objects: list[dict]) -> list[str]:
    problems = []
    deployments = by_kind(objects, "Deployment")
    for hpa in (o for o in objects if o["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        d = deployments.get(target)
        if d is None:
            problems.append(f"{name_of(hpa)}: targets Deployment {target}, which does not exist")
            continue
        for metric in hpa["spec"].get("metrics", []):
            resource = metric.get("resource", {}).get("name")
            if resource and any(resource not in c.get("resources", {}).get("requests", {}) for c in containers(d)):
                problems.append(f"{name_of(hpa)}: scales on {resource}, but {name_of(d)} does not request {resource}")
        if "replicas" in d["spec"]:
            problems.append(f"{name_of(d)}: sets replicas although {name_of(hpa)} owns them (Argo CD would fight it)")
    return problems


def _peers_allowed(rule: dict, peer_labels: dict, peer_namespace: str, own_namespace: str, port: int,
                   direction: str) -> bool:
    peers = rule.get("from" if direction == "ingress" else "to")
    ports = rule.get("ports")
    if ports is not None and not any(p.get("port") == port for p in ports):
        return False
    if peers is None:
        return True
    for peer in peers:
        ns_sel, pod_sel = peer.get("namespaceSelector"), peer.get("podSelector")
        if ns_sel is not None:
            ns_ok = selects(ns_sel, {"kubernetes.io/metadata.name": peer_namespace})
        else:
            ns_ok = peer_namespace == own_namespace
        if ns_ok and (pod_sel is None or selects(pod_sel, peer_labels)):
            return True
    return False


def traffic_allowed(policies: list[dict], src: tuple[str, dict], dst: tuple[str, dict], port: int) -> bool:
    """NetworkPolicy semantics for TCP from src=(namespace, labels) to dst=(namespace, labels) on port."""
    def direction_allows(pod: tuple[str, dict], peer: tuple[str, dict], direction: str) -> bool:
        kind = direction.capitalize()
        applying = [p for p in policies if p["metadata"]["namespace"] == pod[0]
                    and selects(p["spec"]["podSelector"], pod[1]) and kind in p["spec"]["policyTypes"]]
        if not applying:
            return True
        return any(_peers_allowed(rule, peer[1], peer[0], pod[0], port, direction)
                   for p in applying for rule in p["spec"].get(direction, []))
    return direction_allows(src, dst, "egress") and direction_allows(dst, src, "ingress")


def network_policy_problems(objects: list[dict], ingress_namespace: str) -> list[str]:
    implied, _ = calls(objects)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deployments = {d["metadata"]["name"]: d for d in workloads(objects)}
    if not deployments:
        return []
    namespace = next(iter(deployments.values()))["metadata"]["namespace"]
    labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    problems = []
    for caller, callee, port in implied:
        if not traffic_allowed(policies, (namespace, labels[caller]), (namespace, labels[callee]), port):
            problems.append(f"NetworkPolicies block {caller} -> {callee}:{port}, a call the configuration makes")
    wanted = set(implied)
    for src in deployments:
        for dst, d in deployments.items():
            for port in [cp["containerPort"] for c in containers(d) for cp in c.get("ports", [])]:
                if (src, dst, port) not in wanted and \
                        traffic_allowed(policies, (namespace, labels[src]), (namespace, labels[dst]), port):
                    problems.append(f"NetworkPolicies allow {src} -> {dst}:{port}, which no configuration calls")
    for dst, d in deployments.items():
        for port in [cp["containerPort"] for c in containers(d) for cp in c.get("ports", [])]:
            for other_ns in (*CONTROLLER_NAMESPACES, "default", "monitoring"):
                allowed = traffic_allowed([p for p in policies], (other_ns, {}), (namespace, labels[dst]), port)
                if allowed != (dst == INGRESS_TO and other_ns == ingress_namespace):
                    verb = "allow" if allowed else "block"
                    problems.append(f"NetworkPolicies {verb} namespace {other_ns} -> {dst}:{port}")
    return problems


def namespace_problems(objects: list[dict]) -> list[str]:
    problems = []
    for ns in (o for o in objects if o["kind"] == "Namespace"):
        if ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "restricted":
            problems.append(f"{name_of(ns)}: Pod Security is not enforced as restricted")
    accounts = by_kind(objects, "ServiceAccount")
    for d in workloads(objects):
        sa = accounts.get(d["spec"]["template"]["spec"].get("serviceAccountName", ""))
        if sa is None:
            problems.append(f"{name_of(d)}: its ServiceAccount does not exist")
        elif {"name": "registry-credentials"} not in sa.get("imagePullSecrets", []):
            problems.append(f"{name_of(sa)}: no imagePullSecrets registry-credentials for the private registry")
    return problems


def application_problems(repo: Path, apps: list[dict], projects: dict[str, dict], gitops_url: str,
                         rendered: dict[Path, list[dict]]) -> list[str]:
    problems = []
    waves = {a["metadata"]["name"]: int(a["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", 0))
             for a in apps}
    for app in apps:
        name, spec = name_of(app), app["spec"]
        policy = spec.get("syncPolicy", {})
        automated = policy.get("automated", {})
        if automated.get("prune") is not True or automated.get("selfHeal") is not True:
            problems.append(f"{name}: automated sync without prune and selfHeal")
        if "retry" not in policy:
            problems.append(f"{name}: no retry policy")
        if "CreateNamespace=true" not in policy.get("syncOptions", []) and app["metadata"]["name"] != "root":
            problems.append(f"{name}: no CreateNamespace=true")
        project = projects.get(spec["project"])
        if project is None and spec["project"] != "default":
            problems.append(f"{name}: project {spec['project']} does not exist")
        sources = spec.get("sources") or [spec["source"]]
        for src in sources:
            if project and src["repoURL"] not in project["spec"]["sourceRepos"]:
                problems.append(f"{name}: source {src['repoURL']} is not allowed by project {spec['project']}")
            if src.get("chart"):
                if not EXACT_VERSION.match(str(src.get("targetRevision", ""))):
                    problems.append(f"{name}: chart {src['chart']} is not pinned to an exact version")
                for values in src.get("helm", {}).get("valueFiles", []):
                    if not (repo / values.removeprefix("$values/")).exists():
                        problems.append(f"{name}: values file {values} does not exist in the repo")
            elif src["repoURL"] == gitops_url and "path" in src:
                if not (repo / src["path"] / "kustomization.yaml").exists():
                    problems.append(f"{name}: path {src['path']} has no kustomization.yaml")
                else:
                    for obj in rendered.get(repo / src["path"], []):
                        provider = CRD_PROVIDERS.get(obj.get("apiVersion", "").split("/")[0])
                        if provider and provider in waves and waves[provider] >= waves[app["metadata"]["name"]]:
                            problems.append(f"{name}: uses {obj['kind']} from {provider} but does not sync after it "
                                            f"(waves {waves[provider]} >= {waves[app['metadata']['name']]})")
            elif src["repoURL"] != gitops_url:
                problems.append(f"{name}: source {src['repoURL']} is neither a pinned chart nor the gitops repo")
        if project:
            dest = spec["destination"]["namespace"]
            if not any(d["namespace"] in (dest, "*") for d in project["spec"]["destinations"]):
                problems.append(f"{name}: destination {dest} is not allowed by project {spec['project']}")
    return problems


# ----------------------------------------------------------------------------------------- the suite


def validate_repo(repo: Path, registry: str, gitops_url: str, ingress_namespace: str) -> list[str]:
    problems: list[str] = []
    rendered: dict[Path, list[dict]] = {}
    roots = kustomize_roots(repo)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for root, result in zip(roots, pool.map(_render_or_error, roots)):
            if isinstance(result, RenderError):
                problems.append(str(result))
            else:
                rendered[root] = result
    every = [obj for objs in rendered.values() for obj in objs] + [obj for _, obj in plain_manifests(repo)]
    for obj in every:
        problems += schema_problems(obj)
    for overlay in OVERLAYS:
        objects = rendered.get(repo / overlay, [])
        if not objects:
            problems.append(f"{overlay}: renders nothing")
            continue
        problems += image_problems(objects, registry)
        problems += container_problems(objects)
        problems += calls(objects)[1]
        problems += service_problems(objects)
        problems += hpa_problems(objects)
        problems += network_policy_problems(objects, ingress_namespace)
        problems += namespace_problems(objects)
    apps = [o for o in every if o.get("kind") == "Application"]
    projects = {o["metadata"]["name"]: o for o in every if o.get("kind") == "AppProject"}
    problems += application_problems(repo, apps, projects, gitops_url, rendered)
    return problems


def objects_of(repo: Path, relative: str) -> list[dict]:
    return kustomize(repo / relative)


def all_kinds(repo: Path) -> Iterable[tuple[str, str]]:
    for root in kustomize_roots(repo):
        for obj in kustomize(root):
            yield obj["apiVersion"], obj["kind"]


def in_pool(address: str, pool: str) -> bool:
    first, last = (ipaddress.IPv4Address(p) for p in pool.split("-"))
    return first <= ipaddress.IPv4Address(address) <= last
