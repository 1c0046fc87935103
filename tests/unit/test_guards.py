"""Guards and orderings the deploy relies on, each tested so that removing it turns this red: the order of the
post-bootstrap sequence, and the bootstrap token's file on a joining worker never readable by others."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tasks import argocd, artifacts, cluster_dns, cni, kubeadm, post_bootstrap, sealed_secrets, storage
from tasks.state import LocalState


class RecordingCluster:
    """Stands in for the API server: records the calls the sequence makes, in order."""

    def __init__(self, calls: list[str]):
        self.calls = calls

    def wait_nodes_ready(self, names, timeout_s):
        self.calls.append("wait for nodes Ready")

    def wait_rolled_out(self, kind, name, namespace, timeout_s):
        self.calls.append(f"wait for {kind} {namespace}/{name}")

    def get(self, *args, **kwargs):
        return None

    def apply(self, obj, **kwargs):
        self.calls.append(f"apply {obj['kind']} {obj['metadata'].get('namespace')}/{obj['metadata']['name']}")


@pytest.fixture
def recorded(monkeypatch, sandbox_settings, tmp_path):
    calls: list[str] = []
    cluster = RecordingCluster(calls)
    monkeypatch.setattr(post_bootstrap, "connect", lambda kubeconfig: cluster)
    monkeypatch.setattr(artifacts, "fetch_local", lambda settings, state, name: b"")

    def step(label, result=()):
        def record(*args, **kwargs):
            calls.append(label)
            return result
        return record

    monkeypatch.setattr(cni, "install", step("CNI"))
    monkeypatch.setattr(cluster_dns, "configure", step("cluster DNS names"))
    monkeypatch.setattr(storage, "install", step("storage"))
    monkeypatch.setattr(post_bootstrap, "label_nodes", step("labels"))
    monkeypatch.setattr(argocd, "install", step("Argo CD"))
    monkeypatch.setattr(argocd, "configure", step("repository access", ([], "")))
    monkeypatch.setattr(argocd, "activate", step("root app"))
    monkeypatch.setattr(sealed_secrets, "seal_slack_webhook", step("webhook", ""))

    def run(**changes):
        calls.clear()
        post_bootstrap.run(replace(sandbox_settings, **changes), LocalState(tmp_path), "198.51.100.11:6443")
        return list(calls)
    return run


def test_post_bootstrap_waits_for_ready_nodes_and_dns_between_the_cni_and_everything_else(recorded):
    assert recorded(argocd_install=True) == ["CNI", "wait for nodes Ready", "wait for Deployment kube-system/coredns",
                                             "cluster DNS names", "storage", "labels", "Argo CD", "repository access",
                                             "apply Secret argocd/ingress-tls", "root app", "webhook"]


def test_without_argocd_post_bootstrap_stops_after_the_labels(recorded):
    assert recorded(argocd_install=False) == ["CNI", "wait for nodes Ready", "wait for Deployment kube-system/coredns",
                                              "cluster DNS names", "storage", "labels"]


class FakeHost:
    """A host as a run-time step sees it: what was uploaded and run, in order."""

    name = "k8s-worker1"

    def __init__(self):
        self.events: list[tuple[str, str]] = []

    def run_shell_command(self, command, **kwargs):
        self.events.append(("run", command))
        return True, type("Output", (), {"stderr": ""})()

    def put_file(self, source, dest, **kwargs):
        self.events.append(("put", dest))
        return True


def assert_private_before_use(events, dest: str, user: str) -> None:
    """`dest` was uploaded into a root-only folder, made 0600 there, moved into place, and only then used."""
    put = next(i for i, (kind, path) in enumerate(events) if kind == "put" and path.endswith("/" + dest.rsplit("/", 1)[1]))
    staged = events[put][1]
    folder = staged.rsplit("/", 1)[0]
    assert folder != dest.rsplit("/", 1)[0], "uploaded straight to its place: readable by others until a chmod"
    assert ("run", f"install -d -m 700 {folder}") in events[:put]
    after = " ; ".join(command for _, command in events[put + 1:])
    assert after.index(f"chmod 600 {staged}") < after.index(f"mv {staged} {dest}") < after.index(user)


def test_the_join_configuration_is_private_before_kubeadm_reads_it(monkeypatch, sandbox_settings):
    from tasks import remote

    fake = FakeHost()
    monkeypatch.setattr(kubeadm, "host", fake)
    monkeypatch.setattr(remote, "host", fake)
    monkeypatch.setattr(kubeadm, "_tickets", lambda: {"join": kubeadm.JoinTicket("abcdef.0123456789abcdef",
                                                                                "sha256:" + "0" * 64)})
    kubeadm._join(sandbox_settings, sandbox_settings.node("k8s-worker1"))
    assert_private_before_use(fake.events, kubeadm.JOIN_CONFIG, "kubeadm join")
    assert f"rm -f {kubeadm.JOIN_CONFIG}" in fake.events[-1][1], "the token file must not outlive the join"


def test_the_runner_token_file_is_private_before_the_runner_reads_it(monkeypatch, sandbox_settings, tmp_path):
    from tasks import gitlab_runner, remote

    fake = FakeHost()
    fake.get_fact = lambda fact, **kwargs: 2
    monkeypatch.setattr(gitlab_runner, "host", fake)
    monkeypatch.setattr(remote, "host", fake)
    state = LocalState(tmp_path)
    state.store_token("runner", "glrt-secret")
    gitlab_runner.write_config_once_registered(sandbox_settings, sandbox_settings.platform, state)
    assert_private_before_use(fake.events, gitlab_runner.RUNNER_CONFIG, "systemctl restart gitlab-runner")


def test_the_kubeadm_init_configuration_is_root_only(sandbox_settings):
    from tests.unit.plan import plan

    p = plan(kubeadm.configure_control_plane, replace(sandbox_settings), host_name="k8s-master",
             facts={"File": None, "Directory": None})
    assert any(c.startswith(f"chmod 600 {kubeadm.KUBEADM_CONFIG}") for c in p.commands()), p.commands()
