"""The post-bootstrap step end to end against a real kube-apiserver (tests/kube/control_plane.py): Argo CD's
real install manifest by server-side apply, its CRDs Established, the repository Secret, the admin password
file, the root Application, node labels; a second run that changes nothing; deadlines with their messages;
and the one-line errors for a missing kubeconfig, an unreachable API and an expired certificate.

No kubelet runs here, so Argo CD's pods are never started: its rollout waits are tested for their deadline
message, and the bootstrap runs with those waits skipped (`timeout_s=0` is not allowed; see below)."""

from __future__ import annotations

import datetime as dt
import socket
import time
from dataclasses import replace

import pytest

from tasks import argocd, cni, post_bootstrap, storage
from tasks import artifacts as artifacts_module
from tasks.downloads import DownloadError
from tasks.gitops_repo import gitops_repo_url
from tasks.kube_client import ClusterError, connect
from tasks.state import LocalState
from tests.kube.control_plane import issue_client_cert, kubeconfig_text
from tools.upstream import SOURCES, read_file


@pytest.fixture(scope="module")
def argocd_manifest():
    return read_file("argo-cd", "manifests/install.yaml")


@pytest.fixture(scope="module")
def cluster(kube_api):
    return connect(kube_api.kubeconfig)


@pytest.fixture(scope="module")
def settings(sandbox_settings, tmp_path_factory):
    return replace(sandbox_settings, state_dir=str(tmp_path_factory.mktemp("state")))


@pytest.fixture(scope="module")
def state(settings):
    local = LocalState(settings.state_path)
    local.write_private(local.deploy_key, fake_deploy_key())
    local.deploy_key_public.write_text(FAKE_PUBLIC_KEY)
    return local


FAKE_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIfake argocd@gitops-lab\n"


def fake_deploy_key() -> str:
    return "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"


def argocd_steps(cluster, settings, state, manifest, gitops_repo) -> post_bootstrap.Report:
    """post_bootstrap.run's Argo CD part: labels, install, repository access, root app."""
    report = post_bootstrap.Report()
    report.applied += post_bootstrap.label_nodes(cluster, settings)
    report.applied += argocd.install(cluster, manifest, timeout_s=60)
    applied, note = argocd.configure(cluster, state, gitops_repo_url(settings))
    report.applied += applied
    report.notes.append(note)
    report.applied += argocd.activate(cluster, gitops_repo)
    return report


@pytest.fixture(scope="module")
def first_and_second_run(cluster, settings, state, argocd_manifest, sandbox_gitops_repo, monkeypatch_module):
    """Both runs of the bootstrap, with the workload waits replaced (nothing runs pods here)."""
    waited = []
    monkeypatch_module.setattr(cluster, "wait_rolled_out", lambda kind, name, ns, timeout_s: waited.append(name))
    cluster.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-worker1"}})
    started = time.monotonic()
    first = argocd_steps(cluster, settings, state, argocd_manifest, sandbox_gitops_repo)
    first_s = time.monotonic() - started
    started = time.monotonic()
    second = argocd_steps(cluster, settings, state, argocd_manifest, sandbox_gitops_repo)
    from tests.conftest import TIMINGS

    TIMINGS["post-bootstrap first run (Argo CD install, real API server)"] = first_s
    TIMINGS["post-bootstrap second run (no changes)"] = time.monotonic() - started
    return first, second, waited


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_argocd_crds_are_established_and_its_objects_exist(cluster, first_and_second_run):
    first, _, waited = first_and_second_run
    for crd in ("applications.argoproj.io", "applicationsets.argoproj.io", "appprojects.argoproj.io"):
        crd_obj = cluster.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd)
        assert any(c["type"] == "Established" and c["status"] == "True" for c in crd_obj["status"]["conditions"])
    assert cluster.get("apps/v1", "Deployment", "argocd-server", "argocd") is not None
    assert cluster.get("apps/v1", "StatefulSet", "argocd-application-controller", "argocd") is not None
    created = [a for a in first.applied if a.outcome == "created"]
    assert len(created) > 40, "Argo CD's install manifest has dozens of objects"
    workloads = [name for _, name in argocd.WORKLOADS]
    assert waited == workloads * 2  # both runs wait for every Argo CD workload


def test_objects_are_owned_by_the_projects_field_manager(cluster, first_and_second_run):
    server = cluster.get("apps/v1", "Deployment", "argocd-server", "argocd")
    managers = {entry["manager"] for entry in server["metadata"]["managedFields"]}
    assert "gitops-lab" in managers


def test_second_run_applies_the_same_objects_with_no_change(first_and_second_run):
    first, second, _ = first_and_second_run
    assert len(second.applied) == len(first.applied)
    assert second.changed() == [], [str(a) for a in second.changed()]


