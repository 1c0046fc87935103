"""The Kubernetes side of the user's verification plan, as functions over tasks.kube_client.Cluster.

They run against the live lab in tests/acceptance/test_live.py, and the ones that need no running container
run in CI against the real API server fixture (tests/kube/test_acceptance_checks.py)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

from tasks.kube_client import Cluster, ClusterError


class Results:
    """Every check's outcome and duration, for the report (tests/acceptance/report.py)."""

    def __init__(self) -> None:
        self.checks: list[dict] = []
        self.samples: list[dict] = []
        self.bottleneck: dict | None = None

    @contextmanager
    def check(self, name: str) -> Iterator[dict]:
        entry = {"name": name, "passed": False, "seconds": 0.0, "detail": ""}
        started = time.monotonic()
        try:
            yield entry
            entry["passed"] = True
        except BaseException as exc:
            entry["detail"] = entry["detail"] or str(exc).splitlines()[0][:300]
            raise
        finally:
            entry["seconds"] = time.monotonic() - started
            self.checks.append(entry)

    def as_dict(self, title: str, source: str) -> dict:
        return {"title": title, "source": source, "checks": self.checks, "samples": self.samples,
                "bottleneck": self.bottleneck}


def wait_for(what: str, condition: Callable[[], object], timeout_s: float, interval: float = 1.0) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(interval)


def unavailable_deployments(cluster: Cluster, namespace: str) -> list[str]:
    problems = []
    for deployment in cluster.list_objects("apps/v1", "Deployment", namespace):
        want = deployment["spec"].get("replicas", 1)
        have = (deployment.get("status") or {}).get("availableReplicas", 0)
        if have < want:
            problems.append(f"{deployment['metadata']['name']}: {have}/{want} available")
    return problems


def _ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions", []))


def replace_a_pod(cluster: Cluster, namespace: str, selector: str, timeout_s: float, require_ready: bool = True) -> str:
    """Force-delete one pod of `selector` and wait until its ReplicaSet has made a new one (Ready, unless
    require_ready is False: without a kubelet no pod ever turns Ready). Returns the new pod's name."""
    pods = cluster.list_objects("v1", "Pod", namespace, selector)
    if not pods:
        raise ClusterError(f"no pod matches {selector} in {namespace}")
    victim = pods[0]
    owner = victim["metadata"]["ownerReferences"][0]["name"]
    existing = {pod["metadata"]["uid"] for pod in pods}  # the victim's siblings are not replacements
    cluster.delete("v1", "Pod", victim["metadata"]["name"], namespace, grace_period_s=0)

    def replacement() -> str | None:
        for pod in cluster.list_objects("v1", "Pod", namespace, selector):
            same_owner = pod["metadata"].get("ownerReferences", [{}])[0].get("name") == owner
            if same_owner and pod["metadata"]["uid"] not in existing and \
                    not pod["metadata"].get("deletionTimestamp") and (_ready(pod) or not require_ready):
                return pod["metadata"]["name"]
        return None
    return str(wait_for(f"a replacement for pod {victim['metadata']['name']} ({owner})", replacement, timeout_s))


def replicasets_of(cluster: Cluster, namespace: str, deployment: str) -> list[dict]:
    return [rs for rs in cluster.list_objects("apps/v1", "ReplicaSet", namespace)
            if any(o["name"] == deployment for o in rs["metadata"].get("ownerReferences", []))]


def image_of(obj: dict, container: str) -> str:
    containers = obj["spec"]["template"]["spec"]["containers"]
    return next(c["image"] for c in containers if c["name"] == container)


def change_image_by_hand(cluster: Cluster, namespace: str, deployment: str, container: str, image: str,
                         timeout_s: float) -> str:
    """Patch the image as an operator would (another field manager) and wait for the new ReplicaSet it
    makes. Returns that ReplicaSet's name."""
    before = {rs["metadata"]["name"] for rs in replicasets_of(cluster, namespace, deployment)}
    cluster.patch("apps/v1", "Deployment", deployment, namespace,
                  {"spec": {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}},
                  field_manager="acceptance-hand-edit")

    def new_replicaset() -> str | None:
        for rs in replicasets_of(cluster, namespace, deployment):
            if rs["metadata"]["name"] not in before and image_of(rs, container) == image:
                return rs["metadata"]["name"]
        return None
    return str(wait_for(f"a new ReplicaSet of {deployment} with {image}", new_replicaset, timeout_s))


def wait_image(cluster: Cluster, namespace: str, deployment: str, container: str, image: str, timeout_s: float) -> None:
    """Until the Deployment runs `image` again (Argo CD's self-heal reverting a hand-made change)."""
    wait_for(f"{deployment} back on {image}",
             lambda: image_of(cluster.get("apps/v1", "Deployment", deployment, namespace), container) == image,
             timeout_s, interval=2)


def argocd_applications(cluster: Cluster) -> list[dict]:
    apps = []
    for app in cluster.list_objects("argoproj.io/v1alpha1", "Application", "argocd"):
        status = app.get("status") or {}
        apps.append({"name": app["metadata"]["name"], "sync": (status.get("sync") or {}).get("status"),
                     "health": (status.get("health") or {}).get("status"), "history": len(status.get("history") or [])})
    return apps
