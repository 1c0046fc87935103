"""The live lab cluster: the real kubeadm cluster the deploy builds in the lab hosts (tests/conftest.py's
`deployed` fixture), checked through its API with the kubeconfig the deploy fetched, and test workloads
that run in a namespace of their own (removed afterwards)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tasks.kube_client import Cluster, ClusterError, connect
from tasks.settings import Settings, load_settings
from tasks.state import LocalState
from tests.conftest import REPO, SANDBOX, load_inventory, run_lab
from tools.lab.constants import SSH_KEY
from tools.lab.git_server import lab_repo_url

NAMESPACE = "lab-live-tests"
ARGO = "argoproj.io/v1alpha1"
ARGOCD_NAMESPACE = "argocd"
SYNC_DEADLINE_S = 300


# Package scope: torn down once tests/live is done, before tests/releases replaces the lab with another cluster
# (whose CA would refuse this one's client at a session-end teardown).
@pytest.fixture(scope="package")
def lab_settings(deployed) -> Settings:
    """The sandbox's settings as the deploy read them (with the lab's own locks)."""
    return load_settings(load_inventory(SANDBOX), "inventories/sandbox.py")


@pytest.fixture(scope="package")
def cluster(lab_settings) -> Cluster:
    return connect(LocalState(lab_settings.state_path).kubeconfig)


@pytest.fixture(scope="package")
def namespace(cluster):
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    yield NAMESPACE
    cluster.delete("v1", "Namespace", NAMESPACE)


class Measurements:
    """The times a live test module measures: printed as they come, written to reports/<name>.json at the
    module's end (its `report` fixture: `report = measure.report_fixture()`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.times: dict[str, float] = {}

    def __call__(self, what: str, started: float) -> float:
        return self.record(what, time.monotonic() - started)

    def record(self, what: str, seconds: float) -> float:
        """A time measured elsewhere (a thread's)."""
        self.times[what] = round(seconds, 1)
        print(f"{what}: {self.times[what]}s")
        return self.times[what]

    def report_fixture(self):
        @pytest.fixture(scope="module", autouse=True)
        def report():
            yield
            out = REPO / "reports" / f"{self.name}.json"
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps(self.times, indent=2) + "\n")
            print(f"\n{self.name}, measured (s): {self.times} -> {out}")

        return report


def pinned(settings: Settings, name: str) -> str:
    image = settings.images[name]
    return f"{image['ref']}@{image['digest']}"


def run_pod(cluster: Cluster, namespace: str, name: str, image: str, script: str, node: str | None = None,
            volumes: list | None = None, mounts: list | None = None, timeout_s: float = 120) -> tuple[str, str]:
    """Run `script` (sh -c) in a pod to its end; (phase, log). Bounded by `timeout_s`, named in the message."""
    from kubernetes import client

    spec: dict = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                  "containers": [{"name": "main", "image": image, "command": ["sh", "-c", script],
                                  "volumeMounts": mounts or []}],
                  "volumes": volumes or []}
    if node:
        spec["nodeName"] = node
    cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
                   "spec": spec})
    deadline = time.monotonic() + timeout_s
    phase = ""
    while time.monotonic() < deadline:
        phase = (cluster.get("v1", "Pod", name, namespace) or {}).get("status", {}).get("phase", "")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    else:
        raise ClusterError(f"pod {namespace}/{name} did not finish within {timeout_s:.0f}s (phase {phase or 'none'})")
    log = client.CoreV1Api(cluster.api).read_namespaced_pod_log(name, namespace)
    return phase, log


def wait_for(what: str, check, timeout_s: float, interval: float = 1):
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f}s")
        time.sleep(interval)


def manifest(text: str) -> dict:
    return yaml.safe_load(text)


