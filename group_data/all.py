"""Lab-wide settings. Every value is validated before any host is touched (tasks/settings.py); the README's
settings table explains each key. Values here are the defaults for the seed's lab; edit them for yours."""

# --- names: resolved through /etc/hosts on every host, pointing at the platform host
gitlab_domain = "gitlab.local"
registry_domain = "registry.local"
# GitLab group of app-repo and gitops-repo; images live at <registry_domain>/<gitlab_group>/app-repo/<service>.
gitlab_group = "boutique"
# Names served by the ingress controller on its MetalLB VIP (the first address of metallb_pool). Point them
# at the VIP in your DNS or /etc/hosts on the machines you browse from.
storefront_host_dev = "dev.boutique.local"
storefront_host_prod = "boutique.local"
argocd_host = "argocd.local"
grafana_host = "grafana.local"
# traefik (maintained; Ingress and Gateway API) | ingress-nginx (retired upstream in March 2026: no security
# fixes; kept for sites that already run it). Ingress objects, names and TLS are the same with either.
ingress_controller = "traefik"
ingress_class = "traefik"  # the IngressClass the controller registers and every Ingress names
# What ships pod logs to Loki: alloy (Grafana Alloy, maintained) | promtail (end of life upstream since March
# 2026: no fixes; every deploy that picks it says so). docs/observability.md: moving from one to the other.
log_shipper = "alloy"

# --- the network the hosts' static addresses live in (inventories/lab.py holds the addresses)
node_network = "192.168.10.0/24"

# --- time: the platform host follows these servers and serves time to the lab; the nodes follow it.
ntp_upstream_servers = ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org", "2.debian.pool.ntp.org"]
# Stratum the platform host announces when no upstream server is reachable, so the lab keeps one
# consistent clock (TLS and log ordering depend on it) even without internet. 0 turns this off.
ntp_local_stratum = 10

# --- Kubernetes networking. kubeadm gives each node a /24 of pod_cidr.
pod_cidr = "10.244.0.0/16"
service_cidr = "10.96.0.0/12"
# MetalLB L2 pool: free addresses inside node_network that no host or DHCP lease uses.
metallb_pool = "192.168.10.200-192.168.10.220"
cni = "calico"  # calico | cilium
kube_proxy_mode = "iptables"  # iptables | ipvs | nftables
storage_class = "local-path"  # local-path | nfs (NFS server on the platform host)

# --- versions (bump deliberately; the README says how)
kubernetes_version = "1.37.2"
online_boutique_version = "v0.10.6"

