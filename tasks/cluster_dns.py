"""Phase 3, cluster DNS: GitLab's and the registry's names resolvable from pods, not only from the nodes.

The nodes resolve `gitlab.local` and `registry.local` through their /etc/hosts (phase 0), but cluster DNS
(CoreDNS) does not read the nodes' /etc/hosts: without this, Argo CD's repo-server cannot reach
`git@gitlab.local:...` and answers `no such host`. One stage, `configure`: a marked `hosts` block in the
main server block of kubeadm's Corefile, replaced (never duplicated) on every run, applied with server-side
apply. CoreDNS's `reload` plugin (in kubeadm's Corefile) reads it within about a minute; no restart.
A `kubeadm upgrade` may write its own Corefile back: the next deploy run adds the block again.
"""

from __future__ import annotations

import re

from tasks.kube_client import Applied, Cluster
from tasks.settings import Settings

NAMESPACE = "kube-system"
CONFIGMAP = "coredns"
BEGIN = "# gitops-lab: platform names (tasks/cluster_dns.py)"
END = "# gitops-lab: end of platform names"
_MAIN_BLOCK = re.compile(r"^\.:53\s*\{[ \t]*$", re.MULTILINE)
_MARKED = re.compile(rf"^[ \t]*{re.escape(BEGIN)}\n.*?^[ \t]*{re.escape(END)}\n", re.MULTILINE | re.DOTALL)


class ClusterDnsError(RuntimeError):
    pass


def hosts_block(address: str, names: list[str]) -> str:
    """A CoreDNS `hosts` block: `names` at `address`, every other name passed on (fallthrough)."""
    return f"    {BEGIN}\n    hosts {{\n        {address} {' '.join(names)}\n        fallthrough\n    }}\n    {END}\n"


def corefile_with_names(corefile: str, address: str, names: list[str]) -> str:
    """`corefile` with the marked block (any earlier version removed) at the top of the `.:53` server block."""
    without = _MARKED.sub("", corefile)
    main = _MAIN_BLOCK.search(without)
    if main is None:
        raise ClusterDnsError(
            f"the {NAMESPACE}/{CONFIGMAP} ConfigMap's Corefile has no `.:53 {{` server block, so GitLab's and the "
            f"registry's names cannot be added: check it with `kubectl -n {NAMESPACE} get configmap {CONFIGMAP} "
            "-o yaml` (kubeadm writes one; a replaced CoreDNS setup needs the names added by hand)"
        )
    cut = main.end() + 1
    return without[:cut] + hosts_block(address, names) + without[cut:]


def platform_names(settings: Settings) -> list[str]:
    return [settings.gitlab_domain, settings.registry_domain]


def configure(cluster: Cluster, settings: Settings) -> list[Applied]:
    current = cluster.get("v1", "ConfigMap", CONFIGMAP, NAMESPACE)
    if current is None:
        raise ClusterDnsError(
            f"no {NAMESPACE}/{CONFIGMAP} ConfigMap: kubeadm installs CoreDNS with it; check `kubectl -n {NAMESPACE} "
            "get configmaps` and the kubeadm init output"
        )
    corefile = current.get("data", {}).get("Corefile", "")
    wanted = corefile_with_names(corefile, str(settings.platform.address), platform_names(settings))
    patch = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIGMAP, "namespace": NAMESPACE},
        "data": {"Corefile": wanted},
    }
    # kubeadm created the ConfigMap (another field manager): taking over the Corefile field is the point.
    return [cluster.apply(patch, force=True)]
