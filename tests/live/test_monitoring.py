"""kube-prometheus-stack in the lab, for real: the operator, Prometheus, Alertmanager, node-exporter and
kube-state-metrics built from source at the chart's versions, synced by Argo CD from the lab's Helm repository
(Grafana and the admission webhooks left out: monitoring_left_out in inventories/sandbox.py says why).

Prometheus scrapes every node's exporter, kube-state-metrics and the kubelets, and has the project's rules
(boutique-monitoring); a pod that keeps crashing makes BoutiquePodCrashLooping fire and a worker under memory
pressure LabNodeUnderPressure, and Alertmanager posts both to a Slack stand-in on this machine's lab-bridge
address, at the webhook URL the real Sealed Secrets
controller unsealed from a SealedSecret committed to gitops-repo (as post-bootstrap commits it through
GitLab's API, which cannot run here: this test commits it over SSH to the GitLab SSH endpoint stand-in).
Then both are healed and resolve in Slack. Times go to reports/monitoring-lab.json.

The project's own crash-loop alert is the one measured: kube-prometheus-stack's KubePodCrashLooping waits
15 minutes (`for: 15m`); BoutiquePodCrashLooping says the same after 2 (rules.yaml.j2).
"""

from __future__ import annotations

import base64
import time
from contextlib import contextmanager

import pytest
import yaml

from tasks import sealed_secrets as sealing
from tasks.state import LocalState
from tests.conftest import run_lab
from tests.live.conftest import Measurements, commit_and_push, git, pinned, refresh, wait_for, wait_synced
from tests.slack_stand_in import SlackStandIn
from tools.lab.constants import BRIDGE_ADDR

MONITORING = "monitoring"
PROMETHEUS = f"/api/v1/namespaces/{MONITORING}/services/kube-prometheus-stack-prometheus:http-web/proxy"
ALERTMANAGER = f"/api/v1/namespaces/{MONITORING}/services/kube-prometheus-stack-alertmanager:http-web/proxy"
SYNC_DEADLINE_S = 600  # Argo CD syncs the chart (wave -2), the operator then starts Prometheus and Alertmanager
TARGETS_DEADLINE_S = 180  # two scrapes at the chart's 30 s interval, after Prometheus is up
UNSEAL_DEADLINE_S = 300
# a crash loop within ~30 s, a scrape and an evaluation (30 s each), `for: 2m`, Alertmanager's group_wait 30 s
FIRING_DEADLINE_S = 420
# the next evaluation after healing, then Alertmanager's group_interval (alert_group_interval_s; 5 min at most)
RESOLVED_DEADLINE_S = 420
CRASHING_NAMESPACE = "boutique-dev"  # the rule watches Online Boutique's namespaces
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
WORKERS = "lab.gitops/role=worker"
measure = Measurements("monitoring-lab")
report = measure.report_fixture()


def _through_service(cluster, what: str, path: str, query: tuple[tuple[str, str], ...] = ()):
    try:
        return cluster.get_path(path, query)
    except Exception as exc:  # 503 (after the client's retries) while no pod is ready behind the Service
        print(f"{what}: {str(exc).splitlines()[0][:200]}")
        return None


def prometheus(cluster, path: str, **query: str):
    answer = _through_service(cluster, "Prometheus", f"{PROMETHEUS}/api/v1/{path}", tuple(query.items()))
    return answer.get("data") if isinstance(answer, dict) else None


def alertmanager_alerts(cluster) -> list[dict]:
    return _through_service(cluster, "Alertmanager", f"{ALERTMANAGER}/api/v2/alerts") or []


@pytest.fixture(scope="module")
def stack_ready(cluster):
    """Prometheus and Alertmanager answering through their Services (the operator made them from the chart's
    custom resources)."""
    started = time.monotonic()
    wait_for("Prometheus (kube-prometheus-stack, synced by Argo CD) answering through its Service",
             lambda: prometheus(cluster, "status/buildinfo"), SYNC_DEADLINE_S, interval=5)
    wait_for("Alertmanager answering through its Service",
             lambda: _through_service(cluster, "Alertmanager", f"{ALERTMANAGER}/api/v2/status"),
             SYNC_DEADLINE_S, interval=5)
    measure("Prometheus and Alertmanager answering (from this test's start)", started)