def registry_log() -> str:
    proc = run_lab("ssh", "mini-pc", "journalctl", "-u", "lab-registry", "--no-pager", "-o", "cat", timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def pulls_by_address(log: str) -> dict[str, set[str]]:
    """address -> repositories whose manifests it fetched successfully (the registry's access log)."""
    pulls: dict[str, set[str]] = {}
    pattern = re.compile(r'^(\S+) - \S+ \[[^]]+\] "(?:GET|HEAD) /v2/(\S+)/manifests/\S+ HTTP/[\d.]+" 200 ')
    for line in log.splitlines():
        if m := pattern.match(line):
            pulls.setdefault(m[1], set()).add(m[2])
    return pulls


# ---- gitops-repo over SSH (the GitLab SSH endpoint stand-in on the platform host) and Argo CD


def git_env() -> dict[str, str]:
    ssh = (f"ssh -i {SSH_KEY} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no "
           "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR")
    return dict(os.environ, GIT_SSH_COMMAND=ssh, GIT_TERMINAL_PROMPT="0")


def git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, env=git_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def repo_url(lab_settings) -> str:
    return lab_repo_url(lab_settings.gitlab_group, str(lab_settings.platform.address))


@pytest.fixture(scope="module")
def checkout(repo_url, tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("gitops") / "gitops-repo"
    git("clone", "-q", repo_url, str(work))
    return work


def head(repo_url: str) -> str:
    return git("ls-remote", repo_url, "refs/heads/main").split()[0]


def commit_and_push(work: Path, message: str) -> str:
    identity = ["-c", "user.name=lab live test", "-c", "user.email=live@gitops-lab.invalid"]
    git(*identity, "add", "-A", cwd=work)
    git(*identity, "commit", "-qm", message, cwd=work)
    git("push", "-q", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


def refresh(cluster, app: str = "root") -> None:
    cluster.patch(ARGO, "Application", app, ARGOCD_NAMESPACE,
                  {"metadata": {"annotations": {"argocd.argoproj.io/refresh": "normal"}}}, "lab-live-test", merge=True)


def root_status(cluster) -> dict:
    app = cluster.get(ARGO, "Application", "root", ARGOCD_NAMESPACE) or {}
    status = app.get("status", {})
    return {"sync": status.get("sync", {}).get("status"), "revision": status.get("sync", {}).get("revision"),
            "health": status.get("health", {}).get("status"),
            "conditions": [c.get("message", "")[:300] for c in status.get("conditions", [])]}


def wait_synced(cluster, revision: str, what: str, timeout_s: float = SYNC_DEADLINE_S) -> None:
    last: dict = {}
    refreshed = 0.0

    def synced():
        nonlocal last, refreshed
        last = root_status(cluster)
        if last["sync"] == "Synced" and last["health"] == "Healthy" and last["revision"] == revision:
            return True
        if time.monotonic() - refreshed > 15:
            refresh(cluster)
            refreshed = time.monotonic()
        return False

    deadline = time.monotonic() + timeout_s
    while not synced():
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: the root app did not reach Synced/Healthy at {revision[:12]} within "
                        f"{timeout_s:.0f}s; last status: {last}")
        time.sleep(2)


# ---- commits to argocd/apps: a probe ConfigMap the root app applies (or prunes)

PROBE = "gitops-loop-probe"


def probe(value: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": PROBE, "namespace": ARGOCD_NAMESPACE},
            "data": {"value": value}}


def set_resource(work: Path, name: str, document: str | None) -> None:
    """argocd/apps gets (or loses) the file `<name>.yaml`: what a commit to gitops-repo looks like."""
    kustomization = work / "argocd" / "apps" / "kustomization.yaml"
    data = yaml.safe_load(kustomization.read_text())
    resources = [r for r in data["resources"] if r != f"{name}.yaml"]
    if document is None:
        (work / "argocd" / "apps" / f"{name}.yaml").unlink()
    else:
        (work / "argocd" / "apps" / f"{name}.yaml").write_text(document)
        resources.append(f"{name}.yaml")
    data["resources"] = resources
    kustomization.write_text(yaml.safe_dump(data, sort_keys=False))


def set_probe(work: Path, value: str | None) -> None:
    set_resource(work, PROBE, None if value is None else yaml.safe_dump(probe(value)))


def probe_value(cluster) -> str | None:
    cm = cluster.get("v1", "ConfigMap", PROBE, ARGOCD_NAMESPACE)
    return None if cm is None else cm["data"]["value"]


def back_to(checkout: Path, original: dict[Path, bytes]) -> str | None:
    """argocd/apps as `original` again, as a new commit (history is never rewritten): its revision, or None
    when nothing had changed."""
    for path in (checkout / "argocd" / "apps").iterdir():
        if path not in original:
            path.unlink()
    for path, content in original.items():
        path.write_bytes(content)
    if git("status", "--porcelain", cwd=checkout).strip():
        return commit_and_push(checkout, "live test: back to the seeded tree")
    return None


# Argo CD's own polling, left at its defaults: the app is compared again every timeout.reconciliation
# (120 s) plus up to 60 s of jitter, and the repo-server may answer from its cache of what `main` points at
# (3 min): a commit can take up to about 6 min to be seen without a refresh or a webhook.
POLL_DEADLINE_S = 420


class PolledCommit:
    """One commit left to Argo CD's own polling (no refresh triggered: what an operator gets without GitLab's
    webhook), watched from a thread. Its wait of up to 7 min then runs while another test waits on timers of
    its own (the live alert test starts it) instead of after it. Nothing may refresh the root app or commit
    meanwhile: the tests between start() and result() do neither. Started by whoever comes first."""

    def __init__(self, cluster: Cluster, work: Path) -> None:
        self.cluster, self.work = cluster, work
        self.thread: threading.Thread | None = None
        self.revision = ""
        self.took: float | None = None
        self.last: dict = {}

    def start(self) -> None:
        if self.thread:
            return
        settings = (self.cluster.get("v1", "ConfigMap", "argocd-cm", ARGOCD_NAMESPACE) or {}).get("data") or {}
        assert not {"timeout.reconciliation", "timeout.reconciliation.jitter"} & set(settings), settings
        git("pull", "-q", "--rebase", "origin", "main", cwd=self.work)
        self.original = {p: p.read_bytes() for p in (self.work / "argocd" / "apps").iterdir()}
        set_probe(self.work, "polled")
        started = time.monotonic()
        self.revision = commit_and_push(self.work, "live test: probe for Argo CD's polling")
        self.thread = threading.Thread(target=self._watch, args=(started,), name="argo-cd-polling", daemon=True)
        self.thread.start()
        print(f"commit {self.revision[:12]} left to Argo CD's own polling, watched in the background")

    def _watch(self, started: float) -> None:
        deadline = started + POLL_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                self.last = root_status(self.cluster)
                if self.last["revision"] == self.revision and probe_value(self.cluster) == "polled":
                    self.took = time.monotonic() - started
                    return
            except ClusterError as error:  # one failed read is not the answer; the deadline is
                self.last = {"error": str(error)[:300]}
            time.sleep(1)

    def result(self) -> float:
        """Seconds from the push to the probe live; fails naming what was seen at the deadline."""
        self.start()
        assert self.thread
        self.thread.join(POLL_DEADLINE_S + 30)
        if self.took is None:
            pytest.fail(f"the commit {self.revision[:12]} applied by Argo CD's own polling (no refresh triggered): "
                        f"not within {POLL_DEADLINE_S}s; the root app at the deadline: {self.last}")
        return self.took

    def undo(self) -> None:
        if self.thread:
            self.thread.join(POLL_DEADLINE_S + 30)
            if revision := back_to(self.work, self.original):
                wait_synced(self.cluster, revision, "the polling probe removed")


@pytest.fixture(scope="package")
def argo_polling(lab_settings, cluster, tmp_path_factory):
    """The package's one PolledCommit, in a clone of its own; the probe removed at the end."""
    work = tmp_path_factory.mktemp("polling") / "gitops-repo"
    git("clone", "-q", lab_repo_url(lab_settings.gitlab_group, str(lab_settings.platform.address)), str(work))
    polled = PolledCommit(cluster, work)
    yield polled
    polled.undo()
