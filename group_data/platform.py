"""The platform host (mini-pc): GitLab CE, its Container Registry, GitLab Runner (docker executor).

GitLab's documented minimum is 4 GB of RAM with 4 GB of swap-like headroom; below 3.5 GiB it does not
start reliably, so the deploy refuses it. 8 GB is comfortable for GitLab plus the runner's builds.
"""

memory_hard_min_mb = 3500
memory_soft_min_mb = 7500
cpu_min = 2
disk_soft_min_gb = 40  # GitLab, the registry's images and backups