# Every file the deploy downloads: name -> version, upstream URL ({version} is filled in), and where its
# release publishes the checksum. Their sha256s live in the lock file `artifacts_lock`, which
# `python3 tools/pin_artifacts.py` writes from the published checksum files (the deploy refuses to start
# while a download it needs is not pinned there for exactly this version and URL). A fresh clone's lock is
# empty: the release sites could not be reached where this codebase was written (docs/artifacts.md).
# kubeadm, kubelet and kubectl come as release binaries, not from pkgs.k8s.io: the same files can be
# mirrored for an air-gapped lab with the same checksums, and nothing upgrades them behind your back
# (the apt way needs `apt-mark hold` for that).
_GITHUB = "https://github.com"
_K8S = "https://dl.k8s.io/release/v{version}/bin/linux/amd64"
artifacts = {
    "containerd": {
        "version": "2.3.7",
        "url": _GITHUB + "/containerd/containerd/releases/download/v{version}/containerd-{version}-linux-amd64.tar.gz",
        "checksums": "{url}.sha256sum",
    },
    "runc": {
        "version": "1.5.2",
        "url": _GITHUB + "/opencontainers/runc/releases/download/v{version}/runc.amd64",
        "checksums": _GITHUB + "/opencontainers/runc/releases/download/v{version}/runc.sha256sum",
    },
    "cni-plugins": {
        "version": "1.9.1",
        "url": _GITHUB
        + "/containernetworking/plugins/releases/download/v{version}/cni-plugins-linux-amd64-v{version}.tgz",
        "checksums": "{url}.sha256",
    },
    "kubeadm": {"version": "1.37.2", "url": _K8S + "/kubeadm", "checksums": "{url}.sha256"},
    "kubelet": {"version": "1.37.2", "url": _K8S + "/kubelet", "checksums": "{url}.sha256"},
    "kubectl": {"version": "1.37.2", "url": _K8S + "/kubectl", "checksums": "{url}.sha256"},
    # Post-bootstrap, on the machine that runs pyinfra. An empty `checksums`: the release publishes none,
    # so tools/pin_artifacts.py hashes the file itself (review that diff like any other).
    "argocd-install": {
        "version": "3.6.1",
        "url": "https://raw.githubusercontent.com/argoproj/argo-cd/v{version}/manifests/install.yaml",
        "checksums": "",
    },
    "kubeseal": {
        "version": "0.40.0",
        "url": _GITHUB
        + "/bitnami-labs/sealed-secrets/releases/download/v{version}/kubeseal-{version}-linux-amd64.tar.gz",
        "checksums": _GITHUB
        + "/bitnami-labs/sealed-secrets/releases/download/v{version}/sealed-secrets_{version}_checksums.txt",
    },
    # GitLab's repository signing keys (one URL each for every release: re-pin them with each GitLab bump; apt
    # trusts each for its own repository only, through signed-by). Downloaded only with gitlab_package_source.
    "gitlab-ce-apt-key": {
        "version": "19.6.0",
        "url": "https://packages.gitlab.com/gitlab/gitlab-ce/gpgkey",
        "checksums": "",
    },
    "gitlab-runner-apt-key": {
        "version": "19.6.0",
        "url": "https://packages.gitlab.com/runner/gitlab-runner/gpgkey",
        "checksums": "",
    },
    "calico-chart": {
        "version": "3.32.0",
        "url": _GITHUB + "/projectcalico/calico/releases/download/v{version}/tigera-operator-v{version}.tgz",
        "checksums": "",
    },
    "cilium-chart": {"version": "1.20.2", "url": "https://helm.cilium.io/cilium-{version}.tgz", "checksums": ""},
    # storage_class: local-path (default) or nfs; only the chosen one is downloaded and must be pinned.
    "local-path-provisioner": {
        "version": "0.0.37",
        "url": "https://raw.githubusercontent.com/rancher/local-path-provisioner/v{version}/deploy/local-path-storage.yaml",
        "checksums": "",
    },
    "nfs-provisioner-chart": {
        "version": "4.0.18",
        "url": _GITHUB
        + "/kubernetes-sigs/nfs-subdir-external-provisioner/releases/download/nfs-subdir-external-provisioner-{version}/nfs-subdir-external-provisioner-{version}.tgz",
        "checksums": "",
    },
}
artifacts_lock = "group_data/artifacts.lock.json"
# Every container image the cluster and post-bootstrap pull, as upstream names them. kubeadm's are exactly
# `kubeadm config images list` of kubernetes_version (the deploy hands their repository and the etcd and
# CoreDNS tags to kubeadm); the others are what the pinned charts and manifests use. Digests live in the lock
# file `images_lock` (`python3 tools/pin_artifacts.py --images` reads them from the registries).
images = {
    "kube-apiserver": "registry.k8s.io/kube-apiserver:v1.37.2",
    "kube-controller-manager": "registry.k8s.io/kube-controller-manager:v1.37.2",
    "kube-scheduler": "registry.k8s.io/kube-scheduler:v1.37.2",
    "kube-proxy": "registry.k8s.io/kube-proxy:v1.37.2",
    "etcd": "registry.k8s.io/etcd:3.7.0-0",
    "coredns": "registry.k8s.io/coredns/coredns:v1.14.6",
    "pause": "registry.k8s.io/pause:3.10.2",  # containerd's pod sandbox image too
    # cni = "cilium" (chart 1.20.2)
    "cilium": "quay.io/cilium/cilium:v1.20.2",
    "cilium-operator": "quay.io/cilium/operator-generic:v1.20.2",
    # storage_class = "local-path" (v0.0.37) and the helper pods that make and remove volume folders
    "local-path-provisioner": "docker.io/rancher/local-path-provisioner:v0.0.37",
    "busybox": "docker.io/library/busybox:1.37.0",
    # Argo CD v3.6.1's install.yaml (argocd_install): one image for every component, Redis, and Dex (argocd_dex)
    "argocd": "quay.io/argoproj/argocd:v3.6.1",
    "argocd-redis": "public.ecr.aws/docker/library/redis:8.10.1-alpine",
    "dex": "ghcr.io/dexidp/dex:v2.46.0",
    # gitops-repo's platform charts (their values name these): the sealed-secrets chart 2.19.3 (appVersion
    # 0.39.1) runs the controller of kubeseal's release, as it ships in that release's tree
    "sealed-secrets-controller": "docker.io/bitnami/sealed-secrets-controller:0.40.0",
    # the metrics-server chart 3.13.1 (appVersion 0.8.1) runs the release of the tree it ships in
    "metrics-server": "registry.k8s.io/metrics-server/metrics-server:v0.9.0",
    # the MetalLB chart 0.16.1 (L2 mode: no FRR image)
    "metallb-controller": "quay.io/metallb/controller:v0.16.1",
    "metallb-speaker": "quay.io/metallb/speaker:v0.16.1",
    # the Traefik chart 41.3.0 (its appVersion)
    "traefik": "docker.io/library/traefik:v3.7.11",
    # kube-prometheus-stack 88.5.0 and its subcharts (their appVersions; Grafana is not in the catalog yet)
    "prometheus-operator": "quay.io/prometheus-operator/prometheus-operator:v0.93.1",
    "prometheus-config-reloader": "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1",
    "prometheus": "quay.io/prometheus/prometheus:v3.14.0",
    "alertmanager": "quay.io/prometheus/alertmanager:v0.34.0",
    "node-exporter": "quay.io/prometheus/node-exporter:v1.12.1-distroless",  # the chart's default variant
    "kube-state-metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.20.0",
}
# Catalog entries replaced by another build, by name: name -> registry/path:tag. The pod specs of the pinned
# manifests that name the original image are rewritten to it (e.g. a Redis your registry already holds).
image_overrides: dict[str, str] = {}
images_lock = "group_data/images.lock.json"
# Air-gapped nodes: "" lets the nodes pull from the upstream registries. A project name (e.g. "mirror") makes
# every node pull registry.k8s.io, quay.io, docker.io, ghcr.io (and any registry of `images`) through the
# private registry, from <registry_domain>/<gitlab_group>/<project>/<upstream registry>/<path>, which
# `python3 -m tools.images copy` fills from the catalog, verified by digest (docs/artifacts.md).
image_mirror_project = ""
# Base URL of a local mirror with the same layout as upstream (air-gapped installs); "" = upstream.
artifact_mirror = ""
# Registries containerd pulls from through a mirror first, e.g. {"registry.k8s.io": "http://mirror.lab:5000"}.
image_registry_mirrors: dict[str, str] = {}