def test_repository_secret_and_root_application(cluster, settings, first_and_second_run):
    secret = cluster.get("v1", "Secret", "gitops-repo", "argocd")
    assert secret["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository"
    import base64

    assert base64.b64decode(secret["data"]["url"]).decode() == gitops_repo_url(settings)
    assert base64.b64decode(secret["data"]["sshPrivateKey"]).decode() == fake_deploy_key()
    root = cluster.get("argoproj.io/v1alpha1", "Application", "root", "argocd")
    assert root["spec"]["source"]["repoURL"] == gitops_repo_url(settings)
    first, _, _ = first_and_second_run
    assert not any("not-a-real-key" in note for note in first.notes)


def test_node_labels_come_from_the_inventory(cluster, first_and_second_run):
    node = cluster.get("v1", "Node", "k8s-worker1")
    assert node["metadata"]["labels"]["lab.gitops/role"] == "worker"
    assert node["metadata"]["labels"]["node-role.kubernetes.io/worker"] == ""


def test_admin_password_is_a_path_in_the_output_and_0600_on_disk(cluster, state, first_and_second_run):
    import base64

    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "argocd-initial-admin-secret",
                                                                       "namespace": "argocd"},
                   "data": {"password": base64.b64encode(b"s3cret-initial").decode()}})
    note = argocd.save_admin_password(cluster, state)
    target = state.argocd_admin_password
    assert str(target) in note and "s3cret-initial" not in note
    assert target.read_text().strip() == "s3cret-initial" and target.stat().st_mode & 0o777 == 0o600


def test_a_rollout_deadline_names_the_object_and_its_last_condition(kube_api, first_and_second_run):
    started = time.monotonic()
    with pytest.raises(ClusterError) as err:  # a fresh client: the bootstrap fixture replaced the waits
        connect(kube_api.kubeconfig).wait_rolled_out("Deployment", "argocd-server", "argocd", timeout_s=3)
    message = str(err.value)
    assert time.monotonic() - started < 15
    assert message.startswith("Deployment argocd/argocd-server not ready after 3s; last condition: ")
    assert "Available=False" in message or "0/1 available" in message or "Progressing" in message, message


def test_strict_validation_rejects_a_misspelt_field(cluster):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "typo", "namespace": "default"},
          "dataa": {"a": "b"}}
    with pytest.raises(ClusterError) as err:
        cluster.apply(cm)
    assert "ConfigMap default/typo" in str(err.value) and "dataa" in str(err.value)


def test_a_running_api_server_reads_as_ready(cluster):
    # The 403 rule (tasks/kube_client.py) waits only while /readyz says no: a ready server must say yes.
    assert cluster._ready() is True


# ------------------------------------------------------------------------------------------ one-line errors


def test_missing_kubeconfig_is_one_line(tmp_path):
    with pytest.raises(ClusterError) as err:
        connect(tmp_path / "kubeconfig")
    assert "no kubeconfig at" in str(err.value) and "\n" not in str(err.value)


def test_unreachable_api_is_one_line(kube_api, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(kube_api.kubeconfig.read_text().replace(kube_api.server, f"https://127.0.0.1:{closed}"))
    with pytest.raises(ClusterError) as err:
        connect(config, request_timeout=3)
    message = str(err.value)
    assert message.startswith(f"cannot reach the API server at https://127.0.0.1:{closed}") and "\n" not in message


def test_expired_client_certificate_is_one_line(kube_api, tmp_path):
    cert, key = issue_client_cert(kube_api.pki, "old-admin", "system:masters", days=1,
                                  not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=400))
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(kube_api.server, (kube_api.pki / "ca.crt").read_bytes(), cert, key, "old"))
    with pytest.raises(ClusterError) as err:
        connect(config)
    message = str(err.value)
    assert "expired on" in message and "kubeadm certs renew admin.conf" in message and "\n" not in message


def test_refused_credentials_are_one_line(kube_api, tmp_path):
    from tasks.certificates import ensure_ca

    other = tmp_path / "other-pki"
    ensure_ca(other, "some other cluster")
    cert, key = issue_client_cert(other, "stranger", "system:masters")
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(kube_api.server, (kube_api.pki / "ca.crt").read_bytes(), cert, key, "x"))
    with pytest.raises(ClusterError) as err:
        connect(config)
    assert "refused the credentials" in str(err.value) and "(401)" in str(err.value)


