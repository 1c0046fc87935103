"""testinfra suites against the lab hosts after the deploy (tests/conftest.py's `deployed` fixture)."""

from __future__ import annotations

import pytest
import testinfra

from tests.conftest import sandbox_settings_now
from tools.lab.constants import LAB_DIR

NODES = sandbox_settings_now().nodes


def nodes_with(role: str) -> list:
    return [n for n in NODES if n.has_role(role)]


def node_ids(node) -> str:
    return node.name


@pytest.fixture(scope="session")
def connect(deployed):
    """connect(node) -> a testinfra host over SSH (the lab's key and ssh config)."""
    cache = {}

    def _connect(node):
        if node.name not in cache:
            cache[node.name] = testinfra.get_host(f"ssh://root@{node.address}",
                                                  ssh_config=str(LAB_DIR / "ssh" / "config"))
        return cache[node.name]

    return _connect
