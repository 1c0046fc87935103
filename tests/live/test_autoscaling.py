"""Autoscaling in the lab, for real: metrics-server (built from source, synced by Argo CD from the lab's Helm
repository) serves the resource metrics API, and a HorizontalPodAutoscaler scales a CPU-bound Deployment out
under a bounded load and back in after it.

The load is the Deployment's own: every pod burns CPU until one deadline (an absolute time in a ConfigMap,
read at start), then idles. So the load ends by itself even if this test is cut off, and the pods the HPA
adds burn too, as the replicas of a loaded service would. Replicas and CPU are sampled over time into
reports/hpa-lab.json (real data for the acceptance report's plots). The Online Boutique frontend under a
k6/Locust load is the acceptance suite's version of this proof (tests/acceptance).
"""

from __future__ import annotations

import json
import time

import pytest
from kubernetes.utils.quantity import parse_quantity

from tests.acceptance.report import write_report
from tests.conftest import REPO
from tests.live.conftest import pinned, wait_for

METRICS_DEADLINE_S = 300  # Argo CD syncs metrics-server, which then needs two scrapes (15 s apart) per node
LOAD_S = 90  # how long the pods burn CPU: the HPA went to its maximum after 35 s in every run so far
SCALE_IN_DEADLINE_S = 240
MAX_REPLICAS = 3
# Each pod asks for 10m and may use 100m: a burning pod runs at ~1000% of its request against a 50% target,
# so the HPA goes to its maximum; the whole load is at most MAX_REPLICAS x 100m of the lab's 2 CPUs.
REQUEST_CPU, LIMIT_CPU, TARGET_PERCENT = "10m", "100m", 50


def _metrics(cluster, path: str, query: tuple[tuple[str, str], ...] = ()) -> list[dict]:
    try:
        return cluster.get_path(f"/apis/metrics.k8s.io/v1beta1/{path}", query).get("items", [])
    except Exception as exc:  # 503 while the APIService is not Available yet, 404 before it is registered
        print(f"metrics API: {str(exc).splitlines()[0]}")
        return []


def test_metrics_server_serves_every_node_s_cpu_and_memory(cluster):
    nodes = sorted(n["metadata"]["name"] for n in cluster.list_objects("v1", "Node"))

    def every_node() -> list[dict] | None:
        items = _metrics(cluster, "nodes")
        return items if sorted(i["metadata"]["name"] for i in items) == nodes else None

    started = time.monotonic()
    items = wait_for(f"metrics-server's node metrics for {nodes}", every_node, METRICS_DEADLINE_S, interval=5)
    print(f"node metrics for every node after {time.monotonic() - started:.1f}s")
    for item in items:
        assert item["usage"]["cpu"] and item["usage"]["memory"], item
    service = cluster.get("apiregistration.k8s.io/v1", "APIService", "v1beta1.metrics.k8s.io")
    assert any(c["type"] == "Available" and c["status"] == "True" for c in service["status"]["conditions"])


def _cpu_millicores(quantity: str) -> float:
    return float(parse_quantity(quantity) * 1000)


def _burner(namespace: str, image: str) -> list[dict]:
    labels = {"app": "cpu-burner"}
    # busybox sh: spin until the deadline, then sleep (TERM ends it at once).
    script = (
        'trap "exit 0" TERM; while [ "$(date +%s)" -lt "$LOAD_UNTIL" ]; do :; done; '
        "while true; do sleep 1; done"
    )
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "cpu-burner", "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "burner",
                                "image": image,
                                "command": ["sh", "-c", script],
                                "envFrom": [{"configMapRef": {"name": "cpu-load"}}],
                                "resources": {"requests": {"cpu": REQUEST_CPU}, "limits": {"cpu": LIMIT_CPU}},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "cpu-burner", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cpu-burner"},
                "minReplicas": 1,
                "maxReplicas": MAX_REPLICAS,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": TARGET_PERCENT},
                        },
                    }
                ],
                # The lab's test waits minutes, not the default 5-minute scale-down window.
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}},
            },
        },
    ]


