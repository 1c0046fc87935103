"""The platform charts as Argo CD will render them: each chart at its pinned version (tools/upstream.py says
where it comes from), with gitops-repo's values file, through Helm's own engine (helm-python-sdk, as the CNI
step uses); and the check that every values key is one the chart knows."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tasks.gitops_repo import PLATFORM_APPS, PlatformApp
from tasks.helm_charts import render_chart
from tools.upstream import NO_SOURCE_CHARTS, chart, chart_files, pack_chart

# The charts rendered here: every pinned chart that has a source (tools/upstream.py NO_SOURCE_CHARTS says
# which have none, and why; test_platform_charts.py checks that list).
CHARTED_APPS = [app for app in PLATFORM_APPS if app.chart and app.chart not in NO_SOURCE_CHARTS]


def values_of(repo: Path, app: PlatformApp) -> dict[str, Any]:
    """The values file the app's Application names ($values/platform/<app>/values.yaml)."""
    return yaml.safe_load((repo / "platform" / app.name / "values.yaml").read_text()) or {}


def rendered_objects(app: PlatformApp, values: dict[str, Any]) -> list[dict]:
    """CRDs first, then every object, rendered as Argo CD does (release name = the app's name)."""
    return render_chart(chart(app.chart, app.version), values, app.name, app.namespace)


def chart_templates(archive: bytes, scope: str = "") -> dict[str, str]:
    """{values scope: the text of all its templates}: "" for the chart, "grafana" for its subchart under the
    values key `grafana` (a dependency's alias where it has one), "a.b" deeper; vendored archives included."""
    files = chart_files(archive)
    root = next(name.split("/", 1)[0] for name in files)
    metadata = yaml.safe_load(files[f"{root}/Chart.yaml"])
    aliases = {dep["name"]: dep.get("alias") or dep["name"] for dep in metadata.get("dependencies") or []}
    out = {scope: "\n".join(data.decode(errors="replace") for name, data in sorted(files.items())
                            if name.startswith(f"{root}/templates/"))}
    subcharts: dict[str, bytes] = {}
    for name, data in files.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[1] == "charts" and parts[2].endswith(".tgz"):
            subcharts[parts[2]] = data
        elif len(parts) >= 4 and parts[1] == "charts":
            sub = parts[2]
            subcharts.setdefault(sub, b"")
    for sub, data in subcharts.items():
        if not data:  # a folder: packed again, so one code path reads both forms
            folder = f"{root}/charts/{sub}/"
            data = pack_chart({n.split("/", 2)[2]: d for n, d in files.items() if n.startswith(folder)})
        sub_files = chart_files(data)
        sub_meta = yaml.safe_load(next(d for n, d in sub_files.items()
                                       if n.count("/") == 1 and n.endswith("/Chart.yaml")))
        key = aliases.get(sub_meta["name"], sub_meta["name"])
        out.update(chart_templates(data, f"{scope}.{key}" if scope else key))
    return out


def unknown_keys(values: dict, defaults: Any, templates: dict[str, str], path: tuple[str, ...] = ()) -> list[str]:
    """Dotted paths of values keys the chart does not know: neither in its defaults (values.yaml, subcharts'
    included) nor read by one of its templates (`.Values.a.b`). Below a key a template reads whole (toYaml,
    `with`: Kubernetes fields such as resources, or an application's config passed through) anything goes
    here: the server-side dry-run checks what reaches Kubernetes."""
    problems = []
    for key, value in values.items():
        here = (*path, str(key))
        if here == ("global",):
            continue  # Helm's values shared with every subchart
        scope = max((s for s in templates if not s or ".".join(here).startswith(s + ".")), key=len)
        relative = here[len(scope.split(".")) if scope else 0:]
        reference = ".Values." + ".".join(relative)
        text = templates[scope]
        declared = isinstance(defaults, dict) and key in defaults
        if not declared and reference not in text:
            problems.append(".".join(here))
            continue
        read_whole = re.search(re.escape(reference) + r"(?![\w.])", text) is not None
        below = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(value, dict) and not read_whole and (below or not declared):
            problems += unknown_keys(value, below if isinstance(below, dict) else {}, templates, here)
    return problems
