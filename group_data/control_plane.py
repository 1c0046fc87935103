"""The Kubernetes control plane (k8s-master). kubeadm's own preflight refuses fewer than 2 CPUs and less
than 1700 MB of memory; 4 GB leaves room for Argo CD and the monitoring stack's operators."""

memory_hard_min_mb = 1700
memory_soft_min_mb = 3500
cpu_min = 2
disk_soft_min_gb = 20
node_labels = {"lab.gitops/role": "control-plane"}
