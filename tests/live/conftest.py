"""The live lab cluster: the real kubeadm cluster the deploy builds in the lab hosts (tests/conftest.py's
`deployed` fixture), checked through its API with the kubeconfig the deploy fetched, and test workloads
that run in a namespace of their own (removed afterwards)."""

from __future__ import annotations

import re
import time

import pytest
import yaml

from tasks.kube_client import Cluster, ClusterError, connect
from tasks.settings import Settings, load_settings
from tasks.state import LocalState
from tests.conftest import SANDBOX, load_inventory, run_lab

NAMESPACE = "lab-live-tests"


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
