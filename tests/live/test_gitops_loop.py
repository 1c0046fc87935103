"""The GitOps loop for real in the lab: Argo CD (built from source) reads gitops-repo over SSH from the
platform host (tools/lab/git_server.py, GitLab's SSH endpoint stand-in) with the read-only deploy key,
checks the host key the deploy recorded, finds `gitlab.local` through cluster DNS, syncs the root app,
reverts a hand-made change, recreates a deleted object, and follows commits (added, changed, removed:
pruned). The lab's app set is the sandbox's (gitops_apps_left_out says what is left out and why).

Each measured time is printed and written to reports/gitops-loop.json. Refreshes are triggered the way
`argocd app get --refresh` does (an annotation, as GitLab's webhook would). The commit left to Argo CD's own
polling, at its defaults, is timed in test_polling.py (its wait overlaps the live alert test's)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tasks.gitops_repo import application_names
from tasks.images import mirror_repository
from tasks.kube_client import ClusterError
from tasks.settings import CHART_IMAGES
from tasks.state import LocalState
from tests.acceptance import checks as acceptance
from tests.live.conftest import (
    ARGO,
    PROBE,
    SYNC_DEADLINE_S,
    Measurements,
    back_to,
    commit_and_push,
    git,
    git_env,
    head,
    probe_value,
    pulls_by_address,
    registry_log,
    set_probe,
    set_resource,
    wait_for,
    wait_synced,
)
from tests.live.conftest import (
    ARGOCD_NAMESPACE as NAMESPACE,
)
from tools.lab.constants import SSH_KEY
from tools.lab.git_server import SEED_MESSAGE

HEAL_DEADLINE_S = 120
measure = Measurements("gitops-loop")
report = measure.report_fixture()


def test_gitlab_s_names_are_in_cluster_dns_and_its_host_keys_among_argo_cd_s_known_hosts(cluster, lab_settings):
    corefile = cluster.get("v1", "ConfigMap", "coredns", "kube-system")["data"]["Corefile"]
    assert f"{lab_settings.platform.address} gitlab.local registry.local" in corefile
    recorded = LocalState(lab_settings.state_path).gitlab_known_hosts.read_text().splitlines()
    assert recorded and all(line.startswith("gitlab.local ") for line in recorded)
    known = cluster.get("v1", "ConfigMap", "argocd-ssh-known-hosts-cm", NAMESPACE)["data"]["ssh_known_hosts"]
    assert set(recorded) <= set(known.splitlines())


def test_the_root_app_syncs_the_seeded_commit_over_ssh(cluster, repo_url, checkout):
    """What the lab tool seeded (the deploy's render) is what Argo CD applied: Synced, Healthy, same commit."""
    assert git("log", "-1", "--format=%s", cwd=checkout).strip() == SEED_MESSAGE
    seeded = head(repo_url)
    started = time.monotonic()
    wait_synced(cluster, seeded, "first sync")
    measure("root app Synced and Healthy (from test start, after the deploy)", started)
    projects = sorted(p["metadata"]["name"] for p in cluster.list_objects(ARGO, "AppProject", NAMESPACE))
    assert {"boutique", "platform"} <= set(projects)


def test_the_lab_s_app_set_is_the_sandbox_s(cluster, lab_settings):
    apps = sorted(a["metadata"]["name"] for a in cluster.list_objects(ARGO, "Application", NAMESPACE))
    expected = sorted({"root", *application_names(lab_settings)} - set(lab_settings.gitops_apps_left_out))
    assert apps == expected


def app_states(cluster, names: list[str]) -> dict[str, tuple[str, str]]:
    states = {}
    for name in names:
        status = (cluster.get(ARGO, "Application", name, NAMESPACE) or {}).get("status", {})
        states[name] = (status.get("sync", {}).get("status", "?"), status.get("health", {}).get("status", "?"))
    return states


def test_every_app_of_the_lab_s_set_is_synced_and_healthy(cluster, lab_settings):
    """The root app's health does not include its Applications' own: each is checked (charts pulled from
    the lab's Helm repository, images from its registry)."""
    names = sorted(set(application_names(lab_settings)) - set(lab_settings.gitops_apps_left_out))
    assert "sealed-secrets" in names
    started = time.monotonic()
    last: dict = {}

    def all_synced_and_healthy() -> bool:
        nonlocal last
        last = app_states(cluster, names)
        return all(state == ("Synced", "Healthy") for state in last.values())

    deadline = time.monotonic() + SYNC_DEADLINE_S
    while not all_synced_and_healthy():
        if time.monotonic() >= deadline:
            pytest.fail(f"the lab's apps did not all reach Synced/Healthy within {SYNC_DEADLINE_S}s: {last}")
        time.sleep(2)
    measure(f"every app of the lab's set Synced and Healthy ({', '.join(names)})", started)
    # what their charts run came through the private registry, by the catalog's names
    pulled = set().union(*pulls_by_address(registry_log()).values())
    charted = [name for app, images in CHART_IMAGES.items() if app in names for name in images]
    assert charted and all(mirror_repository(lab_settings, lab_settings.images[n]["ref"]) in pulled for n in charted)


def test_the_sealed_secrets_controller_unseals_a_sealed_secret_committed_to_git(cluster, lab_settings, checkout):
    """Sealed as post-bootstrap seals the Slack webhook (kubeseal from the deploy's pinned archive, the
    controller's active certificate, strict scope), committed over SSH, synced by Argo CD, unsealed by the
    real controller (built from source); removed from Git, it is pruned and its Secret goes with it."""
    import base64
    import secrets

    from tasks import sealed_secrets as sealing

    name = "gitops-loop-sealed-probe"
    clear = secrets.token_urlsafe(24)  # a throwaway value: this test's own, never a real secret
    certificate = wait_for("the Sealed Secrets controller's active key",
                           lambda: _certificate_or_none(cluster, sealing), HEAL_DEADLINE_S, interval=2)
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": name, "namespace": NAMESPACE}, "stringData": {"value": clear}}
    sealed = sealing.seal(sealing.kubeseal_binary(lab_settings, LocalState(lab_settings.state_path)),
                          certificate, secret)
    assert clear not in sealed and yaml.safe_load(sealed)["kind"] == "SealedSecret"

    def unsealed() -> bool:
        found = cluster.get("v1", "Secret", name, NAMESPACE)
        return found is not None and base64.b64decode(found["data"]["value"]).decode() == clear

    try:
        set_resource(checkout, name, sealed)
        started = time.monotonic()
        wait_synced(cluster, commit_and_push(checkout, "live test: a sealed secret"), "commit with a SealedSecret")
        wait_for(f"Secret {NAMESPACE}/{name} unsealed by the controller", unsealed, HEAL_DEADLINE_S, interval=0.5)
        measure("commit to live, SealedSecret unsealed into its Secret (refresh triggered)", started)
    finally:
        if (checkout / "argocd" / "apps" / f"{name}.yaml").exists():
            set_resource(checkout, name, None)
            wait_synced(cluster, commit_and_push(checkout, "live test: the sealed secret removed"),
                        "commit without the SealedSecret")
    wait_for(f"Secret {NAMESPACE}/{name} gone with its pruned SealedSecret",
             lambda: cluster.get("v1", "Secret", name, NAMESPACE) is None, HEAL_DEADLINE_S, interval=0.5)


def test_the_acceptance_suite_s_gitops_checks_hold_on_the_lab(cluster):
    """tests/acceptance's own checks (the verification plan's application status, self-healing and drift
    repair), run here on the lab's Argo CD-managed Deployment: the Sealed Secrets controller (Online
    Boutique, which the plan runs them on, is not in the lab's set yet)."""
    apps = acceptance.argocd_applications(cluster)
    bad = [a for a in apps if a["sync"] != "Synced" or a["health"] != "Healthy" or a["history"] < 1]
    assert apps and not bad, bad
    started = time.monotonic()
    acceptance.replace_a_pod(cluster, "kube-system", "app.kubernetes.io/name=sealed-secrets", timeout_s=120)
    measure("force-deleted pod replaced and Ready (Sealed Secrets controller)", started)
    deployment = cluster.get("apps/v1", "Deployment", "sealed-secrets-controller", "kube-system")
    container = deployment["spec"]["template"]["spec"]["containers"][0]["name"]
    original = acceptance.image_of(deployment, container)
    started = time.monotonic()
    acceptance.change_image_by_hand(cluster, "kube-system", "sealed-secrets-controller", container,
                                    original + "-drift", timeout_s=60)
    acceptance.wait_image(cluster, "kube-system", "sealed-secrets-controller", container, original, timeout_s=180)
    measure("hand-edited image reverted by Argo CD (Sealed Secrets controller)", started)


def test_a_managed_deployment_deleted_by_hand_is_recreated_and_runs_again(cluster):
    """Self-heal of a workload: the Sealed Secrets controller's Deployment (the sealed-secrets app's)
    deleted by hand is recreated by Argo CD, and its new pod becomes Ready."""
    before = cluster.get("apps/v1", "Deployment", "sealed-secrets-controller", "kube-system")
    assert before is not None, "the sealed-secrets app's Deployment is missing before the test"
    started = time.monotonic()
    cluster.delete("apps/v1", "Deployment", "sealed-secrets-controller", "kube-system")

    def recreated_and_ready() -> bool:
        now = cluster.get("apps/v1", "Deployment", "sealed-secrets-controller", "kube-system")
        return (now is not None and now["metadata"]["uid"] != before["metadata"]["uid"]
                and (now.get("status") or {}).get("readyReplicas", 0) >= 1)

    wait_for("Deployment sealed-secrets-controller, deleted by hand, recreated by Argo CD with a Ready pod",
             recreated_and_ready, HEAL_DEADLINE_S, interval=0.5)
    measure("deleted Deployment recreated, its pod Ready (Sealed Secrets controller)", started)
    wait_for("the sealed-secrets app Synced and Healthy again",
             lambda: app_states(cluster, ["sealed-secrets"])["sealed-secrets"] == ("Synced", "Healthy"),
             HEAL_DEADLINE_S)


def _certificate_or_none(cluster, sealing) -> bytes | None:
    try:
        return sealing.controller_certificate(cluster)
    except ClusterError:
        return None


def test_a_hand_made_change_is_reverted(cluster):
    """selfHeal: the AppProject's description edited by hand is put back as Git has it."""
    wanted = cluster.get(ARGO, "AppProject", "boutique", NAMESPACE)["spec"]["description"]
    started = time.monotonic()
    cluster.patch(ARGO, "AppProject", "boutique", NAMESPACE, {"spec": {"description": "edited by hand"}},
                  "kubectl-edit", merge=True)
    wait_for("the hand-made change to AppProject boutique reverted",
             lambda: cluster.get(ARGO, "AppProject", "boutique", NAMESPACE)["spec"]["description"] == wanted,
             HEAL_DEADLINE_S, interval=0.5)
    measure("drift reverted (hand edit -> Git's value)", started)


def test_a_deleted_object_comes_back(cluster):
    before = cluster.get(ARGO, "AppProject", "boutique", NAMESPACE)["metadata"]["uid"]
    started = time.monotonic()
    cluster.delete(ARGO, "AppProject", "boutique", NAMESPACE)

    def recreated():
        project = cluster.get(ARGO, "AppProject", "boutique", NAMESPACE)
        return project is not None and project["metadata"]["uid"] != before

    wait_for("AppProject boutique, deleted by hand, recreated by Argo CD", recreated, HEAL_DEADLINE_S, interval=0.5)
    measure("deleted object recreated", started)


def test_commits_pushed_over_ssh_go_live_and_a_removed_object_is_pruned(cluster, repo_url, checkout):
    original = {p: p.read_bytes() for p in (checkout / "argocd" / "apps").iterdir()}
    try:
        for step, value in (("added", "one"), ("changed", "two"), ("removed (pruned)", None)):
            set_probe(checkout, value)
            started = time.monotonic()
            revision = commit_and_push(checkout, f"live test: probe {step}")
            wait_synced(cluster, revision, f"commit with the probe {step}")
            assert probe_value(cluster) == value
            measure(f"commit to live, probe {step} (refresh triggered)", started)
    finally:
        back_to(checkout, original)


def test_a_managed_configmap_edited_by_hand_is_reverted(cluster, checkout):
    """Drift repair on configuration: a ConfigMap that Git holds (the probe, committed for the test) edited
    by hand gets Git's data back."""
    original = {p: p.read_bytes() for p in (checkout / "argocd" / "apps").iterdir()}
    try:
        set_probe(checkout, "from-git")
        wait_synced(cluster, commit_and_push(checkout, "live test: probe for the hand edit"), "the probe added")
        started = time.monotonic()
        cluster.patch("v1", "ConfigMap", PROBE, NAMESPACE, {"data": {"value": "edited by hand"}}, "kubectl-edit",
                      merge=True)
        wait_for(f"ConfigMap {PROBE}, edited by hand, back to Git's data",
                 lambda: probe_value(cluster) == "from-git", HEAL_DEADLINE_S, interval=0.5)
        measure("hand-edited ConfigMap reverted", started)
    finally:
        if revision := back_to(checkout, original):
            wait_synced(cluster, revision, "the probe removed")


def test_argo_cd_s_deploy_key_may_fetch_but_never_push(lab_settings, repo_url, tmp_path):
    """The stand-in holds the deploy key to what GitLab allows a read-only deploy key, over the real sshd."""
    key = LocalState(lab_settings.state_path).deploy_key
    env = dict(git_env(), GIT_SSH_COMMAND=git_env()["GIT_SSH_COMMAND"].replace(str(SSH_KEY), str(key)))

    def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)

    clone = run("clone", "-q", repo_url, str(tmp_path / "ro"))
    assert clone.returncode == 0, clone.stderr
    (tmp_path / "ro" / "stray.txt").write_text("x\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@gitops-lab.invalid"]
    assert run(*identity, "add", "-A", cwd=tmp_path / "ro").returncode == 0
    assert run(*identity, "commit", "-qm", "stray", cwd=tmp_path / "ro").returncode == 0
    push = run("push", "-q", "origin", "HEAD:main", cwd=tmp_path / "ro")
    assert push.returncode != 0 and "read-only deploy key" in push.stderr
