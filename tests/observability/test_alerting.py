"""Alert rules, Alertmanager routing and the Slack messages, with real Prometheus tools.

Versions: promtool, amtool, and the Prometheus and Alertmanager servers are built at the versions the lab's
cluster runs (Prometheus v3.14.0, Alertmanager v0.34.0: the same builds as the lab's images) from the Go
module proxy (tools/gobuild.py; their web UIs are left out); Slack is a stand-in (tests/slack_stand_in.py);
the rules are also unit-tested with Debian's promtool 2.42.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, unavailable
from tests.observability.stack import alertmanager_config, write_rules_file
from tests.processes import free_port, stop_process
from tests.slack_stand_in import SlackStandIn
from tools.gobuild import ToolUnavailable, go_tool

DEBIAN = {"promtool": "/usr/bin/promtool", "prometheus": "/usr/bin/prometheus"}


@pytest.fixture(scope="module")
def repo(sandbox_gitops_repo):
    return sandbox_gitops_repo


def built(name: str) -> Path:
    try:
        return go_tool(name)
    except ToolUnavailable as exc:
        unavailable(str(exc))
        raise


def debian(name: str) -> str:
    if not Path(DEBIAN[name]).exists():
        unavailable(f"{DEBIAN[name]} is missing: apt-get install prometheus prometheus-alertmanager")
    return DEBIAN[name]


@pytest.fixture(scope="module", params=["promtool 3.x (cluster)", "promtool 2.42 (Debian)"])
def promtool(request):
    return str(built("promtool")) if "3.x" in request.param else debian("promtool")


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------------------- rules


def test_rules_pass_promtool_check(repo, promtool, tmp_path):
    rules = write_rules_file(repo, tmp_path / "rules.yaml")
    proc = run([promtool, "check", "rules", str(rules)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 10 rules found" in proc.stdout  # 8 alerts, 2 recording rules


def test_rules_unit_tests(repo, promtool, tmp_path):
    write_rules_file(repo, tmp_path / "rules.yaml")
    shutil.copy(REPO / "tests" / "observability" / "rules_test.yaml", tmp_path / "rules_test.yaml")
    proc = run([promtool, "test", "rules", "rules_test.yaml"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("controller", ["traefik", "ingress-nginx"])
def test_storefront_alerts_work_with_either_ingress_controller(controller, sandbox_settings, promtool, tmp_path):
    """The storefront's alerts from each controller's own metrics (their names and labels as each exports
    them), through the recording rules rendered for that controller."""
    from dataclasses import replace

    from tasks.gitops_repo import render_gitops_repo

    settings = replace(sandbox_settings, ingress_controller=controller, gitops_apps_left_out={})
    repo = render_gitops_repo(settings, tmp_path / "repo", "a" * 40)
    write_rules_file(repo, tmp_path / "rules.yaml")
    test_file = f"rules_test_storefront_{controller}.yaml"
    shutil.copy(REPO / "tests" / "observability" / test_file, tmp_path / test_file)
    proc = run([promtool, "test", "rules", test_file], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    other = "nginx_ingress_controller" if controller == "traefik" else "traefik_service"
    assert other not in (tmp_path / "rules.yaml").read_text()


def test_rule_unit_tests_fail_when_a_rule_is_wrong(repo, promtool, tmp_path):
    """The unit tests can fail: with the crash-loop threshold raised they must."""
    rules = write_rules_file(repo, tmp_path / "rules.yaml")
    wrong = rules.read_text().replace('[5m])) >= 1', '[5m])) >= 2')  # the CrashLoopBackOff threshold
    assert wrong != rules.read_text(), "the control case no longer finds the threshold it changes"
    rules.write_text(wrong)
    shutil.copy(REPO / "tests" / "observability" / "rules_test.yaml", tmp_path / "rules_test.yaml")
    proc = run([promtool, "test", "rules", "rules_test.yaml"], cwd=tmp_path)
    assert proc.returncode != 0 and "BoutiquePodCrashLooping" in proc.stdout + proc.stderr


def test_every_alert_has_summary_description_and_a_runbook_entry(repo):
    rules = yaml.safe_load(write_rules_file(repo, repo.parent / "rules-check.yaml").read_text())
    runbook = (repo / "RUNBOOK.md").read_text().lower()
    alerts = [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]
    assert len(alerts) == 8
    for group in rules["groups"]:
        for rule in (r for r in group["rules"] if "alert" in r):  # recording rules carry no annotations
            annotations = rule["annotations"]
            assert annotations["summary"] and annotations["description"], rule["alert"]
            anchor = annotations["runbook_url"].split("#")[1]
            assert f"## {anchor}" in runbook, f"{rule['alert']}: RUNBOOK.md has no entry #{anchor}"
            assert rule["labels"]["severity"] in ("warning", "critical")


# ----------------------------------------------------------------------------------------- routing


@pytest.fixture(scope="module")
def amtool():
    return str(built("amtool"))


@pytest.fixture(scope="module")
def am_config_file(repo, tmp_path_factory):
    path = tmp_path_factory.mktemp("am") / "alertmanager.yaml"
    path.write_text(yaml.safe_dump(alertmanager_config(repo), sort_keys=False))
    return path


def test_alertmanager_config_is_valid_as_the_chart_receives_it(amtool, am_config_file):
    proc = run([amtool, "check-config", str(am_config_file)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    config = yaml.safe_load(am_config_file.read_text())
    slack = config["receivers"][1]["slack_configs"][0]
    assert "api_url" not in slack and slack["api_url_file"].startswith("/etc/alertmanager/secrets/")
    assert slack["send_resolved"] is True


@pytest.mark.parametrize("labels, receiver", [
    ({"alertname": "BoutiquePodCrashLooping", "namespace": "boutique-dev", "severity": "warning"}, "slack"),
    ({"alertname": "KubePodCrashLooping", "namespace": "boutique-prod", "severity": "warning"}, "slack"),
    ({"alertname": "LabNodeUnderPressure", "severity": "warning"}, "slack"),
    ({"alertname": "KubeNodePressure", "severity": "info"}, "slack"),
    ({"alertname": "NodeMemoryHighUtilization", "severity": "warning"}, "slack"),
    ({"alertname": "NodeFilesystemSpaceFillingUp", "severity": "critical"}, "slack"),
    ({"alertname": "BoutiqueServiceUnavailable", "namespace": "boutique-prod", "severity": "critical"}, "slack"),
    ({"alertname": "Watchdog", "severity": "none"}, "null"),
    ({"alertname": "InfoInhibitor", "severity": "none"}, "null"),
    ({"alertname": "CPUThrottlingHigh", "severity": "info"}, "null"),
])
def test_routing_sends_each_alert_where_it_belongs(amtool, am_config_file, labels, receiver):
    proc = run([amtool, "config", "routes", "test", f"--config.file={am_config_file}",
                *[f"{k}={v}" for k, v in labels.items()]])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == receiver


# ----------------------------------------------------------------------------------------- end to end


class Exporter:
    """Serves kube-state-metrics- and node-exporter-shaped series: one crash-looping Online Boutique pod and
    one node under memory pressure, until `heal()`."""

    def __init__(self) -> None:
        self.healthy = False
        self.restarts = 0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                exporter.restarts += 0 if exporter.healthy else 1
                crash, pressure = (0, 0) if exporter.healthy else (1, 1)
                body = (
                    f'kube_pod_container_status_waiting_reason{{namespace="boutique-dev",pod="cartservice-7d9f",'
                    f'container="server",reason="CrashLoopBackOff"}} {crash}\n'
                    f'kube_pod_container_status_restarts_total{{namespace="boutique-dev",pod="cartservice-7d9f",'
                    f'container="server"}} {exporter.restarts}\n'
                    f'kube_pod_container_info{{namespace="boutique-dev",pod="cartservice-7d9f",container="server",'
                    f'image="cartservice"}} 1\n'
                    f'kube_node_status_condition{{node="k8s-worker1",condition="MemoryPressure",status="true"}} {pressure}\n'
                    f'kube_node_status_condition{{node="k8s-worker1",condition="Ready",status="true"}} 1\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def heal(self) -> None:
        self.healthy = True


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(predicate, timeout: float, what: str, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]) for p in logs)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def test_both_user_alerts_reach_slack_and_resolve(repo, tmp_path):
    """Prometheus scrapes the exporter, evaluates the project's rules, Alertmanager routes with the
    project's config to the Slack stand-in. Shortened by the test, and only here: every `for:` to 2s,
    every range window to 5s (so a healed pod resolves in seconds, not after the 5m max_over_time),
    Alertmanager's group_wait/group_interval to 1s/2s, scrape and evaluation to 1s; the webhook URL file
    points at the sink."""
    prometheus_bin = str(built("prometheus"))
    alertmanager_bin = str(built("alertmanager"))
    exporter, sink = Exporter(), SlackStandIn()
    prom_port, am_port = free_port(), free_port()

    write_rules_file(repo, tmp_path / "rules.yaml", shorten_for="2s", shorten_ranges="5s")
    (tmp_path / "prometheus.yaml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
        # honor_labels as on kube-state-metrics' ServiceMonitor: the series keep their own namespace label
        "scrape_configs": [{"job_name": "kube-state-metrics", "honor_labels": True,
                            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}]}],
    }))
    config = alertmanager_config(repo)
    config["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    webhook_file = tmp_path / "slack-webhook-url"
    webhook_file.write_text(sink.url)
    for receiver in config["receivers"]:
        for slack in receiver.get("slack_configs", []):
            slack["api_url_file"] = str(webhook_file)
    (tmp_path / "alertmanager.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    logs = [tmp_path / "prometheus.log", tmp_path / "alertmanager.log"]
    started = time.monotonic()
    processes = [
        start([alertmanager_bin, f"--config.file={tmp_path / 'alertmanager.yaml'}",
               f"--storage.path={tmp_path / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
               "--cluster.listen-address="], logs[1]),  # no gossip: a single instance
        start([prometheus_bin, f"--config.file={tmp_path / 'prometheus.yaml'}",
               f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}",
               "--rules.alert.resend-delay=1s"], logs[0]),
    ]
    try:
        wait_for(lambda: sink.find("firing", "BoutiquePodCrashLooping") and sink.find("firing", "LabNodeUnderPressure"),
                 90, "both alerts to reach the Slack stand-in", logs)
        fired_after = time.monotonic() - started
        crash = sink.find("firing", "BoutiquePodCrashLooping")[0]
        assert crash["title"] == "[FIRING:1] BoutiquePodCrashLooping in boutique-dev"
        assert "Pod boutique-dev/cartservice-7d9f is crash-looping" in crash["text"]
        assert "Pod: `cartservice-7d9f`" in crash["text"] and "Severity: `warning`" in crash["text"]
        assert "RUNBOOK.md#boutiquepodcrashlooping" in crash["text"]
        assert crash["color"] == "warning"
        node = sink.find("firing", "LabNodeUnderPressure")[0]
        assert "Node k8s-worker1 reports MemoryPressure" in node["text"] and "Node: `k8s-worker1`" in node["text"]
        assert all(m.get("channel") == "#boutique-alerts" for m in sink.messages)

        exporter.heal()
        wait_for(lambda: sink.find("resolved", "BoutiquePodCrashLooping") and sink.find("resolved", "LabNodeUnderPressure"),
                 90, "both alerts to be resolved in Slack", logs)
        assert sink.find("resolved", "LabNodeUnderPressure")[0]["color"] == "good"
        print(f"end-to-end: firing in Slack after {fired_after:.1f}s, resolved after {time.monotonic() - started:.1f}s")
    finally:
        for proc in processes:
            stop_process(proc)
        exporter.server.shutdown()
        sink.close()
