"""`python3 -m tools.bench [--workers N] [--keep] | --compare REPORT...`: the deploy's benchmark on fresh lab hosts.

Boots the lab with N workers, runs the deploy (first converge) and again (the no-op rerun), and reports for
each run: its wall time split into planning, each phase and the post-bootstrap step, and what every host ran
over SSH (the lab's root shell logs each command: tools/lab/lab.py, COMMAND_LOG), with the number of apt
index refreshes. Writes reports/bench-<N>-workers.json and prints a table. Measured, not enforced: the targets
and the latest numbers are in docs/lab.md. Needs the lab's prerequisites (`make mirror images`) and root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.lab.constants import LAB_DIR
from tools.lab.lab import COMMAND_LOG

REPO = Path(__file__).resolve().parent.parent
REPORTS = REPO / "reports"
PYINFRA = str(Path(sys.executable).with_name("pyinfra"))
# pyinfra's progress lines that start each segment of a run (the phase barriers are deploy.py's).
PLANNING = re.compile(r"--> Preparing operation files")
EXECUTION = re.compile(r"Beginning operation run")
PHASE = re.compile(r"Starting operation: .*_barrier \((?P<phase>[^)]+)\)")
POST_BOOTSTRAP = re.compile(r"Starting operation: .*Post-bootstrap")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
APT_REFRESH = re.compile(r"\bapt-get (-\S+ )*update\b")


@dataclass
class DeployRun:
    label: str
    seconds: float
    returncode: int
    segments: dict[str, float] = field(default_factory=dict)
    commands: dict[str, int] = field(default_factory=dict)
    apt_refreshes: dict[str, int] = field(default_factory=dict)
    # CPU seconds of pyinfra's own process and what it ran here (helm, kubeseal): set against the wall time,
    # whether a run waits on the hosts or on this one process (gevent: one core) driving every SSH session.
    controller_cpu_seconds: float | None = None


def segments(lines: list[tuple[float, str]], started: float, ended: float) -> dict[str, float]:
    """Seconds per segment of a run, each named by the progress mark that ends it: start-up (Python, the
    inventory, settings) until planning starts; planning (facts, operation order) until execution starts;
    then each phase until deploy.py's barrier after it (the phases 3-4 segment is the post-bootstrap step);
    the summary last."""
    durations: dict[str, float] = {}
    previous = started

    def close(name: str, at: float) -> None:
        nonlocal previous
        durations[name] = round(durations.get(name, 0.0) + at - previous, 2)
        previous = at

    for at, line in lines:
        phase = PHASE.search(line)
        if PLANNING.search(line):
            close("start-up (Python, inventory, settings)", at)
        elif EXECUTION.search(line):
            close("planning (facts, operation order)", at)
        elif phase:
            close(phase.group("phase"), at)
    close("summary", ended)
    return durations


def host_commands(host: str) -> list[str]:
    log = LAB_DIR / "hosts" / host / "merged" / COMMAND_LOG.lstrip("/")
    if not log.exists():
        return []
    return [line.split("\t", 1)[-1] for line in log.read_text(errors="replace").splitlines() if line]


def lab_hosts() -> list[str]:
    return sorted(p.name for p in (LAB_DIR / "hosts").iterdir() if p.is_dir()) if (LAB_DIR / "hosts").exists() else []


def run_deploy(label: str, log_to: Path, *extra: str, json_output: bool = False) -> tuple[DeployRun, str, str]:
    """One `pyinfra -y inventories/sandbox.py deploy.py [extra]`, its progress kept with a timestamp per line.
    Returns (the run, pyinfra's stdout (its JSON results with json_output), the progress log)."""
    before = {host: len(host_commands(host)) for host in lab_hosts()}
    lines: list[tuple[float, str]] = []
    stdout: list[str] = []
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    command = [PYINFRA, "-y", *(["--json"] if json_output else []), "inventories/sandbox.py", "deploy.py", *extra]
    with log_to.open("w") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if json_output else subprocess.STDOUT,
            text=True,
        )
        results = proc.stdout
        progress = proc.stderr if json_output else results  # with --json, progress on stderr and results on stdout
        assert progress is not None and results is not None
        reader = None
        if json_output:  # the JSON, read beside the progress so neither pipe fills up
            reader = threading.Thread(target=lambda: stdout.append(results.read()), daemon=True)
            reader.start()
        for line in progress:
            at = time.monotonic()
            line = ANSI.sub("", line)
            lines.append((at, line))
            log.write(f"{at - started:8.2f} {line}")
            if PHASE.search(line) or POST_BOOTSTRAP.search(line) or EXECUTION.search(line):
                print(f"  {label}: {at - started:6.1f}s {line.strip()[:100]}", flush=True)
        returncode = proc.wait()
        if reader is not None:
            reader.join()
    ended = time.monotonic()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime
    run = DeployRun(
        label,
        round(ended - started, 2),
        returncode,
        segments(lines, started, ended),
        controller_cpu_seconds=round(cpu, 1),
    )
    for host in lab_hosts():
        ran = host_commands(host)[before.get(host, 0) :]
        run.commands[host] = len(ran)
        run.apt_refreshes[host] = sum(1 for command in ran if APT_REFRESH.search(command))
    return run, "".join(stdout), "".join(line for _, line in lines)


