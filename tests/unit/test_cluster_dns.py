"""tasks/cluster_dns.py: GitLab's and the registry's names in kubeadm's Corefile, once, whatever ran before."""

from __future__ import annotations

import pytest

from tasks import cluster_dns

# The shape kubeadm 1.35 writes (kube-system/coredns).
KUBEADM_COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def test_the_names_go_into_the_main_server_block_with_fallthrough():
    names = ["gitlab.local", "registry.local"]
    corefile = cluster_dns.corefile_with_names(KUBEADM_COREFILE, "198.51.100.10", names)
    lines = corefile.splitlines()
    assert lines[0] == ".:53 {"
    hosts = lines.index("    hosts {")
    assert lines[hosts + 1].split() == ["198.51.100.10", "gitlab.local", "registry.local"]
    assert lines[hosts + 2].strip() == "fallthrough"
    # everything kubeadm wrote is still there, in order
    assert corefile.replace(cluster_dns.hosts_block("198.51.100.10", names), "") == KUBEADM_COREFILE


def test_a_rerun_changes_nothing_and_a_new_address_replaces_the_old_block():
    names = ["gitlab.local", "registry.local"]
    once = cluster_dns.corefile_with_names(KUBEADM_COREFILE, "198.51.100.10", names)
    assert cluster_dns.corefile_with_names(once, "198.51.100.10", names) == once
    moved = cluster_dns.corefile_with_names(once, "198.51.100.30", names)
    assert moved.count("hosts {") == 1 and "198.51.100.30 gitlab.local" in moved and "198.51.100.10" not in moved


def test_a_corefile_without_the_main_block_is_refused_with_what_to_check():
    with pytest.raises(cluster_dns.ClusterDnsError, match=r"no `\.:53 \{` server block.*kubectl -n kube-system"):
        cluster_dns.corefile_with_names("example.org:53 {\n    forward . 1.1.1.1\n}\n", "198.51.100.10", ["a"])


def test_the_platform_names_are_gitlab_s_and_the_registry_s(sandbox_settings):
    assert cluster_dns.platform_names(sandbox_settings) == ["gitlab.local", "registry.local"]
