"""The live acceptance suite: the user's verification plan against a running lab.

    ACCEPTANCE_INVENTORY=inventories/lab.py .venv/bin/pytest tests/acceptance

It reads that inventory's settings and its admin kubeconfig (<state_dir>/kubeconfig). Without
ACCEPTANCE_INVENTORY every test here is skipped with that reason (CI has no live cluster; the checks'
Kubernetes logic runs there against a real API server instead: tests/kube/test_acceptance_checks.py).
At the end it writes reports/acceptance/report.md with PNG plots (tests/acceptance/report.py).
"""

from __future__ import annotations

import os

import pytest

from tests.acceptance.checks import Results
from tests.conftest import REPO, load_inventory

RESULTS = Results()


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/acceptance/" in str(item.fspath):
            item.add_marker(pytest.mark.acceptance)


@pytest.fixture(scope="session")
def live():
    """(settings, cluster) of the live lab named by ACCEPTANCE_INVENTORY."""
    inventory = os.environ.get("ACCEPTANCE_INVENTORY")
    if not inventory:
        pytest.skip("no live cluster configured: set ACCEPTANCE_INVENTORY=inventories/lab.py (after a full deploy) "
                    "to run the verification plan against it")
    from tasks.kube_client import connect
    from tasks.settings import load_settings
    from tasks.state import LocalState

    settings = load_settings(load_inventory(REPO / inventory), inventory)
    yield settings, connect(LocalState(settings.state_path).kubeconfig)
    from tests.acceptance.report import write_report

    report = write_report(RESULTS.as_dict("Verification report", f"live lab ({inventory})"),
                          REPO / "reports" / "acceptance")
    print(f"\nacceptance report: {report}")


@pytest.fixture
def results():
    return RESULTS
