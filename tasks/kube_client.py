"""The Kubernetes API from the machine that runs pyinfra, with the `kubernetes` Python client only.

- `connect`: the admin kubeconfig from the state folder; a missing file, an expired client certificate,
  an unreachable API, a TLS failure or refused credentials each end in one `ClusterError` line naming what
  to check.
- `Cluster.apply`: server-side apply with this project's field manager and strict field validation, so a
  misspelt field is an error, not a silent drop. Conflicts are forced only where a caller says why.
- `Cluster.wait_*`: waits that understand Kubernetes (CRDs Established, Deployments and DaemonSets rolled
  out, nodes Ready), each with a deadline and a message naming the object and its last condition.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FIELD_MANAGER = "gitops-lab"
# Answers a busy or recovering control plane gives for a moment: etcd timing out under load and the API server
# restarting (both seen with 16 lab workers compiling Cilium's datapath on two CPUs), 429 from API priority
# and fairness. Such a request is tried again after each delay (a minute in all) before it counts as an error.
TRANSIENT_STATUS = frozenset({429, 502, 503, 504})
RETRY_DELAYS_S = (1, 2, 4, 8, 15, 30)
# etcd's passing troubles, as the API server reports them (500); others (e.g. its space quota) are not passing.
TRANSIENT_ETCD = (b"etcdserver: request timed out", b"etcdserver: leader changed", b"etcdserver: too many requests")


class ClusterError(RuntimeError):
    """One line: what failed, and what to check."""


@dataclass(frozen=True)
class Applied:
    kind: str
    name: str
    namespace: str | None
    outcome: str  # created | configured | unchanged

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} {self.outcome}"


def _client_cert_expiry(kubeconfig: dict) -> dt.datetime | None:
    from cryptography import x509

    contexts = {c["name"]: c["context"] for c in kubeconfig.get("contexts", [])}
    context = contexts.get(kubeconfig.get("current-context", ""), {})
    users = {u["name"]: u.get("user", {}) for u in kubeconfig.get("users", [])}
    data = users.get(context.get("user", ""), {}).get("client-certificate-data")
    if not data:
        return None
    return x509.load_pem_x509_certificate(base64.b64decode(data)).not_valid_after_utc


def connect(kubeconfig: Path, request_timeout: float = 10) -> Cluster:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError, SSLError

    if not kubeconfig.exists():
        raise ClusterError(
            f"no kubeconfig at {kubeconfig}: phase 2 writes it after kubeadm init; run the deploy "
            "with the control plane included, or check state_dir"
        )
    try:
        raw = yaml.safe_load(kubeconfig.read_text()) or {}
        expiry = _client_cert_expiry(raw)
    except (yaml.YAMLError, ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"{kubeconfig} is not a usable kubeconfig ({exc}): delete it and rerun phase 2") from None
    if expiry and expiry < dt.datetime.now(dt.UTC):
        raise ClusterError(
            f"the client certificate in {kubeconfig} expired on {expiry:%Y-%m-%d %H:%M} UTC: run "
            "`kubeadm certs renew admin.conf` on the control plane, then rerun phase 2 to fetch it"
        )
    api = config.new_client_from_config(config_file=str(kubeconfig))
    server = api.configuration.host
    try:
        client.VersionApi(api).get_code(_request_timeout=request_timeout)
    except SSLError as exc:
        raise ClusterError(
            f"TLS with the API server at {server} failed ({_reason(exc)}): check the clocks "
            "(chronyc tracking) and that the kubeconfig belongs to this cluster"
        ) from None
    except HTTPError as exc:
        raise ClusterError(
            f"cannot reach the API server at {server} ({_reason(exc)}): check that the control "
            "plane is up (systemctl status kubelet; crictl ps) and reachable from this machine on "
            "that address"
        ) from None
    except ApiException as exc:
        if exc.status in (401, 403):
            raise ClusterError(
                f"the API server at {server} refused the credentials in {kubeconfig} "
                f"({exc.status}): fetch the kubeconfig again (rerun phase 2)"
            ) from None
        raise ClusterError(f"the API server at {server} answered {exc.status} {exc.reason}") from None
    return Cluster(api)


def _transient(status: int, body: bytes) -> bool:
    return status in TRANSIENT_STATUS or (status == 500 and any(message in body for message in TRANSIENT_ETCD))


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None) or exc
    return str(reason).split(": ", 1)[-1][:160]


class Cluster:
    def __init__(self, api: Any):
        from kubernetes.dynamic import DynamicClient

        self.api = api
        self.dynamic = DynamicClient(api)

    # -------------------------------------------------------------- objects

    def resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            self.dynamic.resources.invalidate_cache()  # a CRD applied moments ago
            try:
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise ClusterError(
                    f"the API server does not serve {kind} ({api_version}): is its CRD installed and Established?"
                ) from None

    def _request(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Iterable[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> dict:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError, SSLError

        request = self.api.param_serialize(
            method,
            path,
            query_params=list(query),
            body=body,
            header_params={"Content-Type": content_type, "Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        for delay in (*RETRY_DELAYS_S, None):
            try:
                response = self.api.call_api(*request, _request_timeout=60)
            except HTTPError as exc:  # no answer at all: refused, reset or timed out (TLS failures are not passing)
                if delay is None or isinstance(exc, SSLError) or isinstance(getattr(exc, "reason", None), SSLError):
                    raise ClusterError(
                        f"the API server at {self.api.configuration.host} did not answer {method} {path} "
                        f"({_reason(exc)}): check kube-apiserver on the control plane (crictl ps; journalctl -u "
                        "kubelet) and rerun"
                    ) from None
                time.sleep(delay)
                continue
            response.read()
            if response.status < 400:
                return json.loads(response.data or b"{}")
            passing = _transient(response.status, response.data or b"") or (
                # Just after a restart the API server refuses even the admin (kubeadm's admin.conf is bound by
                # RBAC, whose cache is not loaded yet): a 403 counts as passing only while it is not ready.
                response.status == 403 and not self._ready()
            )
            if delay is None or not passing:
                raise ApiException(http_resp=response)
            time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _ready(self) -> bool:
        """The API server's own readiness (/readyz: every post-start hook done, RBAC among them)."""
        try:
            request = self.api.param_serialize("GET", "/readyz", auth_settings=["BearerToken"])
            response = self.api.call_api(*request, _request_timeout=10)
            response.read()
        except Exception:  # no answer is not ready
            return False
        return bool(response.status == 200)

    def get_path(self, path: str, query: Iterable[tuple[str, str]] = ()) -> Any:
        """GET of a raw API path, e.g. a Service proxy: /api/v1/namespaces/NS/services/NAME:PORT/proxy/..."""
        return self._request("GET", path, query=query)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        resource = self.resource(api_version, kind)
        try:
            return self._request("GET", resource.path(name=name, namespace=namespace if resource.namespaced else None))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None, grace_period_s: int | None = None
    ) -> None:
        resource = self.resource(api_version, kind)
        query = [("gracePeriodSeconds", str(grace_period_s))] if grace_period_s is not None else []
        self._request(
            "DELETE", resource.path(name=name, namespace=namespace if resource.namespaced else None), query=query
        )

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        patch: dict,
        field_manager: str,
        subresource: str = "",
        merge: bool = False,
    ) -> dict:
        """A strategic-merge patch under another field manager: how a hand-made `kubectl edit` looks. `merge`:
        a JSON merge patch instead (custom resources take no strategic-merge patch)."""
        resource = self.resource(api_version, kind)
        path = resource.path(name=name, namespace=namespace if resource.namespaced else None)
        return self._request(
            "PATCH",
            f"{path}/{subresource}" if subresource else path,
            body=patch,
            query=[("fieldManager", field_manager)],
            content_type="application/merge-patch+json" if merge else "application/strategic-merge-patch+json",
        )

    def list_objects(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str = ""
    ) -> list[dict]:
        resource = self.resource(api_version, kind)
        query = [("labelSelector", label_selector)] if label_selector else []
        return self._request(
            "GET", resource.path(namespace=namespace if resource.namespaced else None), query=query
        ).get("items", [])

    def apply(self, obj: dict, force: bool = False, dry_run: bool = False, namespace: str = "default") -> Applied:
        """Server-side apply of one object; `force` takes over fields another manager owns; `namespace` is
        used for a namespaced object that names none."""
        from kubernetes.client.exceptions import ApiException

        kind, api_version, meta = obj["kind"], obj["apiVersion"], dict(obj.get("metadata", {}))
        if kind == "Namespace" and not meta.get("labels"):
            # An applied object with no field besides its name gets no managedFields entry; the next apply
            # then records "before-first-apply" and counts as a change. One owned label prevents that.
            meta = {**meta, "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER}}
            obj = {**obj, "metadata": meta}
        resource = self.resource(api_version, kind)
        target: str | None = (meta.get("namespace") or namespace) if resource.namespaced else None
        path = resource.path(name=meta["name"], namespace=target)
        before = None if dry_run else self.get(api_version, kind, meta["name"], target)
        query = [("fieldManager", FIELD_MANAGER), ("fieldValidation", "Strict")]
        query += [("force", "true")] if force else []
        query += [("dryRun", "All")] if dry_run else []
        try:
            after = self._request(
                "PATCH", path, body=json.dumps(obj), query=query, content_type="application/apply-patch+yaml"
            )
        except ApiException as exc:
            raise ClusterError(
                f"applying {kind} {target + '/' if target else ''}{meta['name']} failed: {_api_message(exc)}"
            ) from None
        if before is None:
            outcome = "created" if not dry_run else "valid"
        else:
            same = before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
            outcome = "unchanged" if same else "configured"
        return Applied(kind, meta["name"], target, outcome)

    def apply_all(
        self, objects: list[dict], force: bool = False, dry_run: bool = False, namespace: str = "default"
    ) -> list[Applied]:
        """CRDs and Namespaces first (others depend on them), then everything else, in order."""
        first = [o for o in objects if o["kind"] in ("CustomResourceDefinition", "Namespace")]
        rest = [o for o in objects if o["kind"] not in ("CustomResourceDefinition", "Namespace")]
        results = [self.apply(o, force=force, dry_run=dry_run) for o in first]
        crds = [o["metadata"]["name"] for o in first if o["kind"] == "CustomResourceDefinition"]
        if crds and not dry_run:
            self.wait_crds_established(crds)
        return results + [self.apply(o, force=force, dry_run=dry_run, namespace=namespace) for o in rest]

    def apply_into(self, namespace: str, objects: list[dict], force: bool = False) -> list[Applied]:
        """The namespace, then `objects`; a namespaced object that names no namespace lands in it."""
        namespace_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        return self.apply_all([namespace_obj, *objects], force=force, namespace=namespace)

    # -------------------------------------------------------------- waits

    def _wait(self, what: str, check: Callable[[], tuple[bool, str]], timeout_s: float, interval: float = 1) -> None:
        deadline = time.monotonic() + timeout_s
        last = ""
        while True:
            done, last = check()
            if done:
                return
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"{what} not ready after {timeout_s:.0f}s; last condition: {last or 'none reported'}"
                )
            time.sleep(interval)

    def wait_crds_established(self, names: list[str], timeout_s: float = 60) -> None:
        for name in names:

            def check(name: str = name) -> tuple[bool, str]:
                crd = self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name) or {}
                return _condition(crd, "Established")

            self._wait(f"CustomResourceDefinition {name}", check, timeout_s, interval=0.5)
        self.dynamic.resources.invalidate_cache()

    def wait_rolled_out(self, kind: str, name: str, namespace: str, timeout_s: float) -> None:
        def check() -> tuple[bool, str]:
            obj = self.get("apps/v1", kind, name, namespace)
            if obj is None:
                return False, "not found"
            status, generation = obj.get("status", {}), obj["metadata"].get("generation", 0)
            if status.get("observedGeneration", 0) < generation:
                return False, "the controller has not seen the latest change yet"
            if kind == "Deployment":
                want = obj["spec"].get("replicas", 1)
                done = status.get("updatedReplicas", 0) == want and status.get("availableReplicas", 0) == want
                return done, _last_condition(obj) or f"{status.get('availableReplicas', 0)}/{want} available"
            if kind == "StatefulSet":
                want = obj["spec"].get("replicas", 1)
                done = status.get("readyReplicas", 0) == want and status.get("updatedReplicas", 0) == want
                return done, f"{status.get('readyReplicas', 0)}/{want} ready"
            want = status.get("desiredNumberScheduled", 0)
            done = status.get("updatedNumberScheduled", 0) == want and status.get("numberAvailable", 0) == want
            return done, f"{status.get('numberAvailable', 0)}/{want} pods available"

        def check_with_pods() -> tuple[bool, str]:
            done, last = check()
            if done:
                return done, last
            # What holds the pods back says more than the controller's summary ("minimum availability").
            obj = self.get("apps/v1", kind, name, namespace) or {}
            selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            problem = self.pod_problem(namespace, selector) if selector else ""
            return False, f"{last}; {problem}" if problem else last

        self._wait(f"{kind} {namespace}/{name}", check_with_pods, timeout_s)

    def pod_problem(self, namespace: str, labels: dict[str, str]) -> str:
        """The first reason a pod with these labels is not running and ready, or ''."""
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        for pod in self.list_objects("v1", "Pod", namespace, label_selector=selector):
            reason = _pod_reason(pod)
            if reason:
                return f"pod {pod['metadata']['name']}: {reason}"
        return ""

    def wait_nodes_ready(self, names: list[str], timeout_s: float) -> None:
        for name in names:

            def check(name: str = name) -> tuple[bool, str]:
                node = self.get("v1", "Node", name)
                if node is None:
                    return False, "not registered yet"
                ready, text = _condition(node, "Ready")
                pressure = [_condition(node, kind)[1] for kind in PRESSURE_CONDITIONS if _condition(node, kind)[0]]
                if pressure:
                    # Ready, but tainted: nothing new is scheduled there, and its pods are being evicted.
                    return False, f"{'; '.join(pressure)}: free memory or disk there, or adjust kubelet_eviction_hard"
                return ready, text

            self._wait(f"Node {name} (Ready, no resource pressure)", check, timeout_s, interval=2)