def test_prometheus_is_the_chart_s_release_and_scrapes_every_node_and_kube_state_metrics(cluster, stack_ready):
    build = prometheus(cluster, "status/buildinfo")
    assert build["version"] == "3.14.0", build
    nodes = sorted(n["metadata"]["name"] for n in cluster.list_objects("v1", "Node"))

    def healthy() -> dict | None:
        data = prometheus(cluster, "targets", state="active") or {}
        up: dict[str, set[str]] = {}
        for target in data.get("activeTargets", []):
            if target["health"] == "up":
                up.setdefault(target["labels"].get("job", ""), set()).add(
                    target["labels"].get("node") or target["labels"].get("instance", ""))
        ready = (len(up.get("node-exporter", ())) == len(nodes) and up.get("kube-state-metrics")
                 and len(up.get("kubelet", ())) >= len(nodes) and up.get("apiserver"))
        return up if ready else None

    started = time.monotonic()
    up = wait_for(f"every target up: node-exporter on {nodes}, kube-state-metrics, the kubelets, the API server",
                  healthy, TARGETS_DEADLINE_S, interval=5)
    measure("every scrape target up", started)
    print({job: sorted(targets) for job, targets in up.items()})
    groups = prometheus(cluster, "rules", type="alert")["groups"]
    alerts = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"BoutiquePodCrashLooping", "LabNodeUnderPressure", "KubePodCrashLooping", "Watchdog"} <= alerts


# Series kube-state-metrics exports only while such an object or state exists (none may at this moment).
ONLY_WITH_OBJECTS = ("kube_horizontalpodautoscaler_", "kube_pod_container_status_waiting_reason")


def test_every_metric_the_rules_and_dashboards_use_is_in_the_lab_s_prometheus(cluster, stack_ready):
    """tests/observability checks the rules and dashboards against a list of what the stack exports; here the
    lab's real stack exports them (the ingress controller's and the recording rules' aside)."""
    from tests.observability.test_dashboards import KNOWN_METRICS

    wanted = sorted(name for name, source in KNOWN_METRICS.items()
                    if source in ("kube-state-metrics", "cAdvisor", "node-exporter")
                    and not name.startswith(ONLY_WITH_OBJECTS))
    query = f'count by (__name__) ({{__name__=~"{"|".join(wanted)}"}})'

    missing = set(wanted)

    def exported() -> bool:
        data = prometheus(cluster, "query", query=query) or {}
        missing.difference_update(series["metric"]["__name__"] for series in data.get("result", []))
        if missing:
            print(f"not in Prometheus yet: {sorted(missing)}")
        return not missing

    wait_for(f"every one of {wanted} in the lab's Prometheus", exported, TARGETS_DEADLINE_S, interval=10)


