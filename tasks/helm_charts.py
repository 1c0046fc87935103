"""Helm charts rendered on the operator's machine from pinned chart archives (helm-python-sdk embeds Helm 4's
engine: no helm binary, no chart repository, nothing fetched while rendering), applied by server-side apply
like every other object. Used for what must exist before Argo CD can run: the CNI, and NFS storage."""

from __future__ import annotations

from typing import Any

from tasks.kube_client import load_manifests


def render_chart(archive: bytes, values: dict[str, Any], release: str, namespace: str) -> list[dict]:
    """CRDs (the chart's crds/ folder) first, then the rendered templates, as objects; the release namespace
    is filled in where a template leaves it out (Helm itself does that at install time)."""
    import helm_python as helm  # a compiled extension: loaded only where a chart is rendered

    with helm.Chart.load_archive(archive) as chart:
        crds = [obj for crd in chart.crds for obj in load_manifests(_text(crd["data"]))]
        rendered = chart.render(values, name=release, namespace=namespace, is_install=True)
    objects = [
        obj
        for path, text in sorted(rendered.items())
        if path.endswith((".yaml", ".yml"))
        for obj in load_manifests(text)
    ]
    return crds + objects


def _text(data: Any) -> str:
    return data.decode() if isinstance(data, (bytes, bytearray)) else str(data)
