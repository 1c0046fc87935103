#!/usr/bin/env python3
"""CI job `promote:prod` (manual): copy the dev overlay's image tags of chosen services to prod.

    python3 ci/promote.py --services all|frontend,cartservice

Environment: GITOPS_REPO_URL, GITOPS_TOKEN, GITOPS_BRANCH (default main), CI_PIPELINE_URL.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bump import OVERLAY
from gitops_git import change, main_wrapper
from kustomize_images import get_images, set_image


def promote(repo_dir: Path, services: str) -> list[str]:
    dev_path, prod_path = (repo_dir / OVERLAY.format(environment=e) for e in ("dev", "prod"))
    for path in (dev_path, prod_path):
        if not path.exists():
            raise FileNotFoundError(f"{path.relative_to(repo_dir)} is not in gitops-repo")
    dev, prod_text = get_images(dev_path.read_text()), prod_path.read_text()
    prod = get_images(prod_text)
    wanted = sorted(prod) if services == "all" else sorted(s.strip() for s in services.split(",") if s.strip())
    unknown = [s for s in wanted if s not in dev]
    if unknown:
        raise ValueError(f"not in the dev overlay: {', '.join(unknown)}")
    changed = []
    for service in wanted:
        if service not in prod and services == "all":
            continue  # dev-only services (the load generator) stay out of prod
        if prod.get(service) == dev[service]:
            continue
        prod_text = set_image(prod_text, service, dev[service]["newName"], dev[service]["newTag"])
        changed.append(f"{service}={dev[service]['newTag'][:12]}")
    prod_path.write_text(prod_text)
    return changed


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", default="all")
    args = parser.parse_args()
    pipeline = os.environ.get("CI_PIPELINE_URL", "a local run")
    change(os.environ["GITOPS_REPO_URL"], os.environ.get("GITOPS_TOKEN", ""), os.environ.get("GITOPS_BRANCH", "main"),
           lambda d: promote(d, args.services),
           lambda changed: f"[skip ci] promote {', '.join(changed)} from dev to prod\n\npipeline: {pipeline}\n")
    return 0


if __name__ == "__main__":
    main_wrapper(run)
