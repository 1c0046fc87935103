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

from tasks.gitops_repo import render_gitops_repo
from tasks.settings import load_settings
from tests.conftest import REPO, load_inventory
from tests.validation.charts import CHARTED_APPS, chart_templates, rendered_objects, unknown_keys, values_of
from tools.upstream import MODULE_CHARTS, SHARED_CHARTS, ChartUnavailable, chart

IDS = [app.name for app in CHARTED_APPS]


@pytest.fixture(scope="module", params=["sandbox.py", "lab.py"])
def repo(request, tmp_path_factory):
    """gitops-repo rendered for each shipped inventory, with every Application (what ships)."""
    settings = replace(load_settings(load_inventory(REPO / "inventories" / request.param)), gitops_apps_left_out={})
    return render_gitops_repo(settings, tmp_path_factory.mktemp("gitops") / "repo", "a" * 40)


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
