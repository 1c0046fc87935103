"""Jinja2 rendering for everything this codebase writes from templates: host files in `templates/` and the
gitops repository in `files/gitops-repo/`. One environment policy for both: a missing value is an error
(StrictUndefined), never an empty string in a config file."""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Any

import jinja2

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"


@functools.cache
def environment(folder: Path = TEMPLATES) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(template: str, **context: Any) -> str:
    """A file of `templates/`, rendered (a file without Jinja syntax comes back as it is)."""
    return environment().get_template(template).render(**context)


def render_tree(source: Path, dest: Path, context: dict[str, Any]) -> Path:
    """Copy the folder `source` to `dest`: `*.j2` files rendered (the suffix dropped), others copied."""
    if dest.exists():
        shutil.rmtree(dest)
    env = environment(source)
    for path in sorted(source.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(source)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".j2":
            target.with_suffix("").write_text(env.get_template(rel.as_posix()).render(**context))
        else:
            shutil.copyfile(path, target)
    return dest
