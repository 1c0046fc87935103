"""The k6 script and the Locust file, run for a few seconds against the storefront double on loopback:
they walk the whole journey with valid forms, their thresholds hold on a healthy storefront and fail on
one that answers 500s. Bounded: a handful of users for a few seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.load.storefront_double import StorefrontDouble

K6 = Path(sys.executable).with_name("k6")
LOCUST = Path(sys.executable).with_name("locust")
SCRIPTS = REPO / "files" / "loadtest"
JOURNEY = {"index", "setCurrency", "product", "addToCart", "viewCart", "checkout"}


@pytest.fixture
def storefront():
    double = StorefrontDouble()
    yield double
    double.close()


@pytest.fixture
def broken_storefront():
    double = StorefrontDouble(failing=True)
    yield double
    double.close()


def run_k6(url: str, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    summary = tmp_path / "summary.json"
    proc = subprocess.run([str(K6), "run", "--no-usage-report", "--quiet", "-e", f"BASE_URL={url}", "-e", "PEAK_VUS=5",
                           "-e", "RAMP=2s", "-e", "HOLD=4s", "-e", "TAIL=2s", "-e", "THINK_SECONDS=0.05",
                           "-e", f"SUMMARY={summary}", str(SCRIPTS / "storefront.js")],
                          capture_output=True, text=True, timeout=120)
    return proc, json.loads(summary.read_text()) if summary.exists() else {}


def test_k6_walks_the_journey_and_its_thresholds_hold(storefront, tmp_path):
    proc, summary = run_k6(storefront.url, tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert JOURNEY <= storefront.hits.keys() and storefront.bad_requests == []
    assert storefront.hits["product"] > storefront.hits["index"]  # browsing weighs 10, the home page 1
    assert summary["metrics"]["http_reqs"]["values"]["count"] > 50
    assert summary["metrics"]["http_req_duration"]["thresholds"]["p(95)<800"]["ok"] is True
    assert any(storefront.carts.values())  # the session cookie kept each shopper's cart


def test_k6_fails_against_a_storefront_answering_500s(broken_storefront, tmp_path):
    proc, summary = run_k6(broken_storefront.url, tmp_path)
    assert proc.returncode == 99, proc.stdout[-1000:]  # k6's exit code for crossed thresholds
    assert summary["metrics"]["http_req_failed"]["thresholds"]["rate<0.01"]["ok"] is False


def run_locust(url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LOCUST), "-f", str(SCRIPTS / "locustfile.py"), "--headless", "--host", url, "-u", "5",
                           "-r", "5", "-t", "5s", "--csv", str(tmp_path / "run"), "--only-summary"],
                          capture_output=True, text=True, timeout=120,
                          env={"THINK_MIN": "0.05", "THINK_MAX": "0.1", "PATH": "/usr/bin:/bin"})


def test_locust_walks_the_journey_and_its_thresholds_hold(storefront, tmp_path):
    proc = run_locust(storefront.url, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "thresholds held" in proc.stdout + proc.stderr
    assert JOURNEY <= storefront.hits.keys() and storefront.bad_requests == []
    stats = (tmp_path / "run_stats.csv").read_text()
    assert "checkout" in stats and "Aggregated" in stats


def test_locust_fails_against_a_storefront_answering_500s(broken_storefront, tmp_path):
    proc = run_locust(broken_storefront.url, tmp_path)
    assert proc.returncode == 1 and "THRESHOLDS CROSSED" in proc.stdout + proc.stderr
