"""Phases 3-4, the pod network: Calico (tigera-operator) or Cilium, by the setting `cni`, from its pinned Helm
chart archive rendered on the operator's machine (Helm's engine, no chart repository) and applied with
server-side apply. It must exist before anything else can run in the cluster, Argo CD included, so the
post-bootstrap step installs it rather than Argo CD."""

from __future__ import annotations

from typing import Any

from tasks.helm_charts import render_chart
from tasks.images import Reference
from tasks.kube_client import Applied, Cluster
from tasks.settings import Settings, image_repository


def merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overrides` merged in, mappings key by key (as Helm merges a second values file)."""
    result = dict(base)
    for key, value in overrides.items():
        result[key] = (
            merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) else value
        )
    return result


def _cilium_images(settings: Settings) -> dict[str, Any]:
    """The agent's and operator's images exactly as the catalog and its lock name them (by digest)."""
    agent, operator = settings.images["cilium"], settings.images["cilium-operator"]
    return {
        "image": {
            "repository": image_repository(agent["ref"]),
            "tag": Reference.parse(agent["ref"]).tag,
            "digest": agent["digest"],
            "useDigest": bool(agent["digest"]),
        },
        "operator": {
            "image": {
                "repository": image_repository(operator["ref"]).removesuffix("-generic"),
                "tag": Reference.parse(operator["ref"]).tag,
                "genericDigest": operator["digest"],
                "useDigest": bool(operator["digest"]),
            }
        },
    }


def release(settings: Settings, api_host: str, api_port: int) -> tuple[str, str, dict[str, Any]]:
    """(release, namespace, values) of the chosen CNI's chart, with `cni_values` merged over them."""
    if settings.cni == "cilium":
        # kube-proxy stays (kubeadm installs it); Cilium takes pod addresses from the node's podCIDR.
        values = merged(
            _cilium_images(settings),
            {
                "ipam": {"mode": "kubernetes"},
                "k8sServiceHost": api_host,
                "k8sServicePort": api_port,
                "operator": {"replicas": 1},
                "kubeProxyReplacement": False,
                # Hubble's certificates made in the cluster by a Job, not by Helm at render time: a render
                # generates new random ones each time, so every rerun would rewrite the Secrets.
                "hubble": {"tls": {"auto": {"method": "cronJob"}}},
            },
        )
        return "cilium", "kube-system", merged(values, settings.cni_values)
    # tigera-operator: one IP pool, exactly kubeadm's pod CIDR.
    pool = {
        "cidr": str(settings.pod_cidr),
        "encapsulation": "VXLANCrossSubnet",
        "natOutgoing": "Enabled",
        "nodeSelector": "all()",
    }
    return (
        "calico",
        "tigera-operator",
        merged({"installation": {"calicoNetwork": {"ipPools": [pool]}}}, settings.cni_values),
    )


def install(cluster: Cluster, settings: Settings, chart: bytes, api_endpoint: str) -> list[Applied]:
    host, _, port = api_endpoint.rpartition(":")
    name, namespace, values = release(settings, host, int(port))
    return cluster.apply_into(namespace, render_chart(chart, values, name, namespace))
