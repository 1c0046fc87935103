#!/usr/bin/env python3
"""CI job `bump:dev`: point the dev overlay of gitops-repo at the images this pipeline built.

    python3 ci/bump.py --tag "$CI_COMMIT_SHA" [--services frontend,cartservice | --services-from built/]

Environment: GITOPS_REPO_URL, GITOPS_TOKEN (masked CI variable), GITOPS_BRANCH (default main),
BUMP_SERVICES (optional, overrides the list: a manual bump from GitLab's "Run pipeline" form),
CI_REGISTRY_IMAGE (images are $CI_REGISTRY_IMAGE/<service>), CI_PIPELINE_URL (named in the commit).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from gitops_git import change, main_wrapper
from kustomize_images import get_images, set_image

OVERLAY = "apps/online-boutique/overlays/{environment}/kustomization.yaml"


def services_from(args: argparse.Namespace) -> list[str]:
    """--services, else $BUMP_SERVICES (a manual run from GitLab's UI), else the build jobs' artifacts."""
    if not args.services and os.environ.get("BUMP_SERVICES"):
        args.services = os.environ["BUMP_SERVICES"]
    if args.services:
        return sorted({s.strip() for s in args.services.split(",") if s.strip()})
    folder = Path(args.services_from)
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def bump(repo_dir: Path, environment: str, services: list[str], registry_image: str, tag: str) -> list[str]:
    overlay = repo_dir / OVERLAY.format(environment=environment)
    if not overlay.exists():
        raise FileNotFoundError(f"{OVERLAY.format(environment=environment)} is not in gitops-repo")
    text = overlay.read_text()
    current = get_images(text)
    changed = []
    for service in services:
        wanted = {"newName": f"{registry_image}/{service}", "newTag": tag}
        if current.get(service, {}).get("newName") == wanted["newName"] and current[service].get("newTag") == tag:
            continue
        text = set_image(text, service, wanted["newName"], tag)
        changed.append(service)
    overlay.write_text(text)
    return changed


def run() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--environment", default="dev")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--services")
    group.add_argument("--services-from")
    args = parser.parse_args()
    services = services_from(args)
    if not services:
        print("no service was built in this pipeline: nothing to bump")
        return 0
    registry_image = os.environ["CI_REGISTRY_IMAGE"]
    pipeline = os.environ.get("CI_PIPELINE_URL", "a local run")

    def message(changed: list[str]) -> str:
        return (f"[skip ci] bump {', '.join(changed)} to {args.tag[:12]} in {args.environment}\n\n"
                f"images: {registry_image}/<service>:{args.tag}\nservices: {', '.join(changed)}\n"
                f"pipeline: {pipeline}\n")

    change(os.environ["GITOPS_REPO_URL"], os.environ.get("GITOPS_TOKEN", ""), os.environ.get("GITOPS_BRANCH", "main"),
           lambda d: bump(d, args.environment, services, registry_image, args.tag), message)
    return 0


if __name__ == "__main__":
    main_wrapper(run)
