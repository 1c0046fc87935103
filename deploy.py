"""The whole platform, phase by phase:  pyinfra inventories/lab.py deploy.py

Settings were validated before pyinfra connected (config.py). Phases run in order on all hosts:
pyinfra 3 orders operations by a graph, so `phases.barrier` separates them explicitly. Per-role reruns
work with --limit platform | control_plane | worker.
"""

from pyinfra import host, state

from tasks import foundation, phases, platform
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

# ---- Phases 2-7: not part of this codebase yet -------------------------------------------------------
phases.announce_once(
    "later-phases",
    "    phases 2-7 (the kubeadm cluster, Argo CD install, CI/CD runs, load tests) are not deployed by this "
    "run yet; the gitops repo, pipeline and monitoring they use are built and tested. See the README's status table.",
)
