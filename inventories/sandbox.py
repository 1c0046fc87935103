"""Sandbox inventory: the local lab hosts that `python3 -m tools.lab up` runs on this machine (four; more
workers with LAB_WORKERS, e.g. `LAB_WORKERS=8 make lab`).

Same roles and host names as inventories/lab.py, on the private lab bridge 198.51.100.0/24 (the bridge
itself is .1). The lab tool reads this file to know which machines to create, so the two never disagree.
"""

from tasks.gitops_repo import application_names
from tasks.inventory import node
from tools.lab.constants import CACHE, CHART_MIRROR_URL, MIRROR_DIR, MIRROR_URL, SSH_KEY, lab_apps, lab_workers

_ssh = {
    "ssh_user": "root",
    "ssh_key": str(SSH_KEY),
    # The lab recreates host keys whenever a machine is rebuilt; trusting them blindly is fine on a
    # private bridge on this machine, and never done in inventories/lab.py.
    "ssh_known_hosts_file": "/dev/null",
    "ssh_strict_host_key_checking": "no",
    "ssh_connect_timeout": 5,
}

platform = [node("mini-pc", "198.51.100.10", **_ssh)]
control_plane = [node("k8s-master", "198.51.100.11", **_ssh)]
worker = [node(f"k8s-worker{i}", f"198.51.100.{11 + i}", **_ssh) for i in range(1, lab_workers() + 1)]

# What Argo CD cannot run in the offline lab yet, each with its reason (docs/lab.md, "The lab's app set").
_left_out = {
    "loki": "cannot be built here: Loki's code is AGPL-licensed and is not built on these machines "
    "(validated by rendering only)",
    "promtail": "cannot be built here: Promtail is part of Loki's AGPL code base (validated by rendering "
    "only); its successor Alloy is not served by the Go module proxy",
    "alloy": "cannot be built here: Grafana Alloy is not served by the Go module proxy, nor is its chart "
    "(validated at the gitops layer only)",
    "traefik": "cannot be built here: Traefik v3.7.11 needs github.com/containous/go-http-auth at a "
    "2026 pseudo-version and its nested module github.com/traefik/traefik/dynamic/ext, both refused by "
    "the Go module proxy (validated by rendering only)",
    "argocd-ingress": "needs an ingress controller, and traefik is left out",
    "boutique-dev": "its images come from app-repo's pipeline, which needs GitLab (not installable offline)",
    "boutique-prod": "its images come from app-repo's pipeline, which needs GitLab (not installable offline)",
}
if lab_apps() == "none":  # tools/lab/constants.py LAB_APPS
    _left_out = dict.fromkeys(application_names(), "LAB_APPS=none: Argo CD without Applications") | _left_out

# Group-wide overrides for the sandbox: the lab network instead of the example 192.168.10.0/24.
sandbox = (
    [name for name, _ in platform + control_plane + worker],
    {
        "node_network": "198.51.100.0/24",
        "metallb_pool": "198.51.100.200-198.51.100.220",
        "state_dir": "state/sandbox",
        # No package source is reachable from the lab: GitLab and the runner are skipped, with the reason.
        "gitlab_package_source": "",
        # The artifact mirror the lab tool serves on the bridge (built by `make mirror`). Its files are built
        # from source, so their sha256s are the mirror's own lock, not upstream's.
        "artifact_mirror": MIRROR_URL,
        "artifacts_lock": str(MIRROR_DIR / "artifacts.json"),
        # The same mirror's Helm repository, with the platform charts it can build (tools/mirror.py LAB_CHARTS).
        "helm_chart_mirror": CHART_MIRROR_URL,
        # Cilium's chart is in its Go module, so the local mirror can hold it; Calico's chart is not.
        "cni": "cilium",
        # Air-gapped, like an on-prem site without internet: every image comes from registry.local (the lab
        # tool's stand-in for GitLab's registry), built here from source; hence the lab's own digests.
        "image_mirror_project": "mirror",
        "images_lock": str(CACHE / "images" / "images.lock.json"),
        # ---- lab only: the hosts are containers on this machine (cgroup v1; fewer capabilities)
        # The machine boots cgroup v1, which kubelet 1.35+ refuses unless told; kubeadm's preflight then fails
        # its SystemVerification check for the same reason, and only for it.
        "kubelet_fail_cgroup_v1": False,
        "kubeadm_ignore_preflight_errors": ["SystemVerification"],
        # kubeadm init's control plane starts on the CPUs the other hosts are busy installing on: more room
        # than kubeadm's defaults (4 min for the components, 1 min per API call). Not what stopped the
        # 16-worker lab: that was this machine's inotify limit (docs/troubleshooting.md).
        "kubeadm_timeouts": {"controlPlaneComponentHealthCheck": 600, "kubernetesAPICall": 300},
        # Every node pulls Cilium's agent (with its compiler) and compiles its datapath on the same 2 CPUs:
        # the default 600 s holds for two workers; more take longer (the benchmark's 8 and 16).
        "node_ready_timeout_s": 600 + 75 * max(lab_workers() - 2, 0),
        # The hosts' disks are this machine's disk, shared with its caches and builds: its free percentage
        # says nothing about the lab, and the kubelet's 10-15 % defaults tainted the nodes (disk-pressure)
        # on a machine with 37 GiB free. Absolute amounts instead.
        "kubelet_eviction_hard": {
            "memory.available": "100Mi",
            "nodefs.available": "2Gi",
            "nodefs.inodesFree": "5%",
            "imagefs.available": "2Gi",
            "imagefs.inodesFree": "5%",
        },
        "cni_values": {
            # This machine's bounding set lacks IPC_LOCK, SYS_MODULE, SYS_RESOURCE and SYSLOG, so runc refuses
            # the chart's default capability lists; the agent runs without them here.
            "securityContext": {
                "capabilities": {
                    "ciliumAgent": [
                        "CHOWN",
                        "KILL",
                        "NET_ADMIN",
                        "NET_RAW",
                        "SYS_ADMIN",
                        "DAC_OVERRIDE",
                        "FOWNER",
                        "SETGID",
                        "SETUID",
                    ],
                    "cleanCiliumState": ["NET_ADMIN", "SYS_ADMIN"],
                }
            },
            # Envoy (C++) cannot be built here: no L7 policies in the lab. Hubble's TLS needs cilium/certgen,
            # which the module proxy does not serve: Hubble is off in the lab.
            "envoy": {"enabled": False},
            "hubble": {"enabled": False},
        },
        # Argo CD from source (tools/images.py). Its install.yaml names Redis 8.10.1, which cannot be built
        # here: Debian's Redis 8.0.2 runs instead, named as what it is. Dex (SSO) is not served by the Go
        # module proxy: the lab's Argo CD runs without it, as installs without SSO do.
        "image_overrides": {"argocd-redis": "docker.io/library/redis:8.0.2"},
        "argocd_dex": False,
        # The live tests wait for resolved alerts in Slack: a minute between an alert group's messages, not 5.
        "alert_group_interval_s": 60,
        # kube-prometheus-stack's parts that cannot be built here (docs/lab.md, "The lab's app set").
        "monitoring_left_out": {
            "grafana": "cannot be built here: Grafana's code is AGPL-licensed and is not built on these machines "
            "(its dashboards are type-checked instead)",
            "admission-webhooks": "its certificate job's image (jkroepke/kube-webhook-certgen) is not served by "
            "the Go module proxy, so it cannot be built here",
        },
        "gitops_apps_left_out": _left_out,
    },
)
