"""The user's verification plan, step by step, on the live lab (see conftest.py for how to run it).

Each test records its outcome and duration for the report. Deadlines are generous for a home lab and
named in each failure message."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from tests.acceptance import checks
from tests.acceptance.report import latency_samples_from_k6_csv
from tests.conftest import REPO

PROD, DEV = "boutique-prod", "boutique-dev"
PRODUCT = "OLJCESPC7Z"  # one of Online Boutique's product ids, listed on the home page
MONITORING_PROXY = "/api/v1/namespaces/monitoring/services/http:kube-prometheus-stack-{}:{}/proxy"


def vip(settings) -> str:
    return str(settings.metallb_pool[0])


def storefront_get(settings, path: str = "/", host: str | None = None, timeout: float = 5) -> requests.Response:
    return requests.get(f"http://{vip(settings)}{path}", headers={"Host": host or settings.storefront_host_prod},
                        timeout=timeout)


def test_every_boutique_deployment_is_available(live, results):
    _, cluster = live
    with results.check("every Online Boutique Deployment available (dev and prod)") as entry:
        problems = checks.unavailable_deployments(cluster, PROD) + checks.unavailable_deployments(cluster, DEV)
        entry["detail"] = "; ".join(problems) or "all available"
        assert not problems


def test_storefront_answers_through_the_metallb_vip_with_products(live, results):
    settings, _ = live
    with results.check(f"storefront through the MetalLB VIP {vip(settings)} lists products") as entry:
        response = storefront_get(settings)
        entry["detail"] = f"HTTP {response.status_code}"
        assert response.status_code == 200 and f"/product/{PRODUCT}" in response.text


def test_argocd_applications_are_synced_and_healthy_with_history(live, results):
    _, cluster = live
    with results.check("Argo CD applications Synced and Healthy, with history") as entry:
        apps = checks.argocd_applications(cluster)
        bad = [a for a in apps if a["sync"] != "Synced" or a["health"] != "Healthy" or a["history"] < 1]
        entry["detail"] = f"{len(apps)} applications; not ready: {[a['name'] for a in bad]}"
        assert apps and not bad


def test_a_force_deleted_pod_is_replaced(live, results):
    _, cluster = live
    with results.check("self-healing: a force-deleted frontend pod is replaced and Ready within 120 s") as entry:
        entry["detail"] = checks.replace_a_pod(cluster, PROD, "app=frontend", timeout_s=120)


def test_argo_cd_reverts_a_hand_made_change(live, results):
    _, cluster = live
    deployment = cluster.get("apps/v1", "Deployment", "frontend", PROD)
    original = checks.image_of(deployment, "server")
    with results.check("drift repair: Argo CD reverts a hand-edited image within 180 s") as entry:
        checks.change_image_by_hand(cluster, PROD, "frontend", "server", original + "-drift", timeout_s=60)
        checks.wait_image(cluster, PROD, "frontend", "server", original, timeout_s=180)
        entry["detail"] = f"back on {original}"


def _gitlab(settings):
    from tasks import gitlab_api
    from tasks.state import LocalState

    gl = gitlab_api.gitlab_client(settings, LocalState(settings.state_path))
    return gl, gitlab_api.gitops_project(gl, settings)


def test_a_new_tag_in_gitops_repo_rolls_out_without_downtime(live, results):
    """Commit the dev overlay's frontend tag as prod's (a promotion), watch the rollout while polling the
    storefront, then put the old tag back."""
    from tasks.gitlab_api import ensure_files_committed

    settings, cluster = live
    gl, project = _gitlab(settings)
    path = "apps/online-boutique/overlays/prod/kustomization.yaml"
    current = base64.b64decode(gl.get(f"/projects/{project['id']}/repository/files/{quote(path, safe='')}",
                                      ref="main")["content"]).decode()
    before = checks.image_of(cluster.get("apps/v1", "Deployment", "frontend", PROD), "server")
    old_tag = before.rsplit(":", 1)[1]
    new_tag = checks.image_of(cluster.get("apps/v1", "Deployment", "frontend", DEV), "server").rsplit(":", 1)[1]
    if new_tag == old_tag:
        pytest.skip("dev and prod run the same frontend tag: build a new commit in app-repo first (pipeline)")
    failures, polls, stop = [], [0], threading.Event()

    def poll():
        while not stop.is_set():
            polls[0] += 1
            try:
                if storefront_get(settings, timeout=3).status_code != 200:
                    failures.append(time.time())
            except requests.RequestException:
                failures.append(time.time())
            time.sleep(0.5)
    watcher = threading.Thread(target=poll, daemon=True)
    with results.check("rolling update: a new tag committed to gitops-repo rolls out, storefront always up") as entry:
        watcher.start()
        try:
            ensure_files_committed(gl, project["id"], "main", {path: current.replace(old_tag, new_tag)},
                                   "acceptance: roll frontend forward [skip ci]", [])
            checks.wait_image(cluster, PROD, "frontend", "server", before.replace(old_tag, new_tag), timeout_s=300)
            cluster.wait_rolled_out("Deployment", "frontend", PROD, timeout_s=300)
        finally:
            stop.set()
            watcher.join()
            ensure_files_committed(gl, project["id"], "main", {path: current}, "acceptance: roll back [skip ci]", [])
        entry["detail"] = f"{old_tag[:8]} -> {new_tag[:8]}; {len(failures)} failed of {polls[0]} storefront polls"
        assert not failures


def _alerts(cluster) -> list[dict]:
    return cluster.get_path(MONITORING_PROXY.format("alertmanager", 9093) + "/api/v2/alerts")


def test_a_crash_looping_pod_raises_an_alert(live, results):
    _, cluster = live
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "acceptance-crashloop", "namespace": DEV,
                                                           "labels": {"app": "acceptance-crashloop"}},
           "spec": {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "crash", "image": "registry.k8s.io/pause:3.10.2",
                                    "command": ["/does-not-exist"],
                                    "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                                        "runAsUser": 65534, "capabilities": {"drop": ["ALL"]}}}]}}
    with results.check("alerting: a crash-looping pod raises BoutiquePodCrashLooping in Alertmanager") as entry:
        cluster.apply(pod)
        try:
            found = checks.wait_for(
                "BoutiquePodCrashLooping for acceptance-crashloop in Alertmanager",
                lambda: [a for a in _alerts(cluster) if a["labels"].get("alertname") == "BoutiquePodCrashLooping"
                         and a["labels"].get("pod") == "acceptance-crashloop"], timeout_s=600, interval=10)
            entry["detail"] = f"receivers: {[r['name'] for r in found[0].get('receivers', [])]}"
        finally:
            cluster.delete("v1", "Pod", "acceptance-crashloop", DEV, grace_period_s=0)


def _prometheus(cluster, query: str) -> list[dict]:
    answer = cluster.get_path(MONITORING_PROXY.format("prometheus", 9090) + "/api/v1/query", query=[("query", query)])
    return answer["data"]["result"]


def test_the_hpa_scales_out_under_the_ramp_and_back_in(live, results):
    settings, cluster = live
    hpa_before = cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", "frontend", PROD)
    minimum = hpa_before["spec"].get("minReplicas", 1)
    samples, stop, started = [], threading.Event(), time.monotonic()

    def sample():
        while not stop.is_set():
            hpa = cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", "frontend", PROD)
            status = hpa.get("status") or {}
            cpu = next((m["resource"]["current"].get("averageUtilization") for m in status.get("currentMetrics") or []
                        if m.get("type") == "Resource"), None)
            samples.append({"t": round(time.monotonic() - started), "replicas": status.get("currentReplicas"),
                            "cpu_percent": cpu})
            time.sleep(5)
    sampler = threading.Thread(target=sample, daemon=True)
    with results.check("autoscaling: k6 ramp scales the frontend out, the quiet tail scales it back in") as entry:
        sampler.start()
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = Path(tmp) / "k6.csv"
            k6 = Path(sys.executable).with_name("k6")
            proc = subprocess.run([str(k6), "run", "--no-usage-report", "--quiet", "--out", f"csv={csv_path}",
                                   "-e", f"BASE_URL=http://{vip(settings)}", "-e",
                                   f"HOST_HEADER={settings.storefront_host_prod}",
                                   "-e", f"PEAK_VUS={settings.loadtest_peak_users}",
                                   "-e", f"P95_MS={settings.loadtest_p95_ms}",
                                   "-e", f"ERROR_RATE={settings.loadtest_error_rate}",
                                   str(REPO / "files" / "loadtest" / "storefront.js")], capture_output=True, text=True)
            latency = {s["t"]: s for s in latency_samples_from_k6_csv(csv_path)}
        peak = max((s["replicas"] or 0) for s in samples)
        checks.wait_for("the frontend HPA back at its minimum",
                        lambda: (cluster.get("autoscaling/v2", "HorizontalPodAutoscaler", "frontend", PROD)
                                 .get("status") or {}).get("currentReplicas") == minimum, timeout_s=600, interval=15)
        stop.set()
        sampler.join()
        results.samples = [{**s, **latency.get(float(s["t"]), {})} for s in samples]
        entry["detail"] = f"replicas {minimum} -> {peak} -> {minimum}; k6 exit {proc.returncode}"
        assert peak > minimum, "the ramp did not scale the frontend out"
    # The bottleneck read-out at the peak: the container closest to (or over) its CPU request.
    saturation = _prometheus(cluster, 'max by (container) (max_over_time((sum by (container, pod) (rate('
                             f'container_cpu_usage_seconds_total{{namespace="{PROD}",container!=""}}[1m])) / '
                             f'sum by (container, pod) (kube_pod_container_resource_requests{{namespace="{PROD}",'
                             'resource="cpu"}))[15m:30s]))')
    if saturation:
        top = max(saturation, key=lambda r: float(r["value"][1]))
        peak_latency = max(results.samples, key=lambda s: s.get("p95_ms") or 0)
        results.bottleneck = {"service": top["metric"].get("container", "?"), "cpu_saturation": float(top["value"][1]),
                              "p50_ms": peak_latency.get("p50_ms", 0), "p95_ms": peak_latency.get("p95_ms", 0),
                              "p99_ms": peak_latency.get("p99_ms", 0)}
    print(json.dumps(results.bottleneck))