# --- the Kubernetes API: a stable address for kubeconfigs and certificates
# "" = the control-plane host's name and port 6443. Set a DNS name (or a VIP) to move the API later
# without reissuing every kubeconfig.
control_plane_endpoint = ""
api_server_extra_sans: list[str] = []
# Kubernetes 1.35+ kubelets refuse cgroup v1 hosts. Debian 12 and 13 boot cgroup v2; set False only for an
# old host that still runs cgroup v1 (the kubelet then warns instead).
kubelet_fail_cgroup_v1 = True
# The kubelet's hard eviction thresholds: its own defaults, written out (a signal left out would get no
# threshold at all). Below them the node is tainted (e.g. disk-pressure) and evicts pods.
kubelet_eviction_hard = {
    "memory.available": "100Mi",
    "nodefs.available": "10%",
    "nodefs.inodesFree": "5%",
    "imagefs.available": "15%",
    "imagefs.inodesFree": "5%",
}
# kubeadm preflight checks to accept when they fail, by name (never "all"); give each a reason.
kubeadm_ignore_preflight_errors: list[str] = []
# kubeadm's own timeouts for init and join, in seconds, by name (controlPlaneComponentHealthCheck 240,
# kubeletHealthCheck 240, kubernetesAPICall 60, etcdAPICall 120, tlsBootstrap 300, discovery 300). Raise
# them on slow or busy hardware, where a control plane that is still starting fails `kubeadm init`.
kubeadm_timeouts: dict[str, int] = {}
# Extra Helm values for the CNI's chart, merged over the deploy's own (docs/phases.md).
cni_values: dict = {}
# False: post-bootstrap installs the CNI, the StorageClass and node labels, and leaves Argo CD to you.
argocd_install = True
# Argo CD's Dex, for SSO through your identity provider. False installs Argo CD without it (local users only).
argocd_dex = True
# One Helm repository (e.g. Harbor, Nexus, ChartMuseum) serving every platform chart at its pinned version,
# for sites that cannot reach the charts' upstream repositories; "" = upstream.
helm_chart_mirror = ""
# Applications of the gitops repository Argo CD does not install, each with the reason every deploy prints
# (e.g. a component whose software cannot run at a site). Empty: the whole platform and Online Boutique.
gitops_apps_left_out: dict[str, str] = {}
# Parts of kube-prometheus-stack left out, each with its reason: "grafana", "admission-webhooks" (the
# operator's validating webhook and the kube-webhook-certgen job that makes its certificate). Empty: all.
monitoring_left_out: dict[str, str] = {}
# How long Alertmanager waits before it tells Slack about changes in an alert group it already notified (a
# new alert in it, or its alerts resolved), in seconds. Alertmanager's own default: 5 minutes.
alert_group_interval_s = 300
node_ready_timeout_s = 600

# --- load tests (tests/acceptance runs k6 through the MetalLB VIP with these; README: Verifying)
loadtest_peak_users = 50  # enough to push the frontend's HPA out on 4-8 GB workers
loadtest_p95_ms = 800
loadtest_error_rate = 0.01

# --- platform host: GitLab CE and GitLab Runner from GitLab's official package repositories.
# Versions are the November 2026 minor releases; check the release notes and bump deliberately.
gitlab_version = "19.6.0"
gitlab_runner_version = "19.6.0"
# "" skips installing GitLab and the runner (the local sandbox: no package source offline).
gitlab_package_source = "https://packages.gitlab.com"
# Memory-conscious defaults for a mini PC (GitLab's "constrained environment" guidance).
gitlab_puma_workers = 0  # single mode
gitlab_sidekiq_concurrency = 10
gitlab_backup_keep_days = 7
# Generated secrets of this inventory: CA key, GitLab root password, tokens, kubeconfig (git-ignored).
state_dir = "state/default"

# --- switches
disable_swap = True  # kubelet refuses to run with swap on (unless configured for it)
gitlab_prometheus = False  # GitLab's bundled Prometheus costs ~200-500 MiB on the mini PC
