"""Every platform chart rendered for real, as Argo CD will: the pinned chart (from a verified source), the
project's values file, Helm's own engine. Values are checked against the chart's values schema where it
ships one (Helm's validation) and key by key against what the chart knows, so a misspelt key fails here
instead of being ignored by Helm. tests/kube/test_platform_charts.py dry-runs what they render."""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace

import pytest
import yaml

from tasks.gitops_repo import PLATFORM_APPS, render_gitops_repo
from tasks.settings import CHART_IMAGES, load_settings
from tests.conftest import REPO, load_inventory
from tests.validation.charts import CHARTED_APPS, chart_templates, rendered_objects, unknown_keys, values_of
from tools.upstream import MODULE_CHARTS, NO_SOURCE_CHARTS, SHARED_CHARTS, ChartUnavailable, chart

IDS = [app.name for app in CHARTED_APPS]


def shipped(inventory: str):
    """The inventory's settings with every Application (what ships), and a digest for every image: a real
    install pins each one (the chart then gets `tag@digest`, which some charts also read as a version)."""
    settings = load_settings(load_inventory(REPO / "inventories" / inventory))
    pinned = {name: {**image, "digest": image["digest"] or "sha256:" + "0" * 64}
              for name, image in settings.images.items()}
    return replace(settings, gitops_apps_left_out={}, images=pinned)


@pytest.fixture(scope="module", params=["sandbox.py", "lab.py"])
def repo(request, tmp_path_factory):
    """gitops-repo rendered for each shipped inventory."""
    return render_gitops_repo(shipped(request.param), tmp_path_factory.mktemp("gitops") / "repo", "a" * 40)


def loaded(app):
    import helm_python as helm

    return helm.Chart.load_archive(chart(app.chart, app.version))


def test_every_platform_chart_has_a_verified_source_at_its_pinned_version():
    """Each pin exists: its chart is in a pinned module tree or a shared archive with its sha256, and that
    chart's Chart.yaml says the pinned version."""
    for app in CHARTED_APPS:
        assert app.chart in MODULE_CHARTS or f"{app.chart}-{app.version}.tgz" in SHARED_CHARTS, app.name
        with tarfile.open(fileobj=io.BytesIO(chart(app.chart, app.version))) as tar:
            member = tar.extractfile(f"{app.chart}/Chart.yaml")
            assert member is not None and yaml.safe_load(member.read())["version"] == app.version


def test_only_the_charts_listed_as_without_a_source_are_left_unrendered():
    """A pinned chart is rendered here unless tools/upstream.py NO_SOURCE_CHARTS names it with its reason; each
    named chart is pinned, has no source indeed, and is refused with that reason."""
    unrendered = sorted(app.chart for app in PLATFORM_APPS if app.chart and app not in CHARTED_APPS)
    assert unrendered == sorted(NO_SOURCE_CHARTS)
    for app in (a for a in PLATFORM_APPS if a.chart in NO_SOURCE_CHARTS):
        print(f"not rendered here: {app.chart} {app.version}: {NO_SOURCE_CHARTS[app.chart]}")
        assert app.chart not in MODULE_CHARTS and f"{app.chart}-{app.version}.tgz" not in SHARED_CHARTS
        with pytest.raises(ChartUnavailable, match=NO_SOURCE_CHARTS[app.chart][:40]):
            chart(app.chart, app.version)


def test_a_pin_that_no_source_holds_is_refused_naming_what_is_there():
    with pytest.raises(ChartUnavailable, match=r"holds 3\.13\.1, not 3\.13\.0"):
        chart("metrics-server", "3.13.0")  # the pin before: no tag's tree holds that chart version
    with pytest.raises(ChartUnavailable, match="no source here for chart loki 18.12.0"):
        chart("loki", "18.12.0")  # not in the published history available here


@pytest.mark.parametrize("app", CHARTED_APPS, ids=IDS)
def test_every_values_key_is_one_the_chart_knows(repo, app):
    values = values_of(repo, app)
    archive = chart(app.chart, app.version)
    with loaded(app) as helm_chart:
        defaults = helm_chart.merge_values({})
    assert unknown_keys(values, defaults, chart_templates(archive)) == []


@pytest.mark.parametrize("app", CHARTED_APPS, ids=IDS)
def test_the_values_pass_the_chart_s_own_schema(repo, app):
    """Helm's validation against values.schema.json (charts without one pass here; the key check above
    still holds them)."""
    with loaded(app) as helm_chart:
        helm_chart.validate_schema(values_of(repo, app))