PRESSURE_CONDITIONS = ("MemoryPressure", "DiskPressure", "PIDPressure")


def _pod_reason(pod: dict) -> str:
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition["type"] == "PodScheduled" and condition["status"] != "True":
            return f"not scheduled: {condition.get('message') or condition.get('reason', '')}".strip()
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
            return f"container {container['name']} {waiting['reason']}: {waiting.get('message', '')}".strip(": ")
    if status.get("phase") not in ("Running", "Succeeded"):
        return f"{status.get('phase', 'Pending')} {status.get('reason', '')}: {status.get('message', '')}".strip(": ")
    return ""


def _condition(obj: dict, wanted: str) -> tuple[bool, str]:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == wanted:
            text = f"{wanted}={condition['status']} {condition.get('reason', '')}: {condition.get('message', '')}"
            return condition["status"] == "True", text.strip()
    return False, ""


def _last_condition(obj: dict) -> str:
    conditions = (obj.get("status") or {}).get("conditions") or []
    if not conditions:
        return ""
    # The newest condition, a failing one first: "Available=False" explains more than "Progressing=True".
    last = max(
        conditions, key=lambda c: (c["status"] != "True", c.get("lastUpdateTime") or c.get("lastTransitionTime") or "")
    )
    return f"{last['type']}={last['status']} {last.get('reason', '')}: {last.get('message', '')}".strip()


def _api_message(exc: Any) -> str:
    try:
        return json.loads(exc.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


class ManifestLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML loading (libyaml's: large manifests parse ten times faster), plus YAML 1.1's '=' value tag,
    which appears in an enum of Argo CD's ApplicationSet CRD."""


ManifestLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def load_manifests(text: str) -> list[dict]:
    """Every object of a multi-document YAML (Lists flattened, empty documents dropped)."""
    objects: list[dict] = []
    for doc in yaml.load_all(text, Loader=ManifestLoader):
        if not doc:
            continue
        objects += doc["items"] if doc.get("kind", "").endswith("List") and "items" in doc else [doc]
    return objects