def write_report(workers: int, lab_up_s: float, runs: list[DeployRun]) -> Path:
    out = REPORTS / f"bench-{workers}-workers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"workers": workers, "lab_up_seconds": lab_up_s, "runs": [asdict(r) for r in runs]}, indent=2) + "\n"
    )
    return out


def lab(*args: str, workers: int) -> None:
    env = {**os.environ, "LAB_WORKERS": str(workers)}
    subprocess.run([sys.executable, "-m", "tools.lab", *args], cwd=REPO, env=env, check=True)


def table(runs: list[DeployRun]) -> str:
    rows = [f"{'':44} " + " ".join(f"{run.label:>14}" for run in runs)]
    names = list(dict.fromkeys(name for run in runs for name in run.segments))
    for name in names:
        rows.append(f"{name:44} " + " ".join(f"{run.segments.get(name, 0.0):13.1f}s" for run in runs))
    rows.append(f"{'total':44} " + " ".join(f"{run.seconds:13.1f}s" for run in runs))
    rows.append(
        f"{'CPU of pyinfra here (and its helpers)':44} "
        + " ".join(f"{run.controller_cpu_seconds or 0.0:13.1f}s" for run in runs)
    )
    for host in sorted({h for run in runs for h in run.commands}):
        cells = " ".join(f"{run.commands.get(host, 0):>8} ({run.apt_refreshes.get(host, 0)} apt)" for run in runs)
        rows.append(f"{'commands on ' + host:44} {cells}")
    return "\n".join(rows)


def compare(reports: list[dict]) -> str:
    """A Markdown table of benchmark reports (reports/bench-N-workers.json) side by side, by worker count: wall
    times, the no-op rerun's growth over the smallest lab, and what each host ran."""
    reports = sorted(reports, key=lambda r: r["workers"])

    def run(report: dict, label: str) -> dict:
        return next(r for r in report["runs"] if r["label"] == label)

    base = run(reports[0], "no-op rerun")["seconds"]
    header = "| | " + " | ".join(f"{r['workers']} workers" for r in reports) + " |"
    rows = [header, "|---" * (len(reports) + 1) + "|"]

    def row(name: str, cell) -> None:
        rows.append(f"| {name} | " + " | ".join(cell(r) for r in reports) + " |")

    row("lab up", lambda r: f"{r['lab_up_seconds']:.0f} s")
    row("first deploy", lambda r: f"{run(r, 'first deploy')['seconds']:.0f} s")
    for segment in run(reports[0], "first deploy")["segments"]:
        row(f"first deploy: {segment}", lambda r, s=segment: f"{run(r, 'first deploy')['segments'].get(s, 0):.1f} s")
    row("no-op rerun", lambda r: f"{run(r, 'no-op rerun')['seconds']:.1f} s")
    row(f"no-op rerun vs {reports[0]['workers']} workers", lambda r: f"{run(r, 'no-op rerun')['seconds'] / base:.2f}x")
    row(
        "no-op rerun: CPU of pyinfra here",
        lambda r: f"{cpu:.1f} s" if (cpu := run(r, "no-op rerun").get("controller_cpu_seconds")) is not None else "-",
    )
    row("commands per host, rerun (max)", lambda r: str(max(run(r, "no-op rerun")["commands"].values())))
    row("apt refreshes per host, first (max)", lambda r: str(max(run(r, "first deploy")["apt_refreshes"].values())))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tools.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="lab workers (1-16; default 2)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="REPORT",
        help="print earlier reports side by side (Markdown), run nothing",
    )
    args = parser.parse_args(argv)
    if args.compare:
        print(compare([json.loads(path.read_text()) for path in args.compare]))
        return 0
    REPORTS.mkdir(exist_ok=True)
    os.environ["LAB_WORKERS"] = str(args.workers)  # the sandbox inventory reads it
    lab("down", workers=args.workers)
    started = time.monotonic()
    lab("up", workers=args.workers)
    lab_up = round(time.monotonic() - started, 1)
    runs: list[DeployRun] = []
    try:
        for label in ("first deploy", "no-op rerun"):
            print(f"--- {label} ({args.workers} workers)", flush=True)
            log = REPORTS / f"bench-{args.workers}-workers-{label.replace(' ', '-')}.log"
            run, _, _ = run_deploy(label, log)
            runs.append(run)
            if run.returncode != 0:
                print(f"{label} failed (exit {run.returncode}): see {log}", file=sys.stderr)
                return 1
    finally:
        if not args.keep:
            lab("down", workers=args.workers)
    out = write_report(args.workers, lab_up, runs)
    print(f"\nlab up: {lab_up}s ({args.workers} workers)\n{table(runs)}\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