def test_what_these_tests_apply_is_what_the_deploy_downloads(sandbox_settings):
    """Argo CD's manifest, kubeseal and the Cilium and local-path sources tested here are taken from pinned
    module zips: their versions must be the ones group_data pins for the deploy."""
    from tools.gobuild import SOURCE_BUILDS

    pinned = {name: f"v{spec['version']}" for name, spec in sandbox_settings.artifacts.items()}
    assert SOURCES["argo-cd"].version == pinned["argocd-install"]
    assert SOURCES["cilium"].version == pinned["cilium-chart"]
    assert SOURCES["local-path-provisioner"].version == pinned["local-path-provisioner"]
    assert SOURCE_BUILDS["kubeseal"].version == pinned["kubeseal"]


# ------------------------------------------------------------------------------------------ CNI (Helm)


@pytest.fixture(scope="module")
def cilium_chart():
    from tools.upstream import chart_archive

    return chart_archive("cilium", "install/kubernetes/cilium")


def test_cni_chart_is_rendered_with_helm_and_applied_then_unchanged(kube_api, settings, cilium_chart):
    cluster = connect(kube_api.kubeconfig)
    cilium = replace(settings, cni="cilium")
    first = cni.install(cluster, cilium, cilium_chart, "198.51.100.11:6443")
    kinds = {a.kind for a in first}
    assert {"DaemonSet", "Deployment", "ConfigMap", "ClusterRole"} <= kinds
    agent = cluster.get("apps/v1", "DaemonSet", "cilium", "kube-system")
    env = {e["name"]: e.get("value") for c in agent["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    assert env.get("KUBERNETES_SERVICE_HOST") == "198.51.100.11" and env.get("KUBERNETES_SERVICE_PORT") == "6443"
    config = cluster.get("v1", "ConfigMap", "cilium-config", "kube-system")
    assert config["data"]["ipam"] == "kubernetes"
    again = cni.install(cluster, cilium, cilium_chart, "198.51.100.11:6443")
    assert [str(a) for a in again if a.outcome != "unchanged"] == []
    assert not any(a.kind == "Secret" for a in first), "Helm-generated certificates would change on every run"


def test_calico_values_put_kubeadms_pod_cidr_in_the_ip_pool(settings):
    release, namespace, values = cni.release(replace(settings, cni="calico"), "198.51.100.11", 6443)
    assert (release, namespace) == ("calico", "tigera-operator")
    assert values["installation"]["calicoNetwork"]["ipPools"][0]["cidr"] == str(settings.pod_cidr)


def test_nodes_that_never_turn_ready_stop_the_run_with_their_condition(kube_api):
    cluster = connect(kube_api.kubeconfig)
    cluster.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "k8s-worker9",
                                                                     "labels": {"lab.gitops/role": "worker"}}})
    with pytest.raises(ClusterError) as err:
        cluster.wait_nodes_ready(["k8s-worker9"], timeout_s=2)
    assert str(err.value).startswith("Node k8s-worker9 (Ready, no resource pressure) not ready after 2s; last "
                                     "condition:")


def test_a_ready_node_under_disk_pressure_stops_the_run_naming_the_pressure(kube_api):
    """Ready alone is not enough: a node under pressure is tainted, and nothing new runs there."""
    cluster = connect(kube_api.kubeconfig)
    mark_ready(cluster, "k8s-worker8", extra=[{
        "type": "DiskPressure", "status": "True", "reason": "KubeletHasDiskPressure",
        "message": "kubelet has disk pressure", "lastHeartbeatTime": "2026-01-01T00:00:00Z",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    with pytest.raises(ClusterError) as err:
        cluster.wait_nodes_ready(["k8s-worker8"], timeout_s=2)
    assert "DiskPressure=True KubeletHasDiskPressure: kubelet has disk pressure" in str(err.value)
    assert "kubelet_eviction_hard" in str(err.value)


def test_a_rollout_that_never_completes_names_what_holds_its_pods_back(kube_api):
    """No scheduler runs here, so the pods stay Pending: the deadline's message says so, pod by name."""
    cluster = connect(kube_api.kubeconfig)
    cluster.apply_into("rollout-test", [{
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "stuck", "namespace": "rollout-test"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "stuck"}},
                 "template": {"metadata": {"labels": {"app": "stuck"}},
                              "spec": {"containers": [{"name": "c", "image": "registry.local/none:1"}]}}}}])
    with pytest.raises(ClusterError) as err:
        cluster.wait_rolled_out("Deployment", "stuck", "rollout-test", timeout_s=4)
    message = str(err.value)
    assert message.startswith("Deployment rollout-test/stuck not ready after 4s; last condition: ")
    assert "pod stuck-" in message and "Pending" in message, message


# ------------------------------------------------------------------------------------------ pinned sources