def _crashing_deployment(image: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "crash-probe", "labels": {"app": "crash-probe"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "crash-probe"}},
            "template": {
                "metadata": {"labels": {"app": "crash-probe"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "server", "image": image, "command": ["sh", "-c", "exit 1"],
                                    "resources": {"requests": {"cpu": "5m", "memory": "8Mi"}}}],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def slack(lab_settings, cluster, checkout):
    """The Slack stand-in on this machine's lab-bridge address, its URL sealed with the real controller's
    certificate and committed to boutique-monitoring (where post-bootstrap commits it), unsealed by the
    controller into the Secret Alertmanager reads."""
    stand_in = SlackStandIn(BRIDGE_ADDR)
    started = time.monotonic()
    certificate = sealing.controller_certificate(cluster)
    sealed = sealing.seal(sealing.kubeseal_binary(lab_settings, LocalState(lab_settings.state_path)), certificate,
                          sealing.webhook_secret(stand_in.url))
    assert stand_in.url not in sealed
    git("pull", "-q", "--rebase", "origin", "main", cwd=checkout)
    (checkout / sealing.SEALED_PATH).write_text(sealed)
    kustomization = checkout / sealing.KUSTOMIZATION_PATH
    kustomization.write_text(sealing.with_sealed_resource(kustomization.read_text()))
    wait_synced(cluster, commit_and_push(checkout, "live test: seal the Slack stand-in's webhook"),
                "commit with the sealed Slack webhook")

    refreshed = 0.0

    def unsealed() -> bool:
        nonlocal refreshed
        secret = cluster.get("v1", "Secret", sealing.SECRET_NAME, MONITORING)
        if time.monotonic() - refreshed > 15:  # as GitLab's webhook would, not 3 min of polling
            refresh(cluster, "boutique-monitoring")
            refreshed = time.monotonic()
        url = (secret or {}).get("data", {}).get("url")
        return bool(url) and base64.b64decode(url).decode() == stand_in.url  # this stand-in's, not an earlier one's

    wait_for(f"Secret {MONITORING}/{sealing.SECRET_NAME} unsealed by the controller", unsealed, UNSEAL_DEADLINE_S,
             interval=2)
    measure("sealed Slack webhook committed, unsealed into Alertmanager's Secret", started)
    yield stand_in
    stand_in.close()


def _kubelet_config(node: str, text: str) -> None:
    """Write the kubelet's configuration on `node` and restart it (over the lab's SSH)."""
    encoded = base64.b64encode(text.encode()).decode()
    proc = run_lab("ssh", node, f"echo {encoded} | base64 -d > {KUBELET_CONFIG} && systemctl restart kubelet",
                   timeout=120)
    assert proc.returncode == 0, f"{node}: writing {KUBELET_CONFIG} failed: {proc.stderr}"


@contextmanager
def memory_pressure(node: str):
    """`node` reports MemoryPressure for real, and evicts nothing: a soft eviction threshold above its memory
    with a grace period longer than the test. The kubelet sets the condition (and its taint) as soon as a
    threshold is met and evicts only once its grace period has passed. The original configuration comes back
    (and the kubelet restarts, which clears the condition) afterwards, also on failure."""
    proc = run_lab("ssh", node, "cat", KUBELET_CONFIG, timeout=60)
    assert proc.returncode == 0, f"{node}: reading {KUBELET_CONFIG} failed: {proc.stderr}"
    original = proc.stdout
    config = yaml.safe_load(original)
    config["evictionSoft"] = {"memory.available": "1000Gi"}
    config["evictionSoftGracePeriod"] = {"memory.available": "24h"}
    _kubelet_config(node, yaml.safe_dump(config))
    try:
        yield
    finally:
        _kubelet_config(node, original)


ALERTS = ("BoutiquePodCrashLooping", "LabNodeUnderPressure")  # the user's two alerts, proven together


def wait_in_slack(slack, status: str, what: str, since: float, deadline_s: float) -> None:
    """Every one of ALERTS with `status` (firing, resolved) in the Slack stand-in, each measured from `since`
    as it arrives (Prometheus -> Alertmanager -> the stand-in)."""
    seen: set[str] = set()

    def all_seen() -> bool:
        for alert in ALERTS:
            if alert not in seen and slack.find(status, alert):
                seen.add(alert)
                measure(f"{alert}: {what}", since)
        return seen == set(ALERTS)

    wait_for(f"{' and '.join(ALERTS)} {status} in the Slack stand-in (Prometheus -> Alertmanager)", all_seen,
             deadline_s, interval=5)


def node_condition(cluster, node: str, kind: str) -> str:
    conditions = (cluster.get("v1", "Node", node) or {}).get("status", {}).get("conditions", [])
    return next((c["status"] for c in conditions if c["type"] == kind), "")


def test_a_crash_looping_pod_and_a_node_under_pressure_reach_slack_and_resolve(cluster, lab_settings, stack_ready,
                                                                               slack, argo_polling):
    """Both of the user's alerts, for real, at once (they wait on the same timers, so together they take the
    time of one): a pod that keeps crashing (BoutiquePodCrashLooping) and a worker under memory pressure
    (LabNodeUnderPressure), each from the event to its message in the Slack stand-in, then healed, to the
    resolved message. The commit left to Argo CD's own polling (test_polling.py) waits meanwhile: this test
    neither commits nor refreshes the root app."""
    argo_polling.start()
    node = sorted(n["metadata"]["name"] for n in cluster.list_objects("v1", "Node", label_selector=WORKERS))[-1]
    created_namespace = cluster.get("v1", "Namespace", CRASHING_NAMESPACE) is None
    if created_namespace:
        cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CRASHING_NAMESPACE}})
    try:
        with memory_pressure(node):
            started = time.monotonic()
            cluster.apply(_crashing_deployment(pinned(lab_settings, "busybox")), namespace=CRASHING_NAMESPACE)

            def crash_looping() -> bool:  # restarts: the Waiting state lasts an instant on Kubernetes 1.37
                pods = cluster.list_objects("v1", "Pod", CRASHING_NAMESPACE, "app=crash-probe")
                return any(s.get("restartCount", 0) >= 2
                           for p in pods for s in p.get("status", {}).get("containerStatuses", []))

            wait_for(f"{node} reporting MemoryPressure", lambda: node_condition(cluster, node, "MemoryPressure")
                     == "True", 120, interval=2)
            measure(f"kubelet restarted with the threshold to MemoryPressure on {node}", started)
            wait_for("the crash-probe pod restarted twice", crash_looping, 120, interval=2)
            measure("pod created to its second restart", started)

            wait_in_slack(slack, "firing", "the event to its message in Slack", started, FIRING_DEADLINE_S)
            crash = slack.find("firing", "BoutiquePodCrashLooping")[0]
            assert crash["title"] == f"[FIRING:1] BoutiquePodCrashLooping in {CRASHING_NAMESPACE}", crash
            assert f"Pod {CRASHING_NAMESPACE}/crash-probe-" in crash["text"] and "Severity: `warning`" in crash["text"]
            assert "RUNBOOK.md#boutiquepodcrashlooping" in crash["text"]
            pressure = slack.find("firing", "LabNodeUnderPressure")[0]
            assert f"Node {node} reports MemoryPressure" in pressure["text"] and f"Node: `{node}`" in pressure["text"]
            assert all(m.get("channel") == "#boutique-alerts" for m in slack.messages)
            names = {a["labels"]["alertname"] for a in alertmanager_alerts(cluster)}
            assert {"BoutiquePodCrashLooping", "LabNodeUnderPressure"} <= names, names
            healed = time.monotonic()
            cluster.delete("apps/v1", "Deployment", "crash-probe", CRASHING_NAMESPACE)
        wait_for(f"{node} without MemoryPressure again", lambda: node_condition(cluster, node, "MemoryPressure")
                 == "False", 120, interval=2)
        wait_in_slack(slack, "resolved", "healed to the resolved message in Slack", healed, RESOLVED_DEADLINE_S)
        assert all(slack.find("resolved", alert)[0]["color"] == "good" for alert in ALERTS)
    finally:
        if cluster.get("apps/v1", "Deployment", "crash-probe", CRASHING_NAMESPACE):  # left by a failure above
            cluster.delete("apps/v1", "Deployment", "crash-probe", CRASHING_NAMESPACE)
        if created_namespace:
            cluster.delete("v1", "Namespace", CRASHING_NAMESPACE)


def test_the_webhook_url_is_in_git_only_sealed(checkout, slack):
    """What the commit put in Git is sealed: no URL in clear in gitops-repo."""
    sealed = yaml.safe_load((checkout / sealing.SEALED_PATH).read_text())
    assert sealed["kind"] == "SealedSecret" and "url" in sealed["spec"]["encryptedData"]
    assert "http://" not in (checkout / sealing.SEALED_PATH).read_text()
