"""Phases 3-4, run once from the operator's machine with the Kubernetes client: install what Argo CD cannot
install itself, then hand everything else to Argo CD. Each step is idempotent (server-side apply: a rerun
applies the same objects and reports them unchanged); each wait has a deadline naming what it waited for.

    the CNI -> every node Ready -> GitLab's names in cluster DNS -> the default StorageClass -> node labels
    -> Argo CD (GitLab's SSH host keys among its known hosts) -> its repository
    access and admin password -> the ingress TLS Secret -> the root Application -> the sealed Slack webhook
    (`argocd_install = False` stops after the labels)
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pyinfra import logger

from tasks import argocd, artifacts, certificates, cluster_dns, cni, sealed_secrets, storage
from tasks.gitops_repo import INGRESS_TLS_SECRET, gitops_repo_url, render_gitops_repo
from tasks.kube_client import Applied, Cluster, connect
from tasks.settings import Settings
from tasks.state import LocalState


@dataclass
class Report:
    applied: list[Applied] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def changed(self) -> list[Applied]:
        return [a for a in self.applied if a.outcome != "unchanged"]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for applied in self.applied:
            counts[applied.outcome] = counts.get(applied.outcome, 0) + 1
        return "post-bootstrap: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))


def kubernetes_nodes(settings: Settings) -> list[str]:
    return [n.hostname for n in settings.nodes if n.has_role("control_plane") or n.has_role("worker")]


def node_label_patches(settings: Settings) -> list[dict]:
    """Partial Node objects: server-side apply owns exactly these labels and nothing else of the Node."""
    return [
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": n.hostname, "labels": n.node_labels}}
        for n in settings.nodes
        if (n.has_role("control_plane") or n.has_role("worker")) and n.node_labels
    ]


def label_nodes(cluster: Cluster, settings: Settings) -> list[Applied]:
    present = [p for p in node_label_patches(settings) if cluster.get("v1", "Node", p["metadata"]["name"])]
    return [cluster.apply(p) for p in present]


def gitlab_known_hosts(state: LocalState, report: Report) -> str:
    """GitLab's SSH host keys as phase 1 recorded them; without them Argo CD refuses gitops-repo's host."""
    if state.gitlab_known_hosts.exists():
        return state.gitlab_known_hosts.read_text()
    report.notes.append(
        f"Argo CD: GitLab's SSH host keys are not recorded ({state.gitlab_known_hosts} is missing: phase 1 on the "
        "platform host records them), so it cannot verify gitops-repo's host; rerun the deploy with the platform "
        "host included"
    )
    return ""


def run(settings: Settings, state: LocalState, api_endpoint: str) -> Report:
    """The whole step, in order, against the cluster of `state.kubeconfig`."""
    cluster = connect(state.kubeconfig)
    report = Report()

    def fetch(name: str) -> bytes:
        return artifacts.fetch_local(settings, state, name)

    report.applied += cni.install(cluster, settings, fetch(settings.chosen_artifact("cni")), api_endpoint)
    cluster.wait_nodes_ready(kubernetes_nodes(settings), settings.node_ready_timeout_s)
    # Cluster DNS runs once the pod network does: a working cluster, before anything is installed on it.
    cluster.wait_rolled_out("Deployment", "coredns", "kube-system", settings.node_ready_timeout_s)
    report.applied += cluster_dns.configure(cluster, settings)
    report.applied += storage.install(cluster, settings, fetch(settings.chosen_artifact("storage_class")))
    report.applied += label_nodes(cluster, settings)
    if not settings.argocd_install:
        report.notes.append("Argo CD: not installed (argocd_install is False); the cluster's basics are in place")
        return report
    report.applied += argocd.install(
        cluster,
        fetch("argocd-install").decode(),
        settings.node_ready_timeout_s,
        argocd.image_names(settings.images),
        settings.argocd_dex,
        gitlab_known_hosts(state, report),
    )
    applied, note = argocd.configure(cluster, state, gitops_repo_url(settings))
    report.applied += applied
    # Argo CD's Ingress (argocd-ingress) serves TLS with the ingress certificate from the deploy's CA.
    report.applied.append(
        cluster.apply(certificates.ingress_tls_secret(state, settings, argocd.NAMESPACE, INGRESS_TLS_SECRET))
    )
    report.notes.append(note)
    with tempfile.TemporaryDirectory() as tmp:
        # Only argocd/root.yaml is read from it: the image tag does not matter here.
        repo = render_gitops_repo(settings, Path(tmp) / "gitops-repo", image_tag="bootstrap")
        report.applied += argocd.activate(cluster, repo)
    for name, reason in sorted(settings.gitops_apps_left_out.items()):
        report.notes.append(f"Argo CD: {name} left out (gitops_apps_left_out): {reason}")
    if "kube-prometheus-stack" not in settings.gitops_apps_left_out:
        for name, reason in sorted(settings.monitoring_left_out.items()):
            report.notes.append(f"kube-prometheus-stack: {name} left out (monitoring_left_out): {reason}")
    report.notes.append(sealed_secrets.seal_slack_webhook(cluster, settings, state))
    return report


def run_from_deploy(settings: Settings, state: LocalState, api_endpoint: str) -> None:
    """deploy.py's python.call: the whole step, with a summary line and the notes (paths, never values)."""
    report = run(settings, state, api_endpoint)
    logger.info(f"    {report.summary()}")
    for note in report.notes:
        logger.info(f"    {note}")
