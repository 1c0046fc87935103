"""The gitops repository as the platform phase would push it: renders, validates strictly, meets the policies,
and the suite fails each deliberately broken copy for the right reason."""

from __future__ import annotations

from dataclasses import replace

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tasks.gitops_repo import (
    PLATFORM_APPS,
    SERVICES,
    gitops_repo_url,
    ingress_namespace,
    platform_apps,
    registry_path,
    render_gitops_repo,
)
from tasks.settings import load_settings
from tests.conftest import REPO, load_inventory, unavailable
from tests.validation import gitops

IMAGE_TAG = "3f9c1e2a7b5d4c6e8f0a1b2c3d4e5f6a7b8c9d0e"


def settings_of(inventory: str):
    """An inventory's settings with every Application rendered: validation covers all that ships, also what
    an inventory leaves out (the sandbox's app set is tested below)."""
    return replace(load_settings(load_inventory(REPO / "inventories" / inventory)), gitops_apps_left_out={})


@pytest.fixture(scope="module", params=["sandbox.py", "lab.py"])
def rendered(request, tmp_path_factory):
    settings = settings_of(request.param)
    repo = render_gitops_repo(settings, tmp_path_factory.mktemp("gitops") / "repo", IMAGE_TAG)
    return settings, repo


@pytest.fixture(scope="module")
def sandbox_repo(tmp_path_factory):
    """The mutation cases run against one rendering: the suite's logic does not depend on the settings."""
    settings = settings_of("sandbox.py")
    return settings, render_gitops_repo(settings, tmp_path_factory.mktemp("gitops") / "repo", IMAGE_TAG)


def validate(settings, repo: Path) -> list[str]:
    return gitops.validate_repo(repo, settings.registry_domain, gitops_repo_url(settings), ingress_namespace(settings))


def test_rendered_repo_has_no_problems(rendered):
    settings, repo = rendered
    assert validate(settings, repo) == []


def test_every_kind_in_the_repo_has_a_real_schema(rendered):
    _, repo = rendered
    kinds = set(gitops.all_kinds(repo))
    assert ("argoproj.io/v1alpha1", "Application") in kinds and ("metallb.io/v1beta1", "IPAddressPool") in kinds
    missing = [(api, kind) for api, kind in kinds
               if any("no schema" in p for p in gitops.schema_problems({"apiVersion": api, "kind": kind,
                                                                         "metadata": {"name": "x"}}))]
    assert missing == []


