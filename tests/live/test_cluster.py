"""The lab's real three-node cluster after the deploy: nodes Ready, cluster DNS, pod traffic across nodes and
through a Service (kube-proxy), a volume through the default StorageClass, and every image pulled from the
private registry (the stand-in for GitLab's registry on the platform host) with credentials."""

from __future__ import annotations

import pytest
import requests

from tasks.images import PULL_USER, Reference, mirror_repository, pull_password
from tasks.settings import CHART_IMAGES
from tasks.state import LocalState
from tests.conftest import SANDBOX, run_lab
from tests.live.conftest import pinned, pulls_by_address, registry_log, run_pod

WORKERS = ("k8s-worker1", "k8s-worker2")


def node_ready(node: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))


def test_three_nodes_are_ready_with_their_roles(cluster):
    nodes = {n["metadata"]["name"]: n for n in cluster.list_objects("v1", "Node")}
    assert sorted(nodes) == ["k8s-master", *WORKERS]
    assert all(node_ready(n) for n in nodes.values()), {k: v["status"]["conditions"] for k, v in nodes.items()}
    assert "node-role.kubernetes.io/control-plane" in nodes["k8s-master"]["metadata"]["labels"]
    for worker in WORKERS:
        assert nodes[worker]["metadata"]["labels"]["lab.gitops/role"] == "worker"


def test_the_system_pods_run_the_catalogs_images(cluster, lab_settings):
    """kubeadm's pods run exactly the catalog's references; the CNI's and storage's their pinned digests."""
    images = {c["image"] for pod in cluster.list_objects("v1", "Pod", "kube-system")
              for c in pod["spec"]["containers"]}
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd", "coredns"):
        assert lab_settings.images[name]["ref"] in images, (name, images)
    assert pinned(lab_settings, "cilium") in images and pinned(lab_settings, "cilium-operator") in images
    provisioner = cluster.list_objects("v1", "Pod", "local-path-storage")
    assert {c["image"] for p in provisioner for c in p["spec"]["containers"]} == {
        pinned(lab_settings, "local-path-provisioner")}
    not_running = [p["metadata"]["name"] for ns in ("kube-system", "local-path-storage")
                   for p in cluster.list_objects("v1", "Pod", ns) if p["status"].get("phase") != "Running"]
    assert not_running == []


def test_coredns_resolves_a_service_name_from_a_pod(cluster, namespace, lab_settings):
    kubernetes_ip = cluster.get("v1", "Service", "kubernetes", "default")["spec"]["clusterIP"]
    phase, log = run_pod(cluster, namespace, "dns", pinned(lab_settings, "busybox"),
                         "nslookup kubernetes.default.svc.cluster.local", node=WORKERS[0])
    assert phase == "Succeeded" and kubernetes_ip in log, log


ECHO = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 2
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      nodeSelector: {lab.gitops/role: worker}
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
           labelSelector: {matchLabels: {app: echo}}}
      containers:
        - name: echo
          image: IMAGE
          command: [sh, -c, "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"]
          ports: [{containerPort: 8080}]
          readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 2}
"""


@pytest.fixture(scope="module")
def echo(cluster, namespace, lab_settings):
    """Two web servers, one on each worker, behind the Service `echo` (port 80)."""
    import yaml

    cluster.apply(yaml.safe_load(ECHO.replace("IMAGE", pinned(lab_settings, "busybox"))), namespace=namespace)
    cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": namespace},
                   "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    cluster.wait_rolled_out("Deployment", "echo", namespace, timeout_s=180)
    pods = cluster.list_objects("v1", "Pod", namespace, "app=echo")
    return {p["spec"]["nodeName"]: (p["metadata"]["name"], p["status"]["podIP"]) for p in pods}


def test_the_deployment_spreads_over_both_workers(echo):
    assert sorted(echo) == list(WORKERS)


def test_a_pod_reaches_a_pod_on_the_other_worker(cluster, namespace, echo, lab_settings):
    name, ip = echo[WORKERS[1]]
    phase, log = run_pod(cluster, namespace, "cross-node", pinned(lab_settings, "busybox"),
                         f"wget -q -T 5 -O - http://{ip}:8080/", node=WORKERS[0])
    assert phase == "Succeeded" and log.strip() == name, log


def test_a_service_is_reached_through_kube_proxy_by_its_name(cluster, namespace, echo, lab_settings):
    names = {pod for pod, _ in echo.values()}
    phase, log = run_pod(cluster, namespace, "via-service", pinned(lab_settings, "busybox"),
                         f"for i in 1 2 3 4 5 6; do wget -q -T 5 -O - http://echo.{namespace}.svc.cluster.local/; done",
                         node=WORKERS[0])
    answers = set(log.split())
    assert phase == "Succeeded" and answers and answers <= names, log


def test_a_volume_from_the_default_storage_class_keeps_its_data(cluster, namespace, lab_settings):
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": namespace},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "64Mi"}}}})
    volume = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    mount = [{"name": "data", "mountPath": "/data"}]
    phase, _ = run_pod(cluster, namespace, "writer", pinned(lab_settings, "busybox"),
                       "echo kept-by-the-volume > /data/proof", volumes=volume, mounts=mount, timeout_s=180)
    assert phase == "Succeeded"
    claim = cluster.get("v1", "PersistentVolumeClaim", "data", namespace)
    assert claim["status"]["phase"] == "Bound" and claim["spec"]["storageClassName"] == "local-path"
    phase, log = run_pod(cluster, namespace, "reader", pinned(lab_settings, "busybox"), "cat /data/proof",
                         volumes=volume, mounts=mount, timeout_s=180)
    assert phase == "Succeeded" and log.strip() == "kept-by-the-volume"


# ------------------------------------------------------------------------------------------ the registry


def test_every_image_was_pulled_from_the_private_registry(lab_settings):
    """The registry's own log: each node fetched the manifests of what it runs; kubeadm's images on the control
    plane, the per-node ones (pause, kube-proxy, Cilium) on every node, the rest on some node."""
    pulls = pulls_by_address(registry_log())
    nodes = {n.hostname: str(n.address) for n in lab_settings.nodes if not n.has_role("platform")}

    def repo(name: str) -> str:
        return mirror_repository(lab_settings, lab_settings.images[name]["ref"])

    for node, address in nodes.items():
        for name in ("pause", "kube-proxy", "cilium"):
            assert repo(name) in pulls.get(address, set()), f"{node} did not pull {name} from the registry"
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"):
        assert repo(name) in pulls.get(nodes["k8s-master"], set()), name
    everyone = set().union(*(pulls.get(a, set()) for a in nodes.values()))
    # The charts' images are pulled when Argo CD syncs their apps, which the deploy does not wait for:
    # test_gitops_loop.py waits for those apps to be Healthy (and nodes hold nothing but catalog images).
    charted = {name for names in CHART_IMAGES.values() for name in names}
    missing = [name for name in lab_settings.needed_images() if repo(name) not in everyone and name not in charted]
    assert missing == [], f"never pulled through the registry: {missing}"


@pytest.mark.parametrize("node", ["k8s-master", *WORKERS])
def test_nothing_but_catalog_images_is_on_a_node(node, lab_settings):
    """Nothing was preloaded or imported: containerd on the node knows only what it pulled by the catalog's names."""
    proc = run_lab("ssh", node, "ctr", "-n", "k8s.io", "images", "ls", "-q", timeout=60)
    assert proc.returncode == 0, proc.stderr
    catalog = {image["ref"] for image in lab_settings.images.values()}
    catalog |= {f"{Reference.parse(image['ref']).registry}/{Reference.parse(image['ref']).repository}@{image['digest']}"
                for image in lab_settings.images.values()}
    names = [line for line in proc.stdout.split() if not line.startswith("sha256:")]
    assert names and set(names) <= catalog, set(names) - catalog


