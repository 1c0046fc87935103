"""Pieces of the monitoring configuration exactly as the cluster receives them, from the rendered gitops repo."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.validation import gitops


def prometheus_rule(repo: Path) -> dict:
    objects = gitops.kustomize(repo / "platform" / "boutique-monitoring")
    return next(o for o in objects if o["kind"] == "PrometheusRule")


def write_rules_file(repo: Path, dest: Path, shorten_for: str | None = None, shorten_ranges: str | None = None) -> Path:
    """The PrometheusRule's groups as a Prometheus rules file (what the operator generates from it).

    shorten_for / shorten_ranges: replace every `for:` duration / every range selector's window
    (end-to-end tests only, and they say so).
    """
    import re

    groups = prometheus_rule(repo)["spec"]["groups"]
    for group in groups:
        for rule in group["rules"]:
            if shorten_for and "for" in rule:
                rule["for"] = shorten_for
            if shorten_ranges:
                rule["expr"] = re.sub(r"\[\d+[smh]\]", f"[{shorten_ranges}]", rule["expr"])
    dest.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return dest


def alertmanager_config(repo: Path) -> dict:
    values = yaml.safe_load((repo / "platform" / "kube-prometheus-stack" / "values.yaml").read_text())
    return values["alertmanager"]["config"]


def dashboards(repo: Path) -> dict[str, dict]:
    import json

    folder = repo / "platform" / "boutique-monitoring" / "dashboards"
    return {p.name: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