@pytest.fixture
def burner(cluster, namespace, lab_settings):
    load_until = int(time.time()) + LOAD_S
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cpu-load", "namespace": namespace},
            "data": {"LOAD_UNTIL": str(load_until)},
        }
    )
    for obj in _burner(namespace, pinned(lab_settings, "busybox")):
        cluster.apply(obj)
    yield load_until
    cluster.delete("autoscaling/v2", "HorizontalPodAutoscaler", "cpu-burner", namespace)
    cluster.delete("apps/v1", "Deployment", "cpu-burner", namespace)


def test_an_hpa_scales_a_cpu_bound_deployment_out_under_load_and_back_in(cluster, namespace, burner):
    load_until = burner
    samples: list[dict] = []
    started = time.monotonic()

    def sample() -> dict:
        deployment = cluster.get("apps/v1", "Deployment", "cpu-burner", namespace) or {}
        hpa = cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", "cpu-burner", namespace) or {}
        pods = _metrics(cluster, f"namespaces/{namespace}/pods", (("labelSelector", "app=cpu-burner"),))
        cpu = sum(_cpu_millicores(c["usage"]["cpu"]) for p in pods for c in p["containers"])
        current = (hpa.get("status", {}).get("currentMetrics") or [{}])[0]
        point = {
            "t": round(time.monotonic() - started, 1),
            "load": time.time() < load_until,
            "replicas": deployment.get("status", {}).get("readyReplicas", 0) or 0,
            "desired": hpa.get("status", {}).get("desiredReplicas"),
            "cpu_millicores": round(cpu, 1),
            "cpu_percent": current.get("resource", {}).get("current", {}).get("averageUtilization"),
        }
        samples.append(point)
        print(point)
        return point

    checks: list[dict] = []

    def report() -> None:
        """The samples as JSON and as the acceptance report's page and plots (reports/hpa-lab/)."""
        results = {
            "title": "HPA in the lab: a CPU-bound Deployment under a bounded load",
            "source": f"live lab, {LOAD_S}s of load, {REQUEST_CPU} requested, {TARGET_PERCENT}% target",
            "workload": "cpu-burner",
            "checks": checks,
            "samples": samples,
        }
        out = REPO / "reports" / "hpa-lab.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=1))
        print(f"HPA samples -> {out}, {write_report(results, REPO / 'reports' / 'hpa-lab')}")

    try:
        scaled_out = wait_for(
            f"the HPA scaling cpu-burner past 1 replica during its {LOAD_S}s of load",
            lambda: (p := sample())["replicas"] > 1 and p,
            max(load_until - time.time(), 1),
            interval=5,
        )
        print(f"scaled out to {scaled_out['replicas']} after {scaled_out['t']}s of load")
        checks.append({"name": "scaled out under load", "passed": True, "seconds": scaled_out["t"],
                       "detail": f"{scaled_out['replicas']} replicas Ready"})
        # The load stops at its deadline; then the HPA takes the replicas back to its minimum.
        while time.time() < load_until:  # sampled to its end, for the plots
            sample()
            time.sleep(min(5, max(load_until - time.time(), 0)))
        load_ended = time.monotonic()
        wait_for(
            f"the HPA scaling cpu-burner back to 1 replica within {SCALE_IN_DEADLINE_S}s after the load",
            lambda: (p := sample())["replicas"] == 1 and p["desired"] == 1,
            SCALE_IN_DEADLINE_S,
            interval=5,
        )
        scale_in_s = time.monotonic() - load_ended
        print(f"scaled back in {scale_in_s:.1f}s after the load ended")
        checks.append({"name": "scaled back in after the load", "passed": True, "seconds": scale_in_s,
                       "detail": "1 replica, desired 1"})
    finally:
        report()
    peak = max(s["replicas"] for s in samples)
    assert peak >= 2, f"the HPA never scaled out: {samples}"
    assert any(s["cpu_millicores"] > 50 for s in samples if s["load"]), "no CPU load was measured during the load"
