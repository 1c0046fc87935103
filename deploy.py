"""The whole platform, phase by phase:  pyinfra inventories/lab.py deploy.py

Settings were validated before pyinfra connected (config.py). Phases run in order on all hosts:
pyinfra 3 orders operations by a graph, so `phases.barrier` separates them explicitly. Per-role reruns
work with --limit platform | control_plane | worker.
"""

from pyinfra import host, state
from pyinfra.operations import python

from tasks import containerd, foundation, kubernetes, phases, platform, post_bootstrap, storage
from tasks.settings import load_settings

settings = load_settings(state.inventory)
node = settings.node(host.name)
active_hosts = list(state.inventory.iter_activated_hosts())

# ---- Phase 0: foundation (every host) --------------------------------------------------------------
if host == active_hosts[0]:
    foundation.preflight_all(settings, active_hosts)
foundation.prepare_host(settings, node)
phases.barrier("phase 0: foundation")

# ---- Phase 1: the lab CA everywhere; GitLab, its registry and the runner on the platform host -----------
lab_secrets = platform.prepare_secrets(settings)  # local: state folder, created once, never printed
platform.trust_lab_ca(lab_secrets)
if node.has_role("platform"):
    platform.trust_registry_for_docker(settings, lab_secrets)
    platform.configure_gitlab(settings, lab_secrets)
    platform.install_docker()
    platform.configure_runner(settings, node, platform.state_secret(settings.state_path, "runner-token"))
phases.barrier("phase 1: platform")

# ---- Phase 2: the Kubernetes nodes: runtime and binaries, kubeadm init, then the workers join ----------
is_node = node.has_role("control_plane") or node.has_role("worker")
control_plane_host = state.inventory.get_host(settings.control_plane.name)
if is_node:
    containerd.deploy_runtime(settings, lab_secrets)
    kubernetes.enable_kubelet(kubernetes.install(settings))
    if settings.storage_class == "nfs":
        storage.nfs_client()
if node.has_role("platform") and settings.storage_class == "nfs":
    storage.nfs_server(settings)
if node.has_role("control_plane"):
    kubernetes.configure_control_plane(settings)
    if kubernetes.init_control_plane(settings):
        kubernetes.fetch_admin_kubeconfig(settings)
phases.barrier("phase 2: control plane initialised")
if node.has_role("control_plane") and kubernetes.cluster_blocker(settings, host) is None:
    workers = [h for h in active_hosts if settings.node(h.name).has_role("worker")]
    kubernetes.create_join_ticket(settings, kubernetes.workers_to_join(workers))
phases.barrier("phase 2: join token ready")
if node.has_role("worker"):
    if control_plane_host not in active_hosts:
        phases.announce_once("join-limit", "    kubeadm join skipped: the control plane is not part of this run "
                             "(--limit); the join token is made there, so include it to join new workers")
    elif kubernetes.cluster_blocker(settings, control_plane_host) is None:
        kubernetes.join_worker(settings, node)
phases.barrier("phase 2: nodes")

# ---- Phases 3-4: CNI, Argo CD and the root app, from this machine with the Kubernetes client ------------
# Once (from the control plane's turn), and only where a cluster exists or this run's init makes one.
if node.has_role("control_plane") and kubernetes.cluster_blocker(settings, host) is None:
    python.call(name="Post-bootstrap: CNI, nodes Ready, labels, Argo CD, repository access, root app, Slack webhook",
                function=post_bootstrap.run_from_deploy, settings=settings)
phases.barrier("phases 3-4: Argo CD owns the rest")

# ---- Phases 5-7 happen outside the deploy -------------------------------------------------------------
phases.announce_once(
    "later-phases",
    "    phases 5-7 are not run by the deploy: Argo CD syncs the platform apps and Online Boutique, GitLab runs "
    "the pipeline, and tests/acceptance runs the load tests and the verification plan (README).",
)
