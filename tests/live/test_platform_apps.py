"""The platform apps in the lab, measured (not targets): per app whether the lab runs it (or why it is left
out), the size of each image it runs (built from source, compressed as the registry stores it) and its pods'
memory and CPU from the resource metrics API; and the whole lab's memory and CPU at idle. Written to
reports/platform-apps-lab.json and printed as a table (docs/lab.md copies the latest)."""

from __future__ import annotations

import json
from collections import defaultdict

from kubernetes.utils.quantity import parse_quantity

from tasks.gitops_repo import PLATFORM_APPS, application_names
from tasks.settings import CHART_IMAGES
from tests.conftest import REPO
from tests.live.conftest import wait_for
from tools.images import image_size

MIB = 2**20
INSTANCE = "app.kubernetes.io/instance"


def _usage(items: list[dict]) -> dict[tuple[str, str], tuple[float, float]]:
    """(namespace, pod) -> (memory MiB, CPU millicores), summed over its containers."""
    usage = {}
    for item in items:
        containers = item.get("containers", [])
        memory = sum(float(parse_quantity(c["usage"]["memory"])) for c in containers) / MIB
        cpu = sum(float(parse_quantity(c["usage"]["cpu"])) for c in containers) * 1000
        usage[(item["metadata"]["namespace"], item["metadata"]["name"])] = (memory, cpu)
    return usage


def _pod_metrics(cluster) -> dict[tuple[str, str], tuple[float, float]]:
    try:
        return _usage(cluster.get_path("/apis/metrics.k8s.io/v1beta1/pods").get("items", []))
    except Exception as exc:  # 503 until metrics-server has scraped every kubelet
        print(f"metrics API: {str(exc).splitlines()[0][:200]}")
        return {}


def test_each_platform_app_s_images_memory_and_cpu_in_the_lab_are_reported(cluster, lab_settings):
    in_lab = set(application_names(lab_settings)) - set(lab_settings.gitops_apps_left_out)
    usage = wait_for("pod metrics from metrics-server", lambda: _pod_metrics(cluster), 180, interval=5)
    pods = cluster.list_objects("v1", "Pod")
    per_app: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for pod in pods:
        meta = pod["metadata"]
        for app in PLATFORM_APPS:
            # a chart's release is its app's name; the operator's pods add a suffix (...-prometheus)
            if meta["namespace"] == app.namespace and meta.get("labels", {}).get(INSTANCE, "").startswith(app.name):
                per_app[app.name].append(usage.get((meta["namespace"], meta["name"]), (0.0, 0.0)))
    report: dict[str, dict] = {}
    for app in PLATFORM_APPS:
        if not lab_settings.chooses(app.name):
            continue
        entry: dict = {"images (MiB)": {}}
        if app.name in in_lab:
            entry["in the lab"] = "yes, built from source" if app.chart else "yes (manifests in gitops-repo)"
            entry["images (MiB)"] = {name: round(image_size(name) / MIB, 1) for name in CHART_IMAGES.get(app.name, ())}
            measured = per_app.get(app.name, [])
            entry["pods"] = len(measured)
            entry["memory (MiB)"] = round(sum(m for m, _ in measured), 1)
            entry["CPU (m)"] = round(sum(c for _, c in measured), 1)
        else:
            entry["in the lab"] = f"left out: {lab_settings.gitops_apps_left_out[app.name]}"
        if app.name == "kube-prometheus-stack":
            entry["parts left out"] = dict(lab_settings.monitoring_left_out)
        report[app.name] = entry
    nodes = cluster.get_path("/apis/metrics.k8s.io/v1beta1/nodes").get("items", [])
    totals = _usage([{"metadata": {"namespace": "", "name": n["metadata"]["name"]}, "containers": [n]}
                     for n in nodes])
    report["the lab at idle (every node, metrics API)"] = {
        "memory (MiB)": round(sum(m for m, _ in totals.values()), 1),
        "CPU (m)": round(sum(c for _, c in totals.values()), 1),
        "nodes": len(nodes),
    }
    out = REPO / "reports" / "platform-apps-lab.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nplatform apps in the lab -> {out}")
    for name, entry in report.items():
        print(f"  {name}: {entry}")
    charted_in_lab = [app.name for app in PLATFORM_APPS if app.name in in_lab and app.chart]
    assert charted_in_lab and all(report[name]["pods"] > 0 and report[name]["memory (MiB)"] > 0
                                  for name in charted_in_lab), report
    assert all(size > 0 for entry in report.values() for size in entry.get("images (MiB)", {}).values())
    assert len(nodes) == len([n for n in lab_settings.nodes if n.has_role("control_plane") or n.has_role("worker")])
