"""Grafana dashboards: Grafana's dashboard shape, unique panel ids, datasource uids that exist, PromQL that
parses (promtool), and only metrics the stack really exports."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.conftest import REPO
from tests.observability.stack import dashboards, prometheus_rule
from tests.observability.test_alerting import debian
from tests.validation import gitops

# Metrics the dashboards and rules may use, with where each comes from in this stack. A name not listed
# here is a typo or a metric nobody exports (Online Boutique's services export none).
KNOWN_METRICS = {
    # kube-state-metrics (kube-prometheus-stack subchart)
    "kube_pod_container_status_restarts_total": "kube-state-metrics",
    "kube_pod_container_status_waiting_reason": "kube-state-metrics",
    "kube_pod_container_info": "kube-state-metrics",
    "kube_pod_container_resource_requests": "kube-state-metrics",
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_current_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_status_desired_replicas": "kube-state-metrics",
    "kube_horizontalpodautoscaler_spec_max_replicas": "kube-state-metrics",
    "kube_node_status_condition": "kube-state-metrics",
    "kube_node_status_allocatable": "kube-state-metrics",
    # kubelet's cAdvisor endpoint (kube-prometheus-stack's kubelet ServiceMonitor)
    "container_cpu_usage_seconds_total": "cAdvisor",
    "container_memory_working_set_bytes": "cAdvisor",
    # prometheus-node-exporter (kube-prometheus-stack subchart)
    "node_cpu_seconds_total": "node-exporter",
    "node_memory_MemAvailable_bytes": "node-exporter",
    "node_memory_MemTotal_bytes": "node-exporter",
    "node_filesystem_avail_bytes": "node-exporter",
    "node_filesystem_size_bytes": "node-exporter",
    # the ingress controller: Traefik or Ingress-NGINX (their ServiceMonitors, platform/<controller>/values.yaml)
    "traefik_service_requests_total": "traefik",
    "traefik_service_request_duration_seconds_bucket": "traefik",
    "nginx_ingress_controller_requests": "ingress-nginx",
    "nginx_ingress_controller_request_duration_seconds_bucket": "ingress-nginx",
    # recording rules (platform/boutique-monitoring/rules.yaml): the storefront's traffic, either controller's
    "boutique:storefront_requests:rate5m": "recording rule",
    "boutique:storefront_request_duration_seconds_bucket:rate5m": "recording rule",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "le", "inf"}
PANEL_TYPES = {"timeseries", "logs", "stat", "gauge", "table", "bargauge", "text"}
# Values Grafana substitutes before a query reaches Prometheus, for parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "boutique-prod"}


@pytest.fixture(scope="module")
def repo(sandbox_gitops_repo):
    return sandbox_gitops_repo


@pytest.fixture(scope="module")
def boards(repo):
    found = dashboards(repo)
    assert set(found) == {"online-boutique.json", "lab-capacity.json"}
    return found


def promql_targets(board: dict) -> list[str]:
    return [t["expr"] for p in board["panels"] if p["datasource"]["type"] == "prometheus" for t in p["targets"]]


def metric_names(expr: str) -> set[str]:
    stripped = re.sub(r'\[[^\]]*\]', " ", expr)  # range windows, including Grafana's $__rate_interval
    stripped = re.sub(r'\{[^}]*\}', " ", stripped)  # label matchers
    stripped = re.sub(r'\b(by|without|on|ignoring)\s*\([^)]*\)', " ", stripped)  # grouping labels
    stripped = re.sub(r'"[^"]*"', " ", stripped)
    names = set()
    for match in re.finditer(r'[a-zA-Z_:][a-zA-Z0-9_:]*', stripped):
        following = stripped[match.end():].lstrip()[:1]
        if following == "(" or match.group().lower() in PROMQL_WORDS or re.match(r"^\d", match.group()):
            continue
        if re.fullmatch(r"\d+[smhdwy]", match.group()) or match.group() in ("m", "s", "h"):
            continue
        names.add(match.group())
    return names


def test_dashboards_have_grafanas_shape(boards):
    for name, board in boards.items():
        assert board["uid"] and board["title"] and isinstance(board["schemaVersion"], int), name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["type"] in PANEL_TYPES, f"{name}: panel {panel['id']} type {panel['type']}"
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in "xywh") and grid["x"] + grid["w"] <= 24
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(refs) == len(set(refs)) and all(t.get("expr") for t in panel["targets"])


def test_datasource_uids_exist(repo, boards):
    values = yaml.safe_load((repo / "platform/kube-prometheus-stack/values.yaml").read_text())
    # kube-prometheus-stack provisions its Prometheus datasource with uid "prometheus"; Loki is ours.
    existing = {"prometheus": "prometheus"} | {d["uid"]: d["type"] for d in values["grafana"]["additionalDataSources"]}
    for name, board in boards.items():
        for panel in board["panels"]:
            for ds in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
                assert existing.get(ds["uid"]) == ds["type"], f"{name} panel {panel['id']}: datasource {ds}"


def test_every_promql_expression_parses(boards, tmp_path):
    exprs = [e for board in boards.values() for e in promql_targets(board)]
    for variable, value in GRAFANA_VARIABLES.items():
        exprs = [e.replace(variable, value) for e in exprs]
    rules = {"groups": [{"name": "dashboards", "rules": [{"record": f"dashboard:expr_{i}", "expr": e}
                                                          for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-exprs.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = subprocess.run([debian("promtool"), "check", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_only_metrics_the_stack_exports(repo, boards):
    used = {m for board in boards.values() for e in promql_targets(board) for m in metric_names(e)}
    used |= {m for g in prometheus_rule(repo)["spec"]["groups"] for r in g["rules"] for m in metric_names(r["expr"])}
    assert used - KNOWN_METRICS.keys() == set()
    assert {"traefik_service_requests_total", "boutique:storefront_requests:rate5m"} <= used


def test_metric_name_extraction_catches_a_typo():
    assert metric_names('sum by (pod) (rate(container_cpu_usage_secnds_total{namespace="x"}[5m]))') == \
        {"container_cpu_usage_secnds_total"}


def test_overview_dashboard_covers_what_the_user_reads(boards):
    board = boards["online-boutique.json"]
    text = "\n".join(promql_targets(board))
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}" in text
    assert 'code=~"5.."' in text and "container_cpu_usage_seconds_total" in text
    assert "container_memory_working_set_bytes" in text and "kube_pod_container_status_restarts_total" in text
    assert "status_current_replicas" in text and "status_desired_replicas" in text
    logs = [p for p in board["panels"] if p["type"] == "logs"]
    assert logs and logs[0]["datasource"]["uid"] == "loki" and 'namespace="$namespace"' in logs[0]["targets"][0]["expr"]


def test_dashboards_reach_grafana_as_labelled_configmaps(repo):
    maps = [o for o in gitops.kustomize(repo / "platform/boutique-monitoring") if o["kind"] == "ConfigMap"]
    assert {m["metadata"]["name"] for m in maps} == {"dashboard-online-boutique", "dashboard-lab-capacity"}
    assert all(m["metadata"]["labels"]["grafana_dashboard"] == "1" for m in maps)
    values = yaml.safe_load((repo / "platform/kube-prometheus-stack/values.yaml").read_text())
    assert values["grafana"]["sidecar"]["dashboards"]["enabled"] is True


NODE_TOOLS = REPO / "tests" / "pipeline" / "node_modules"


def typecheck(tmp_path, dashboards: dict[str, str]) -> subprocess.CompletedProcess:
    """tsc against Grafana's published Dashboard type (npm @grafana/schema): each dashboard's JSON as an object
    literal annotated with that type, so unknown properties and wrong types are compile errors."""
    from tests.conftest import unavailable

    tsc = NODE_TOOLS / ".bin" / "tsc"
    if not tsc.exists():
        unavailable("typescript and @grafana/schema are not installed (make pipeline-tools)")
    (tmp_path / "node_modules").symlink_to(NODE_TOOLS)
    files = []
    for name, text in dashboards.items():
        path = tmp_path / f"{name}.ts"
        path.write_text(f'import type {{ Dashboard }} from "@grafana/schema";\nexport const dashboard: Dashboard = {text};\n')
        files.append(str(path))
    return subprocess.run([str(tsc), "--noEmit", "--strict", "--moduleResolution", "bundler", "--module", "esnext",
                           "--target", "es2022", "--skipLibCheck", *files], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)


def test_dashboards_type_check_against_grafanas_schema(repo, tmp_path):
    folder = repo / "platform" / "boutique-monitoring" / "dashboards"
    proc = typecheck(tmp_path, {p.stem: p.read_text() for p in folder.glob("*.json")})
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_type_check_rejects_a_misspelt_property(repo, tmp_path):
    text = (repo / "platform/boutique-monitoring/dashboards/online-boutique.json").read_text()
    proc = typecheck(tmp_path, {"broken": text.replace('"gridPos"', '"gridPoz"', 1)})
    assert proc.returncode != 0 and "gridPoz" in proc.stdout