def test_a_kind_without_a_schema_fails_instead_of_passing():
    problems = gitops.schema_problems({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert problems and "no schema for example.com/v1 Widget" in problems[0]


def test_settings_reach_the_repo(rendered):
    settings, repo = rendered
    dev = gitops.objects_of(repo, "apps/online-boutique/overlays/dev")
    ingress = next(o for o in dev if o["kind"] == "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == settings.storefront_host_dev
    assert ingress["spec"]["ingressClassName"] == settings.ingress_class
    images = {c["image"] for d in gitops.workloads(dev) for c in gitops.containers(d)}
    assert f"{registry_path(settings)}/frontend:{IMAGE_TAG}" in images
    pool = next(o for o in gitops.objects_of(repo, "platform/metallb-config") if o["kind"] == "IPAddressPool")
    assert pool["spec"]["addresses"] == [settings.metallb_pool_range]
    assert gitops.in_pool(controller_vip(repo, settings.ingress_controller), settings.metallb_pool_range)
    root = yaml.safe_load((repo / "argocd/root.yaml").read_text())
    assert root["spec"]["source"]["repoURL"] == gitops_repo_url(settings)


def controller_vip(repo: Path, controller: str) -> str:
    values = yaml.safe_load((repo / f"platform/{controller}/values.yaml").read_text())
    service = values["controller"]["service"] if controller == "ingress-nginx" else values["service"]
    return service["annotations"]["metallb.io/loadBalancerIPs"]


@pytest.mark.parametrize("controller", ["traefik", "ingress-nginx"])
def test_either_ingress_controller_renders_a_valid_repo_with_the_same_ingresses(controller, tmp_path):
    """ingress_controller picks the controller's Application; the Ingress objects, names, class and VIP stay
    the same, the storefront accepts traffic from that controller's namespace only, and Argo CD's Ingress
    reaches its HTTPS backend with either."""
    settings = replace(settings_of("sandbox.py"), ingress_controller=controller)
    repo = render_gitops_repo(settings, tmp_path / "repo", IMAGE_TAG)
    assert validate(settings, repo) == []
    apps = {o["metadata"]["name"] for o in yaml.safe_load_all((repo / "argocd/apps/platform.yaml").read_text()) if o}
    other = {"traefik": "ingress-nginx", "ingress-nginx": "traefik"}[controller]
    assert controller in apps and other not in apps
    assert ingress_namespace(settings) == controller
    assert gitops.in_pool(controller_vip(repo, controller), settings.metallb_pool_range)
    hosts = {}
    for overlay in ("dev", "prod"):
        for ingress in (o for o in gitops.objects_of(repo, f"apps/online-boutique/overlays/{overlay}")
                        if o["kind"] == "Ingress"):
            hosts[ingress["spec"]["rules"][0]["host"]] = ingress["spec"]["ingressClassName"]
    assert hosts == {settings.storefront_host_dev: settings.ingress_class,
                     settings.storefront_host_prod: settings.ingress_class}
    argocd = yaml.safe_load((repo / "platform/argocd-ingress/ingress.yaml").read_text())
    annotations = argocd["metadata"].get("annotations") or {}
    if controller == "ingress-nginx":
        assert annotations == {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS"}
    else:
        assert annotations == {}
        values = yaml.safe_load((repo / "platform/traefik/values.yaml").read_text())
        assert "--serversTransport.insecureSkipVerify=true" in values["additionalArguments"]
    assert argocd["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] == {"number": 443}


@pytest.mark.parametrize("shipper", ["alloy", "promtail"])
def test_either_log_shipper_renders_a_valid_repo_shipping_to_the_same_loki(shipper, tmp_path):
    """log_shipper picks the shipper's Application (the other is not rendered); both push every pod's log to
    the same Loki gateway with namespace, pod and container labels, so Loki, the dashboards and the runbook
    do not depend on which one runs. Alloy's chart cannot be rendered here (tools/upstream.py
    NO_SOURCE_CHARTS): its configuration is checked as text."""
    settings = replace(settings_of("sandbox.py"), log_shipper=shipper)
    repo = render_gitops_repo(settings, tmp_path / "repo", IMAGE_TAG)
    assert validate(settings, repo) == []
    apps = {o["metadata"]["name"] for o in yaml.safe_load_all((repo / "argocd/apps/platform.yaml").read_text()) if o}
    other = {"alloy": "promtail", "promtail": "alloy"}[shipper]
    assert shipper in apps and other not in apps and "loki" in apps
    values = yaml.safe_load((repo / f"platform/{shipper}/values.yaml").read_text())
    loki = "http://loki-gateway.monitoring.svc/loki/api/v1/push"
    if shipper == "promtail":
        assert values["config"]["clients"] == [{"url": loki}]
        assert any("Promtail reached end of life" in notice for notice in settings.retired_choices())
    else:
        config = values["alloy"]["configMap"]["content"]
        assert f'url = "{loki}"' in config and values["controller"]["type"] == "daemonset"
        for label in ("namespace", "pod", "container"):
            assert f'target_label  = "{label}"' in config
        assert config.count("{") == config.count("}")  # the blocks close (River has no parser here)
        assert not any("Promtail" in notice for notice in settings.retired_choices())


def test_the_storefront_refuses_the_controller_that_is_not_chosen(tmp_path):
    """Control case: the policy rendered for Traefik, validated as if Ingress-NGINX were chosen, fails."""
    settings = replace(settings_of("sandbox.py"), ingress_controller="traefik")
    repo = render_gitops_repo(settings, tmp_path / "repo", IMAGE_TAG)
    problems = gitops.validate_repo(repo, settings.registry_domain, gitops_repo_url(settings), "ingress-nginx")
    assert "NetworkPolicies allow namespace traefik -> frontend:8080" in problems
    assert "NetworkPolicies block namespace ingress-nginx -> frontend:8080" in problems


def test_overlays_differ_as_designed(rendered):
    _, repo = rendered
    dev = gitops.objects_of(repo, "apps/online-boutique/overlays/dev")
    prod = gitops.objects_of(repo, "apps/online-boutique/overlays/prod")
    assert {d["metadata"]["name"] for d in gitops.workloads(dev)} == set(SERVICES)
    assert "loadgenerator" not in {d["metadata"]["name"] for d in gitops.workloads(prod)}
    assert {o["metadata"]["namespace"] for o in dev if o["kind"] != "Namespace"} == {"boutique-dev"}
    assert {o["metadata"]["namespace"] for o in prod if o["kind"] != "Namespace"} == {"boutique-prod"}
    hpas = {o["spec"]["scaleTargetRef"]["name"] for o in prod if o["kind"] == "HorizontalPodAutoscaler"}
    assert "frontend" in hpas and not any(o["kind"] == "HorizontalPodAutoscaler" for o in dev)
    for hpa in (o for o in prod if o["kind"] == "HorizontalPodAutoscaler"):
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    pdbs = {o["metadata"]["name"] for o in prod if o["kind"] == "PodDisruptionBudget"}
    assert "frontend" in pdbs and "redis-cart" not in pdbs


def test_platform_apps_are_ordered_and_pinned():
    waves = {app.name: app.wave for app in PLATFORM_APPS}
    assert waves["metallb"] < waves["metallb-config"] < waves["ingress-nginx"] == waves["traefik"]
    assert waves["kube-prometheus-stack"] < waves["loki"] < waves["promtail"] == waves["alloy"]
    assert all(re.match(r"^\d+\.\d+\.\d+$", app.version) for app in PLATFORM_APPS if app.chart)
    assert next(a for a in PLATFORM_APPS if a.name == "ingress-nginx").version == "4.15.1"


def test_retired_components_are_said_to_be_retired(rendered):
    _, repo = rendered
    assert "retired" in (repo / "platform/ingress-nginx/values.yaml").read_text().lower()
    assert "end of life" in (repo / "platform/promtail/values.yaml").read_text().lower()


# ----------------------------------------------------------------------------------------- mutations


def mutate(repo: Path, tmp_path: Path, relative: str, old: str, new: str) -> Path:
    copy = tmp_path / "mutant"
    shutil.copytree(repo, copy)
    path = copy / relative
    text = path.read_text()
    assert old in text, f"mutation anchor {old!r} not found in {relative}"
    path.write_text(text.replace(old, new, 1))
    return copy


MUTATIONS = {
    "wrong port": ("apps/online-boutique/base/config.yaml", "EMAIL_SERVICE_ADDR: emailservice:5000",
                   "EMAIL_SERVICE_ADDR: emailservice:8080", "port 8080 is not a port of Service emailservice"),
    "missing probe": ("apps/online-boutique/base/cartservice.yaml", "readinessProbe:", "readinessProbeX:",
                      "container server: has no readinessProbe"),
    "latest tag": ("apps/online-boutique/overlays/dev/kustomization.yaml", f'newTag: "{IMAGE_TAG}"', "newTag: latest",
                   "uses the tag latest"),
    "typo in syncPolicy": ("argocd/apps/online-boutique.yaml", "automated:", "automatd:",
                           "Additional properties are not allowed ('automatd' was unexpected)"),
    "unpinned chart": ("argocd/apps/platform.yaml", "targetRevision: 41.3.0", "targetRevision: 41.x",
                       "chart traefik is not pinned to an exact version"),
    "public image": ("apps/online-boutique/overlays/prod/kustomization.yaml", "newName: registry.local/",
                     "newName: docker.io/", "is not from the private registry registry.local"),
    "missing limits": ("apps/online-boutique/base/frontend.yaml", "limits:", "limitz:", "no cpu in resources.limits"),
    "privileged container": ("apps/online-boutique/base/adservice.yaml", "allowPrivilegeEscalation: false",
                             "allowPrivilegeEscalation: true", "allowPrivilegeEscalation is not false"),
    "service selects nothing": ("apps/online-boutique/base/paymentservice.yaml", "    app: paymentservice\n  ports:",
                                "    app: paymentservce\n  ports:", "Service boutique-dev/paymentservice: selects no pod"),
    "call blocked by policy": ("apps/online-boutique/components/network-policies/network-policies.yaml",
                               "          app: emailservice\n    ports:\n    - protocol: TCP\n      port: 8080",
                               "          app: emailservice\n    ports:\n    - protocol: TCP\n      port: 5000",
                               "NetworkPolicies block checkoutservice -> emailservice:8080"),
    "policy allows too much": ("apps/online-boutique/components/network-policies/network-policies.yaml",
                               "  name: default-deny-all", "  name: default-deny-all\n  labels: {}",
                               None),
    "hpa without target": ("apps/online-boutique/overlays/prod/autoscaling.yaml", "name: cartservice\n  minReplicas",
                           "name: cartservic\n  minReplicas", "targets Deployment cartservic, which does not exist"),
    "no pod security": ("apps/online-boutique/overlays/dev/namespace.yaml", "enforce: restricted",
                        "enforce: baseline", "Pod Security is not enforced as restricted"),
    "pool used before its CRD": ("argocd/apps/platform.yaml", 'name: metallb-config\n  annotations:\n    '
                                 'argocd.argoproj.io/sync-wave: "-4"', 'name: metallb-config\n  annotations:\n    '
                                 'argocd.argoproj.io/sync-wave: "-6"', "uses IPAddressPool from metallb but does not sync after it"),
}


@pytest.mark.parametrize("case", [k for k, v in MUTATIONS.items() if v[3]], ids=lambda c: c.replace(" ", "-"))
def test_suite_fails_a_broken_copy_for_the_right_reason(sandbox_repo, tmp_path, case):
    settings, repo = sandbox_repo
    relative, old, new, reason = MUTATIONS[case]
    problems = validate(settings, mutate(repo, tmp_path, relative, old, new))
    assert any(reason in p for p in problems), f"expected {reason!r} among {problems}"


def test_suite_catches_an_egress_rule_that_opens_a_call_nobody_makes(sandbox_repo, tmp_path):
    settings, repo = sandbox_repo
    path = "apps/online-boutique/components/network-policies/network-policies.yaml"
    old = "  - to:\n    - podSelector:\n        matchLabels:\n          app: redis-cart"
    new = ("  - to:\n    - podSelector:\n        matchLabels:\n          app: paymentservice\n    ports:\n"
           "    - protocol: TCP\n      port: 50051\n" + old)
    mutant = mutate(repo, tmp_path, path, old, new)
    # cartservice may now dial paymentservice's egress, but paymentservice's ingress still refuses it; open both.
    text = (mutant / path).read_text().replace(
        "    - podSelector:\n        matchLabels:\n          app: checkoutservice\n    ports:\n    - protocol: TCP\n"
        "      port: 50051",
        "    - podSelector:\n        matchLabels:\n          app: checkoutservice\n    - podSelector:\n        matchLabels:\n"
        "          app: cartservice\n    ports:\n    - protocol: TCP\n      port: 50051", 1)
    (mutant / path).write_text(text)
    problems = validate(settings, mutant)
    assert "NetworkPolicies allow cartservice -> paymentservice:50051, which no configuration calls" in problems


CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def test_checkov_passes_on_the_rendered_repo_with_every_skip_explained(sandbox_repo, tmp_path):
    import json
    import subprocess

    if not CHECKOV.exists():
        unavailable("checkov is not installed (make checkov)")
    _, repo = sandbox_repo
    skips = yaml.safe_load((REPO / "tests/validation/checkov-skips.yaml").read_text())
    assert all(isinstance(reason, str) and len(reason) > 20 for reason in skips.values())
    out = tmp_path / "rendered"
    out.mkdir()
    # What Argo CD deploys: every kustomization but the base, which only exists inside the overlays.
    for root in [r for r in gitops.kustomize_roots(repo) if r.name != "base"]:
        objects = gitops.kustomize(root)
        (out / f"{root.relative_to(repo).as_posix().replace('/', '-')}.yaml").write_text(yaml.safe_dump_all(objects))
    proc = subprocess.run([str(CHECKOV), "--skip-download", "--quiet", "--framework", "kubernetes", "-o", "json",
                           "-d", str(out), "--skip-check", ",".join(skips)], capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [f"{f['check_id']} {f['check_name']}: {f['resource']}" for r in reports for f in r["results"]["failed_checks"]]
    passed = sum(r["summary"]["passed"] for r in reports)
    assert failed == [] and passed > 100, failed


def test_the_sandbox_s_app_set_leaves_out_exactly_what_it_lists_and_still_validates(tmp_path):
    """What the lab's Argo CD syncs (tools/lab/git_server.py seeds this rendering): the root app's kustomization
    builds, names only the Applications not left out, and the repository passes the same validation."""
    from tasks.gitops_repo import application_names

    settings = load_settings(load_inventory(REPO / "inventories" / "sandbox.py"))
    left_out = settings.gitops_apps_left_out
    assert left_out and all(reason for reason in left_out.values())
    repo = render_gitops_repo(settings, tmp_path / "repo", IMAGE_TAG)
    built = gitops.kustomize(repo / "argocd" / "apps")
    apps = sorted(o["metadata"]["name"] for o in built if o["kind"] == "Application")
    assert apps == sorted(set(application_names(settings)) - set(left_out))
    assert sorted(o["metadata"]["name"] for o in built if o["kind"] == "AppProject") == ["boutique", "platform"]
    assert validate(settings, repo) == []
    # and with nothing left out, every Application is there
    everything = render_gitops_repo(replace(settings, gitops_apps_left_out={}), tmp_path / "all", IMAGE_TAG)
    built = gitops.kustomize(everything / "argocd" / "apps")
    assert sorted(o["metadata"]["name"] for o in built if o["kind"] == "Application") == sorted(application_names(settings))


def test_charts_come_from_the_site_s_chart_mirror_when_it_has_one(tmp_path):
    """The sandbox pulls its charts from the lab's Helm repository; the lab inventory from each upstream."""
    from tools.lab.constants import CHART_MIRROR_URL

    for inventory, expected in (("sandbox.py", {CHART_MIRROR_URL}),
                                ("lab.py", {app.repo for app in platform_apps(settings_of("lab.py")) if app.chart})):
        settings = settings_of(inventory)
        repo = render_gitops_repo(settings, tmp_path / inventory, IMAGE_TAG)
        apps = list(yaml.safe_load_all((repo / "argocd/apps/platform.yaml").read_text()))
        charts = {s["repoURL"] for a in apps if a for s in a["spec"].get("sources", []) if "chart" in s}
        assert charts == expected, inventory
        projects = {p["metadata"]["name"]: p for p in yaml.safe_load_all((repo / "argocd/apps/projects.yaml").read_text())}
        assert set(projects["platform"]["spec"]["sourceRepos"]) == expected | {gitops_repo_url(settings)}


def test_a_chart_image_is_the_catalog_s_pinned_by_the_lock_s_digest(tmp_path):
    settings = settings_of("lab.py")
    digest = "sha256:" + "cd" * 32
    pinned = {**settings.images["sealed-secrets-controller"], "digest": digest}
    for images, tag in ((settings.images, "0.40.0"), ({**settings.images, "sealed-secrets-controller": pinned},
                                                      f"0.40.0@{digest}")):
        repo = render_gitops_repo(replace(settings, images=images), tmp_path / tag, IMAGE_TAG)
        values = yaml.safe_load((repo / "platform/sealed-secrets/values.yaml").read_text())
        assert values["image"] == {"registry": "docker.io", "repository": "bitnami/sealed-secrets-controller",
                                   "tag": tag}