def test_the_checks_catch_a_misspelt_key_and_a_value_of_the_wrong_type():
    from helm_python import HelmValuesError

    apps = {app.name: app for app in CHARTED_APPS}
    stack = apps["kube-prometheus-stack"]
    with loaded(stack) as helm_chart:
        defaults = helm_chart.merge_values({})
    templates = chart_templates(chart(stack.chart, stack.version))
    mistakes = {"alertmanger": {}, "prometheus": {"prometheusSpec": {"retentionn": "7d"}},
                "grafana": {"ingress": {"enabeld": True}}}
    assert unknown_keys(mistakes, defaults, templates) == [
        "alertmanger", "prometheus.prometheusSpec.retentionn", "grafana.ingress.enabeld"]
    with loaded(apps["metallb"]) as helm_chart, pytest.raises(HelmValuesError, match="enabled"):
        helm_chart.validate_schema({"speaker": {"frr": {"enabled": "no"}}})


@pytest.mark.parametrize("app", CHARTED_APPS, ids=IDS)
def test_every_chart_renders_with_the_project_s_values(repo, app):
    objects = rendered_objects(app, values_of(repo, app))
    kinds = [obj["kind"] for obj in objects]
    assert {"Deployment", "DaemonSet", "StatefulSet"} & set(kinds), f"{app.name} rendered no workload: {kinds}"
    assert all(obj.get("apiVersion") and obj.get("metadata", {}).get("name") for obj in objects)


def test_every_app_syncs_after_the_apps_whose_custom_resources_its_chart_uses(repo):
    """Argo CD applies a wave only after the waves before it: a chart that renders a custom resource (a
    ServiceMonitor, say) must sync after the app that installs that kind's CRD, or its first sync fails."""
    rendered = {app.name: rendered_objects(app, values_of(repo, app)) for app in CHARTED_APPS}
    provider = {(crd["spec"]["group"], crd["spec"]["names"]["kind"]): name
                for name, objects in rendered.items() for crd in objects if crd["kind"] == "CustomResourceDefinition"}
    waves = {app.name: app.wave for app in CHARTED_APPS}
    too_early = sorted({f"{name} (wave {waves[name]}) renders {kind} before {owner} (wave {waves[owner]}) installs it"
                        for name, objects in rendered.items() for obj in objects
                        for owner in [provider.get((obj["apiVersion"].split("/")[0], obj["kind"]))]
                        for kind in [obj["kind"]] if owner and owner != name and waves[owner] >= waves[name]})
    assert too_early == []


def _images_in(objects: list[dict]) -> set[str]:
    """Every image the rendered objects run: pod templates' containers, the operator's Prometheus and
    Alertmanager resources, and the config reloader the operator is told to inject."""
    images = set()
    for obj in objects:
        spec = obj.get("spec", {})
        pod = spec.get("template", {}).get("spec", {}) if obj["kind"] in ("Deployment", "DaemonSet", "StatefulSet",
                                                                          "Job") else {}
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            images.add(container["image"])
            images |= {arg.split("=", 1)[1] for arg in container.get("args", [])
                       if arg.startswith("--prometheus-config-reloader=")}
        if obj["kind"] in ("Prometheus", "Alertmanager"):
            images.add(spec["image"])
    return images


@pytest.mark.parametrize("inventory", ["sandbox.py", "lab.py"])
def test_kube_prometheus_stack_runs_the_catalog_s_images_and_leaves_out_only_what_the_settings_say(inventory,
                                                                                                  tmp_path):
    """Every image of the chart's workloads is the catalog's, by the lock's digest (Grafana's, which the
    catalog does not hold yet, aside); the sandbox leaves Grafana and the admission webhooks
    out (monitoring_left_out), the lab inventory keeps them."""
    settings = shipped(inventory)
    repo = render_gitops_repo(settings, tmp_path / "repo", "a" * 40)
    app = next(a for a in CHARTED_APPS if a.name == "kube-prometheus-stack")
    objects = rendered_objects(app, values_of(repo, app))
    expected = {f"{settings.images[name]['ref']}@{settings.images[name]['digest']}"
                for name in CHART_IMAGES["kube-prometheus-stack"]}
    images = _images_in(objects)
    assert expected <= images, f"catalog images not run: {sorted(expected - images)}"
    others = sorted(image for image in images - expected if "grafana" not in image and "busybox" not in image
                    and "k8s-sidecar" not in image)
    left_out = settings.monitoring_left_out
    names = {(obj["kind"], obj["metadata"]["name"]) for obj in objects}
    grafana = ("Deployment", "kube-prometheus-stack-grafana") in names
    webhook = any(kind == "ValidatingWebhookConfiguration" for kind, _ in names)
    certgen = any(kind == "Job" for kind, _ in names)
    assert (grafana, webhook, certgen) == ("grafana" not in left_out,) + ("admission-webhooks" not in left_out,) * 2
    # the certificate job's image is the only other one, and only with the webhooks
    assert others == ([] if "admission-webhooks" in left_out else [others[0]]), others
    if "admission-webhooks" not in left_out:
        assert "kube-webhook-certgen" in others[0]
    prometheus = next(obj for obj in objects if obj["kind"] == "Prometheus")
    assert prometheus["spec"]["version"] == "v3.14.0"
