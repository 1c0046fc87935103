"""Kubernetes workers (k8s-worker1, k8s-worker2, ...): Online Boutique, monitoring, load tests.

The mission says workers need 4-8 GB of RAM: below 3.5 GiB (a "4 GB" machine reports about 3.8 GiB) the
deploy refuses the host; below 7.5 GiB it warns, because the whole app plus Prometheus and Loki will be
tight and the HPA demo will hit memory pressure first.
"""

memory_hard_min_mb = 3500
memory_soft_min_mb = 7500
cpu_min = 2
disk_soft_min_gb = 20
node_labels = {"lab.gitops/role": "worker", "node-role.kubernetes.io/worker": ""}