def test_the_registry_refuses_a_pull_without_the_right_credentials(lab_settings):
    state = LocalState(lab_settings.state_path)
    ref = Reference.parse(lab_settings.images["pause"]["ref"])
    url = f"https://{lab_settings.platform.address}/v2/{mirror_repository(lab_settings, str(ref))}/manifests/{ref.tag}"
    accept = {"Accept": "application/vnd.oci.image.manifest.v1+json"}
    anonymous = requests.get(url, headers=accept, verify=str(state.ca_cert), timeout=10)
    wrong = requests.get(url, headers=accept, auth=(PULL_USER, "not-the-password"), verify=str(state.ca_cert), timeout=10)
    right = requests.get(url, headers=accept, auth=(PULL_USER, pull_password(state)), verify=str(state.ca_cert),
                         timeout=10)
    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 401, 200)


def test_the_lab_s_memory_with_the_cluster_running(lab_settings):
    """Measured, not a target: each host's memory cgroup (the lab tool puts every host in one of its own), its
    processes' own memory (rss) apart from the page cache it also counts."""
    from tests.conftest import MEASURED
    from tools.lab.lab import host_cgroups, sandbox_hosts

    rss, usage = {}, {}
    for host in sandbox_hosts():
        memory = next((cg for cg in host_cgroups(host) if "/memory/" in str(cg)), None)
        assert memory is not None and (memory / "memory.stat").exists(), host.name
        stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
        rss[host.name] = (int(stat["total_rss"]) + int(stat["total_mapped_file"])) / 2**20
        usage[host.name] = int((memory / "memory.usage_in_bytes").read_text()) / 2**20
    assert all(mib > 20 for mib in rss.values()), rss
    MEASURED["lab memory with the cluster running (MiB: processes' rss+mapped, per host)"] = ", ".join(
        f"{name} {mib:.0f}" for name, mib in rss.items()) + f"; total {sum(rss.values()):.0f}"
    MEASURED["lab memory cgroups' usage with page cache (MiB, total)"] = f"{sum(usage.values()):.0f}"


def test_the_pin_tool_reads_every_digest_from_the_private_registry(lab_settings, tmp_path):
    """tools/pin_artifacts.py --images against a real registry (the stand-in, with its credentials): the digests
    it reads back are the ones the lab's images lock pins."""
    import json

    from tools import pin_artifacts

    state = LocalState(lab_settings.state_path)
    password = tmp_path / "password"
    password.write_text(pull_password(state))
    lock = tmp_path / "images.lock.json"
    args = ["--images", "--registry", f"https://{lab_settings.platform.address}", "--prefix", "boutique/mirror",
            "--user", PULL_USER, "--password-file", str(password), "--ca-file", str(state.ca_cert), "--lock", str(lock),
            "--inventory", str(SANDBOX)]
    assert pin_artifacts.main(args) == 0
    pulled = [lab_settings.images[name] for name in lab_settings.needed_images()]
    assert json.loads(lock.read_text()) == {image["ref"]: image["digest"] for image in pulled}
    assert pin_artifacts.main([*args, "--check"]) == 0
