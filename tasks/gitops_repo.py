"""The gitops repository's content, rendered from the settings.

`files/gitops-repo/` holds the repository as the platform phase pushes it into GitLab's gitops-repo: plain
YAML, plus `*.j2` files for the few values that come from the deploy's settings (registry path, hosts,
MetalLB pool, the repository's own URL). `render_gitops_repo` is the one function that produces it, so
the real lab and the sandbox get repositories that differ only in those values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks.images import Reference
from tasks.settings import CHART_CHOICES, CHART_IMAGES, Settings
from tasks.templating import render_tree

SOURCE = Path(__file__).resolve().parent.parent / "files" / "gitops-repo"
# The TLS Secret each Ingress names: the ingress certificate from the deploy's CA (tasks/certificates.py),
# applied by post-bootstrap into each namespace with an Ingress, never committed to Git.
INGRESS_TLS_SECRET = "ingress-tls"

# Online Boutique services built by app-repo CI (image name = service name).
BUILT_SERVICES = [
    "adservice",
    "cartservice",
    "checkoutservice",
    "currencyservice",
    "emailservice",
    "frontend",
    "loadgenerator",
    "paymentservice",
    "productcatalogservice",
    "recommendationservice",
    "shippingservice",
]
# redis-cart runs the upstream redis image, mirrored into the private registry by CI at this pinned tag.
REDIS_TAG = "7.4-alpine"
SERVICES = sorted(BUILT_SERVICES + ["redis-cart"])

# prod: HPAs for the stateless front services; fixed replicas for the rest (the HPA'd ones get none).
PROD_HPA = {
    "frontend": {"min": 2, "max": 8},
    "cartservice": {"min": 2, "max": 5},
    "currencyservice": {"min": 2, "max": 5},
    "productcatalogservice": {"min": 2, "max": 5},
    "recommendationservice": {"min": 2, "max": 5},
}
PROD_REPLICAS = {
    "adservice": 1,
    "checkoutservice": 2,
    "emailservice": 1,
    "paymentservice": 2,
    "redis-cart": 1,
    "shippingservice": 2,
}


@dataclass(frozen=True)
class PlatformApp:
    name: str
    namespace: str
    wave: int
    repo: str = ""  # Helm chart repository; empty for an app whose manifests live in this repo
    chart: str = ""
    version: str = ""
    server_side: bool = False
    privileged_namespace: bool = False


# Pinned charts, in sync-wave order. Versions are bumped deliberately (README: "Bumping a chart").
PLATFORM_APPS = [
    PlatformApp(
        "sealed-secrets", "kube-system", -5, "https://bitnami-labs.github.io/sealed-secrets", "sealed-secrets", "2.19.3"
    ),
    PlatformApp(
        "metallb",
        "metallb-system",
        -5,
        "https://metallb.github.io/metallb",
        "metallb",
        "0.16.1",
        privileged_namespace=True,
    ),
    PlatformApp("metallb-config", "metallb-system", -4),
    PlatformApp(
        "metrics-server",
        "kube-system",
        -4,
        "https://kubernetes-sigs.github.io/metrics-server/",
        "metrics-server",
        "3.13.1",
    ),
    PlatformApp(
        "kube-prometheus-stack",
        "monitoring",
        -3,
        "https://prometheus-community.github.io/helm-charts",
        "kube-prometheus-stack",
        "88.5.0",
        server_side=True,
        privileged_namespace=True,
    ),
    # The ingress controller, one of ingress_controller's options (Traefik 3.7.11 in chart 41.3.0). After
    # kube-prometheus-stack: its chart renders a ServiceMonitor, whose CRD that app installs.
    PlatformApp(
        "traefik",
        "traefik",
        -2,
        "https://traefik.github.io/charts",
        "traefik",
        "41.3.0",
    ),
    PlatformApp(
        "ingress-nginx",
        "ingress-nginx",
        -2,
        "https://kubernetes.github.io/ingress-nginx",
        "ingress-nginx",
        "4.15.1",
    ),
    PlatformApp("argocd-ingress", "argocd", -2),
    PlatformApp("boutique-monitoring", "monitoring", -1),
    PlatformApp(
        "loki",
        "monitoring",
        -1,
        "https://grafana-community.github.io/helm-charts",
        "loki",
        "18.11.0",
        privileged_namespace=True,
    ),
    # The log shipper, one of log_shipper's options: Promtail (end of life) or Grafana Alloy, its successor.
    PlatformApp(
        "promtail",
        "monitoring",
        0,
        "https://grafana.github.io/helm-charts",
        "promtail",
        "6.17.1",
        privileged_namespace=True,
    ),
    PlatformApp(
        "alloy",
        "monitoring",
        0,
        "https://grafana.github.io/helm-charts",
        "alloy",
        "1.11.1",
        privileged_namespace=True,
    ),
]


BOUTIQUE_ENVS = ("dev", "prod")


def platform_apps(settings: Settings) -> list[PlatformApp]:
    """The platform apps the settings choose (e.g. the ingress controller's: tasks/settings.py CHART_CHOICES),
    gitops_apps_left_out aside."""
    return [app for app in PLATFORM_APPS if settings.chooses(app.name)]


def ingress_namespace(settings: Settings) -> str:
    """Where the chosen ingress controller runs: the namespace the storefront accepts traffic from."""
    return next(
        app.namespace
        for app in platform_apps(settings)
        if CHART_CHOICES.get(app.name, ("",))[0] == "ingress_controller"
    )


def application_names(settings: Settings | None = None) -> list[str]:
    """Every Application the root app can manage (argocd/apps), the platform's then Online Boutique's: with
    `settings`, those its options choose."""
    apps = PLATFORM_APPS if settings is None else platform_apps(settings)
    return [app.name for app in apps] + [f"boutique-{env}" for env in BOUTIQUE_ENVS]


def gitops_repo_url(settings: Settings) -> str:
    """Argo CD reads gitops-repo over SSH with a read-only deploy key."""
    return f"git@{settings.gitlab_domain}:{settings.gitlab_group}/gitops-repo.git"


def registry_path(settings: Settings) -> str:
    """GitLab's registry names images below the project that owns them: <registry>/<group>/<project>/<image>."""
    return f"{settings.registry_domain}/{settings.gitlab_group}/app-repo"


def chart_repository(settings: Settings, app: PlatformApp) -> str:
    """Where Argo CD pulls an app's chart from: the site's chart mirror when it has one."""
    return settings.helm_chart_mirror or app.repo


def chart_images(settings: Settings) -> dict[str, dict[str, str]]:
    """The catalog's chart images as Helm values split them: registry, repository, and the tag with the
    digest of the images lock appended (a chart's `registry/repository:tag` then pulls by digest)."""
    images = {}
    for names in CHART_IMAGES.values():
        for name in names:
            image = settings.images[name]
            ref = Reference.parse(image["ref"])
            digest = f"@{image['digest']}" if image["digest"] else ""
            # version: the tag alone, for charts that also pass it on as a version (the operator's custom resources)
            images[name] = {
                "registry": ref.registry,
                "repository": ref.repository,
                "tag": ref.tag + digest,
                "version": ref.tag,
            }
    return images


def render_context(settings: Settings, image_tag: str) -> dict[str, Any]:
    apps = [
        asdict(app) | ({"repo": chart_repository(settings, app)} if app.chart else {})
        for app in platform_apps(settings)
        if app.name not in settings.gitops_apps_left_out
    ]
    return {
        "services": SERVICES,
        "built_services": BUILT_SERVICES,
        "redis_tag": REDIS_TAG,
        "image_tag": image_tag,
        "registry_path": registry_path(settings),
        "gitops_repo_url": gitops_repo_url(settings),
        "gitops_branch": "main",
        "ingress_class": settings.ingress_class,
        "ingress_controller": settings.ingress_controller,
        "ingress_namespace": ingress_namespace(settings),
        "ingress_vip": str(settings.metallb_pool[0]),
        "metallb_pool_range": settings.metallb_pool_range,
        "storefront_host_dev": settings.storefront_host_dev,
        "storefront_host_prod": settings.storefront_host_prod,
        "argocd_host": settings.argocd_host,
        "grafana_host": settings.grafana_host,
        "runbook_url": f"https://{settings.gitlab_domain}/{settings.gitlab_group}/gitops-repo/-/blob/main/RUNBOOK.md",
        "hpa": PROD_HPA,
        "prod_replicas": PROD_REPLICAS,
        "pdb_services": sorted([s for s, n in PROD_REPLICAS.items() if n > 1] + list(PROD_HPA)),
        "platform_apps": apps,
        "chart_repositories": sorted({app["repo"] for app in apps if app["chart"]}),
        "chart_images": chart_images(settings),
        "boutique_envs": [env for env in BOUTIQUE_ENVS if f"boutique-{env}" not in settings.gitops_apps_left_out],
        "platform_namespaces": sorted({app.namespace for app in platform_apps(settings)}),
        # ServiceMonitors need kube-prometheus-stack's CRDs: charts render theirs only where it is synced.
        "service_monitors": "kube-prometheus-stack" not in settings.gitops_apps_left_out,
        "ingress_tls_secret": INGRESS_TLS_SECRET,
        "monitoring_left_out": settings.monitoring_left_out,
        "alert_group_interval_s": settings.alert_group_interval_s,
    }


def render_gitops_repo(settings: Settings, dest: Path, image_tag: str, source: Path = SOURCE) -> Path:
    """Write the repository to `dest`: files copied, `*.j2` rendered (StrictUndefined: a missing value fails).

    image_tag: the app-repo commit the overlays start from (the first pipeline builds exactly that commit).
    """
    return render_tree(source, dest, render_context(settings, image_tag))
