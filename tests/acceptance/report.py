#!/usr/bin/env python3
"""The verification report: a Markdown page with one table row per check (passed, failed, took) and PNG
plots of replicas, CPU and latency percentiles over time, written to reports/<name>/.

    .venv/bin/python tests/acceptance/report.py RESULTS.json reports/acceptance

RESULTS.json (written by tests/acceptance while it runs, or by the CI sample):
    {"title": str, "source": str, "workload": str (the plots' subject; the storefront by default),
     "checks": [{"name", "passed", "seconds", "detail"}],
     "samples": [{"t": seconds, "replicas": int|null, "cpu_percent": float|null,
                  "p50_ms": float|null, "p95_ms": float|null, "p99_ms": float|null}],
     "bottleneck": {"service", "cpu_saturation", "p50_ms", "p95_ms", "p99_ms"} | null}
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path


def latency_samples_from_k6_csv(path: Path, bucket_s: float = 1.0) -> list[dict]:
    """Per-bucket p50/p95/p99 of http_req_duration from k6's CSV output (`--out csv=FILE`)."""
    buckets: dict[int, list[float]] = {}
    start = None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row["metric_name"] != "http_req_duration":
                continue
            stamp = float(row["timestamp"])
            start = stamp if start is None else min(start, stamp)
            buckets.setdefault(int(stamp), []).append(float(row["metric_value"]))
    samples = []
    for second in sorted(buckets):
        values = sorted(buckets[second])
        samples.append({"t": (second - (start or second)) / bucket_s, **percentiles(values)})
    return samples


def percentiles(values: list[float]) -> dict[str, float]:
    if len(values) == 1:
        return {"p50_ms": values[0], "p95_ms": values[0], "p99_ms": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}


def _plot(samples: list[dict], keys: list[str], ylabel: str, title: str, out: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: [(s["t"], s[k]) for s in samples if s.get(k) is not None] for k in keys}
    if not any(series.values()):
        return False
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    for key, points in series.items():
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=key, drawstyle="steps-post"
                    if key == "replicas" else "default")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return True


def write_report(results: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = results.get("samples", [])
    workload = results.get("workload", "storefront (frontend)")
    plots = [
        ("replicas.png", ["replicas"], "replicas", f"{workload} replicas"),
        ("cpu.png", ["cpu_percent"], "% of request", f"{workload} CPU, as the HPA sees it"),
        ("latency.png", ["p50_ms", "p95_ms", "p99_ms"], "ms", "storefront latency percentiles"),
    ]
    lines = [f"# {results.get('title', 'Verification report')}", "", f"Source: {results.get('source', 'n/a')}", ""]
    checks = results.get("checks", [])
    passed = sum(1 for c in checks if c["passed"])
    lines += [f"**{passed} of {len(checks)} checks passed.**", "", "| check | result | took | detail |",
              "|---|---|---|---|"]
    for check in checks:
        detail = str(check.get("detail", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {check['name']} | {'passed' if check['passed'] else '**failed**'} | "
                     f"{check['seconds']:.1f} s | {detail} |")
    lines.append("")
    for file_name, keys, ylabel, title in plots:
        if _plot(samples, keys, ylabel, title, out_dir / file_name):
            lines += [f"## {title}", "", f"![{title}]({file_name})", ""]
        else:
            lines += [f"## {title}", "", "No samples of this series in this run.", ""]
    bottleneck = results.get("bottleneck")
    lines += ["## Bottleneck at the peak", ""]
    if bottleneck:
        lines += [f"Highest CPU saturation: **{bottleneck['service']}** at {bottleneck['cpu_saturation']:.0%} of its "
                  f"CPU request; storefront latency at the peak p50 {bottleneck['p50_ms']:.0f} ms, "
                  f"p95 {bottleneck['p95_ms']:.0f} ms, p99 {bottleneck['p99_ms']:.0f} ms.", ""]
    else:
        lines += ["Not measured in this run (it needs Prometheus on a live cluster).", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


if __name__ == "__main__":
    print(write_report(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])))
