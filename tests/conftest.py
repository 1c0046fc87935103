"""Shared test helpers: paths, loading inventories the way the pyinfra CLI does, the lab switch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYINFRA = str(Path(sys.executable).with_name("pyinfra"))


def load_inventory(path: str | Path, env: dict[str, str] | None = None):
    """An Inventory built by pyinfra's own CLI loader (inventory file + group_data), without connecting."""
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    old = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with ctx_state.use(State()):
            return make_inventory(str(path), cwd=str(REPO))
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def sandbox_settings():
    from tasks.settings import load_settings

    return load_settings(load_inventory(REPO / "inventories" / "sandbox.py"))