def test_fetch_artifact_verifies_the_pin_and_refuses_a_changed_file(settings, artifact_mirror, served_mirror, tmp_path):
    _, artifacts = artifact_mirror
    mirrored = replace(settings, artifacts=artifacts, artifact_mirror=served_mirror)
    local = LocalState(tmp_path / "state")
    manifest = artifacts_module.fetch_local(mirrored, local, "argocd-install")
    assert b"kind: CustomResourceDefinition" in manifest
    tampered = dict(artifacts, **{"argocd-install": dict(artifacts["argocd-install"], sha256="0" * 64)})
    with pytest.raises(DownloadError) as err:
        artifacts_module.fetch_local(replace(mirrored, artifacts=tampered), local, "argocd-install")
    assert "not the pinned" in str(err.value) and "refusing it" in str(err.value)


def test_local_path_storage_is_installed_as_the_default_class(kube_api, settings):
    from tools.upstream import read_file

    cluster = connect(kube_api.kubeconfig)
    manifest = read_file("local-path-provisioner", "deploy/local-path-storage.yaml").encode()
    first = storage.install(cluster, settings, manifest)
    assert {"Deployment", "StorageClass", "ConfigMap"} <= {a.kind for a in first}
    storage_class = cluster.get("storage.k8s.io/v1", "StorageClass", "local-path")
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    again = storage.install(cluster, settings, manifest)
    assert [str(a) for a in again if a.outcome != "unchanged"] == []


# ------------------------------------------------------------------------------------------ the whole step


def mark_ready(cluster, name: str, extra: list[dict] | None = None) -> None:
    """A Node object with a Ready condition (and `extra` ones), as a kubelet would report it (no kubelet
    runs here)."""
    cluster.apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    cluster.patch("v1", "Node", name, None, {"status": {"conditions": [{
        "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test stand-in",
        "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}, *(extra or [])]}},
        field_manager="test-kubelet", subresource="status")


def test_the_whole_step_from_the_mirror_then_a_rerun_with_no_change(kube_api, sandbox_settings, artifact_mirror,
                                                                    served_mirror, tmp_path, monkeypatch):
    """post_bootstrap.run as deploy.py calls it: every source fetched over HTTP from the mirror and verified,
    Cilium, nodes Ready, local-path, labels, Argo CD, repository Secret, root app; no webhook configured."""
    from tasks.kube_client import Cluster

    _, artifacts = artifact_mirror
    state = LocalState(tmp_path / "state")
    state.write_private(state.kubeconfig, kube_api.kubeconfig.read_bytes())
    state.write_private(state.deploy_key, fake_deploy_key())
    state.deploy_key_public.write_text(FAKE_PUBLIC_KEY)
    # Argo CD too: the lab cannot run it yet, so this real API server is where its step is proven.
    settings = replace(sandbox_settings, artifacts=artifacts, state_dir=str(state.root), artifact_mirror=served_mirror,
                       argocd_install=True)
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    # Argo CD's pods never run here: its rollout waits are the one thing replaced.
    monkeypatch.setattr(Cluster, "wait_rolled_out", lambda self, kind, name, ns, timeout_s: None)
    cluster = connect(kube_api.kubeconfig)
    for name in post_bootstrap.kubernetes_nodes(settings):
        mark_ready(cluster, name)
    # kubeadm's CoreDNS ConfigMap (no kubeadm here: its Corefile, created the way kubeadm creates it)
    from tests.unit.test_cluster_dns import KUBEADM_COREFILE
    cluster.apply_into("kube-system", [{"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "coredns"}, "data": {"Corefile": KUBEADM_COREFILE}}])
    state.gitlab_known_hosts.write_text("gitlab.local ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab\n")
    endpoint = kube_api.server.removeprefix("https://")
    first = post_bootstrap.run(settings, state, endpoint)
    second = post_bootstrap.run(settings, state, endpoint)
    kinds = {a.kind for a in first.applied}
    assert {"DaemonSet", "StorageClass", "CustomResourceDefinition", "Application", "Secret", "Node"} <= kinds
    assert second.changed() == [], [str(a) for a in second.changed()]
    corefile = cluster.get("v1", "ConfigMap", "coredns", "kube-system")["data"]["Corefile"]
    assert "198.51.100.10 gitlab.local registry.local" in corefile and corefile.count("hosts {") == 1
    known = cluster.get("v1", "ConfigMap", "argocd-ssh-known-hosts-cm", "argocd")["data"]["ssh_known_hosts"]
    assert known.splitlines()[-1] == "gitlab.local ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlab"
    assert "github.com" in known  # upstream's entries kept
    assert any("Slack webhook: not sealed" in note and "SLACK_WEBHOOK_URL" in note for note in first.notes)
    assert state.downloads.is_dir()
