"""The verification report from data recorded in this run: k6 walks the journey against the storefront
double with `--out csv`, its latency becomes per-second percentiles, and the report generator writes the
Markdown page and the PNG plots to reports/acceptance-sample/ (kept as CI's build artifact).

CI has no cluster, so the replicas and CPU series of this sample are a synthetic HPA trace (scale out
under the ramp, back in during the quiet tail), and the report says so in its source line."""

from __future__ import annotations

import subprocess
import time

from tests.acceptance.checks import Results
from tests.acceptance.report import latency_samples_from_k6_csv, write_report
from tests.conftest import REPO
from tests.load.test_loadtests import K6, SCRIPTS, storefront  # noqa: F401 (fixture)

OUT = REPO / "reports" / "acceptance-sample"


def synthetic_hpa_trace(seconds: int) -> list[dict]:
    """1 replica, out to 4 while CPU is above target, back to 1 in the tail (what the live suite asserts)."""
    trace = []
    for t in range(seconds + 1):
        phase = t / max(seconds, 1)
        cpu = 30 + 90 * min(phase / 0.4, 1) if phase < 0.7 else 25
        replicas = 1 if phase < 0.2 else 4 if phase < 0.8 else 1
        trace.append({"t": float(t), "replicas": replicas, "cpu_percent": round(cpu, 1)})
    return trace


def test_report_from_a_recorded_k6_run_has_a_table_and_three_plots(storefront, tmp_path):
    results = Results()
    csv_path = tmp_path / "k6.csv"
    with results.check("k6 journey through the storefront double, thresholds hold") as entry:
        proc = subprocess.run([str(K6), "run", "--no-usage-report", "--quiet", "--out", f"csv={csv_path}",
                               "-e", f"BASE_URL={storefront.url}", "-e", "PEAK_VUS=5", "-e", "RAMP=2s", "-e", "HOLD=3s",
                               "-e", "TAIL=2s", "-e", "THINK_SECONDS=0.05", str(SCRIPTS / "storefront.js")],
                              capture_output=True, text=True, timeout=120)
        entry["detail"] = f"exit {proc.returncode}"
        assert proc.returncode == 0, proc.stderr[-1000:]
    latency = latency_samples_from_k6_csv(csv_path)
    assert len(latency) >= 5 and all(s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] for s in latency)
    hpa = {s["t"]: s for s in synthetic_hpa_trace(int(latency[-1]["t"]))}
    results.samples = [{**hpa.get(s["t"], {}), **s} for s in latency]
    started = time.monotonic()
    report = write_report(results.as_dict(
        "Verification report (CI sample)",
        "CI run: latency recorded from k6 against the storefront double; replicas and CPU are a synthetic HPA "
        "trace (no cluster in CI)"), OUT)
    assert time.monotonic() - started < 60
    text = report.read_text()
    assert "| k6 journey through the storefront double, thresholds hold | passed |" in text
    assert "**1 of 1 checks passed.**" in text and "synthetic HPA trace" in text
    for png in ("replicas.png", "cpu.png", "latency.png"):
        data = (OUT / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
        assert f"]({png})" in text


def test_a_failed_check_and_missing_series_are_reported_as_such(tmp_path):
    report = write_report({"title": "t", "source": "s", "samples": [],
                           "checks": [{"name": "drift repaired", "passed": False, "seconds": 120.0,
                                       "detail": "frontend back on x: not within 120s"}]}, tmp_path)
    text = report.read_text()
    assert "| drift repaired | **failed** | 120.0 s | frontend back on x: not within 120s |" in text
    assert text.count("No samples of this series in this run.") == 3
    assert "Not measured in this run" in text
    assert not list(tmp_path.glob("*.png"))
