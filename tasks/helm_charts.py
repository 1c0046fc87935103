"""Helm charts rendered on this machine from pinned chart archives (helm-python-sdk embeds Helm 4's engine:
no helm binary, no chart repository, nothing fetched while rendering), applied by server-side apply like
every other object. Used for the CNI, which must exist before Argo CD can run at all."""

from __future__ import annotations

from typing import Any

from tasks.kube_client import load_manifests
from tasks.settings import Settings


def render_chart(archive: bytes, values: dict[str, Any], release: str, namespace: str) -> list[dict]:
    """CRDs (the chart's crds/ folder) first, then the rendered templates, as objects; the release namespace
    is filled in where a template leaves it out (Helm itself does that at install time)."""
    import helm_python as helm

    with helm.Chart.load_archive(archive) as chart:
        crds = [obj for crd in chart.crds for obj in load_manifests(_text(crd["data"]))]
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects = [obj for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml"))
               for obj in load_manifests(text)]
    return crds + objects


def _text(data: Any) -> str:
    return data.decode() if isinstance(data, (bytes, bytearray)) else str(data)


def cni_release(settings: Settings, api_host: str, api_port: int) -> tuple[str, str, dict[str, Any]]:
    """(release, namespace, values) of the chosen CNI's chart."""
    if settings.cni == "cilium":
        # kube-proxy stays (kubeadm installs it); Cilium takes pod addresses from the node's podCIDR.
        return "cilium", "kube-system", {
            "ipam": {"mode": "kubernetes"}, "k8sServiceHost": api_host, "k8sServicePort": api_port,
            "operator": {"replicas": 1}, "kubeProxyReplacement": False,
            # Hubble's certificates made in the cluster by a Job, not by Helm at render time: a render
            # generates new random ones each time, so every rerun would rewrite the Secrets.
            "hubble": {"tls": {"auto": {"method": "cronJob"}}},
        }
    # tigera-operator: one IP pool, exactly kubeadm's pod CIDR.
    return "calico", "tigera-operator", {
        "installation": {"calicoNetwork": {"ipPools": [{
            "cidr": str(settings.pod_cidr), "encapsulation": "VXLANCrossSubnet", "natOutgoing": "Enabled",
            "nodeSelector": "all()"}]}},
    }
