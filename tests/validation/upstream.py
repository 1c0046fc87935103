"""Upstream CRD schemas and chart value schemas for the validation tests, read from pinned module zips."""

from __future__ import annotations

import hashlib
import json

import yaml

from tasks.kube_client import ManifestLoader
from tools.upstream import SOURCES, cache_dir, read_files


def crd_schemas() -> dict[tuple[str, str], dict]:
    """{(apiVersion, kind): openAPIV3Schema} for every served version of every pinned CRD (cached as JSON)."""
    stamp = hashlib.sha256(repr(sorted(SOURCES.items())).encode()).hexdigest()[:12]
    cached = cache_dir() / f"crd-schemas-{stamp}.json"
    if cached.exists():
        return {tuple(k.split(" ", 1)): v for k, v in json.loads(cached.read_text()).items()}  # type: ignore[misc]
    schemas: dict[tuple[str, str], dict] = {}
    for name in SOURCES:
        for path, text in read_files(name).items():
            if not path.endswith(".yaml"):
                continue
            for crd in yaml.load_all(text, Loader=ManifestLoader):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for version in crd["spec"]["versions"]:
                    if version.get("served", True):
                        schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    cached.write_text(json.dumps({f"{api} {kind}": schema for (api, kind), schema in schemas.items()}))
    return schemas
