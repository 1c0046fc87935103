"""Lab-wide settings. Every value is validated before any host is touched (tasks/settings.py); the README's
settings table explains each key. Values here are the defaults for the seed's lab; edit them for yours."""

# --- names: resolved through /etc/hosts on every host, pointing at the platform host
gitlab_domain = "gitlab.local"
registry_domain = "registry.local"
# GitLab group of app-repo and gitops-repo; images live at <registry_domain>/<gitlab_group>/app-repo/<service>.
gitlab_group = "boutique"
# Names served by Ingress-NGINX on its MetalLB VIP (the first address of metallb_pool). Point them at the
# VIP in your DNS or /etc/hosts on the machines you browse from.
storefront_host_dev = "dev.boutique.local"
storefront_host_prod = "boutique.local"
argocd_host = "argocd.local"
grafana_host = "grafana.local"
ingress_class = "nginx"

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
kubernetes_version = "1.37.0"
online_boutique_version = "v0.10.6"

# Every file the deploy downloads: name -> version, sha256 and upstream URL ({version} is filled in).
# Phase 0 downloads nothing; the cluster phase adds containerd, runc, the CNI plugins and the Kubernetes
# binaries here, each with the sha256 published with its release.
artifacts = {}
# Base URL of a local mirror with the same layout as upstream (air-gapped installs); "" = upstream.
artifact_mirror = ""

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
