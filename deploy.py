"""The whole platform, phase by phase:  pyinfra inventories/lab.py deploy.py

Settings were validated before pyinfra connected (config.py). Phases run in order on all hosts:
pyinfra 3 orders operations by a graph, so `phases.barrier` separates them explicitly. Per-role reruns
work with --limit platform | control_plane | worker.
"""

from pyinfra import host, state
from pyinfra.operations import python

from tasks import (
    certificates,
    containerd,
    foundation,
    gitlab,
    gitlab_runner,
    images,
    kubeadm,
    phases,
    post_bootstrap,
    storage,
)
from tasks.settings import load_settings
from tasks.state import LocalState

settings = load_settings(state.inventory)
local = LocalState(settings.state_path)  # the operator machine's state folder: secrets, kubeconfig, downloads
node = settings.node(host.name)
active_hosts = list(state.inventory.iter_activated_hosts())
is_kubernetes_node = node.has_role("control_plane") or node.has_role("worker")
control_plane_host = state.inventory.get_host(settings.control_plane.name)

# ---- Phase 0: foundation (every host) --------------------------------------------------------------
if host == active_hosts[0]:
    foundation.preflight_all(settings, active_hosts)
for notice in settings.retired_choices():
    phases.announce_once(notice, f"    retired component chosen: {notice}")
foundation.prepare_host(settings, node)
phases.barrier("phase 0: foundation")

# ---- Phase 1: the lab CA everywhere; GitLab, its registry and the runner on the platform host -----------
pki = certificates.ensure_lab_pki(local, settings)
certificates.trust_lab_ca(pki.ca.cert_pem)
if node.has_role("platform"):
    gitlab.deploy_gitlab(settings, pki, local)
    gitlab_runner.deploy_runner(settings, node, local, pki.ca.cert_pem)
phases.barrier("phase 1: platform")

# ---- Phase 2: the Kubernetes nodes: runtime and binaries, kubeadm init, then the workers join ----------
if is_kubernetes_node:
    containerd.deploy_runtime(settings, pki.ca.cert_pem, images.pull_password(local))
    kubeadm.enable_kubelet(kubeadm.install(settings))
if settings.storage_class == "nfs":
    if is_kubernetes_node:
        storage.nfs_client()
    if node.has_role("platform"):
        storage.nfs_server(settings)
if node.has_role("control_plane"):
    kubeadm.configure_control_plane(settings)
    if kubeadm.init_control_plane(settings, local):
        kubeadm.fetch_admin_kubeconfig(local)
phases.barrier("phase 2: control plane initialised")
if node.has_role("control_plane") and kubeadm.cluster_blocker(settings, local, host) is None:
    workers = [h for h in active_hosts if settings.node(h.name).has_role("worker")]
    kubeadm.create_join_ticket(settings, kubeadm.workers_to_join(workers))
phases.barrier("phase 2: join token ready")
if node.has_role("worker"):
    if control_plane_host not in active_hosts:
        phases.announce_once(
            "join-limit",
            "    kubeadm join skipped: the control plane is not part of this run "
            "(--limit); the join token is made there, so include it to join new workers",
        )
    elif kubeadm.cluster_blocker(settings, local, control_plane_host) is None:
        kubeadm.join_worker(settings, node)
phases.barrier("phase 2: nodes")

# ---- Phases 3-4: CNI, Argo CD and the root app, from this machine with the Kubernetes client ------------
# Once (from the control plane's turn), and only where a cluster exists or this run's init makes one.
if node.has_role("control_plane") and kubeadm.cluster_blocker(settings, local, host) is None:
    python.call(
        name="Post-bootstrap: CNI, nodes Ready, labels, Argo CD, repository access, root app, Slack webhook",
        function=post_bootstrap.run_from_deploy,
        settings=settings,
        state=local,
        api_endpoint=kubeadm.api_endpoint(settings),
    )
phases.barrier("phases 3-4: Argo CD owns the rest")

# ---- Phases 5-7 happen outside the deploy -------------------------------------------------------------
phases.announce_once(
    "later-phases",
    "    phases 5-7 are not run by the deploy: Argo CD syncs the platform apps and Online Boutique, GitLab runs "
    "the pipeline, and tests/acceptance runs the load tests and the verification plan (docs/verification.md).",
)
