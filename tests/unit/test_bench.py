"""tools/bench.py: how a deploy's output is cut into segments and what counts as an apt refresh."""

from __future__ import annotations

from tools import bench


def test_segments_follow_pyinfra_progress_and_the_phase_barriers():
    lines = [(1.0, "--> Loading config..."), (2.0, "--> Preparing operation files..."),
             (5.0, "--> Beginning operation run..."),
             (6.0, "--> Starting operation: phases._barrier (phase 0: foundation)"),
             (8.0, "--> Starting operation: phases._barrier (phase 1: platform)"),
             (9.0, "--> Starting operation: Post-bootstrap: CNI, nodes Ready"),
             (12.0, "--> Starting operation: phases._barrier (phases 3-4: Argo CD owns the rest)")]
    assert bench.segments(lines, started=0.0, ended=13.0) == {
        "start-up (Python, inventory, settings)": 2.0, "planning (facts, operation order)": 3.0,
        "phase 0: foundation": 1.0, "phase 1: platform": 2.0, "phases 3-4: Argo CD owns the rest": 4.0,
        "summary": 1.0}


def test_apt_refreshes_are_recognised_in_what_pyinfra_runs():
    refreshes = ["apt-get update", "sh -c 'DEBIAN_FRONTEND=noninteractive apt-get update'",
                 "apt-get update -o Dir::Etc::sourcelist=sources.list.d/gitlab.list -o Dir::Etc::sourceparts=-",
                 "export LANG=C; apt-get -q update"]
    others = ["apt-get install -y chrony", "dpkg -l", "apt-mark showhold", "echo update-alternatives"]
    assert all(bench.APT_REFRESH.search(c) for c in refreshes)
    assert not any(bench.APT_REFRESH.search(c) for c in others)


def test_reports_compare_side_by_side_with_the_rerun_s_growth():
    def report(workers, rerun, commands, cpu=None):
        hosts = [f"k8s-worker{i}" for i in range(1, workers + 1)]
        return {"workers": workers, "lab_up_seconds": 10.0 + workers, "runs": [
            {"label": "first deploy", "seconds": 100.0 * workers, "returncode": 0,
             "segments": {"planning (facts, operation order)": 3.0}, "commands": dict.fromkeys(hosts, 90),
             "apt_refreshes": dict.fromkeys(hosts, 1)},
            {"label": "no-op rerun", "seconds": rerun, "returncode": 0, "segments": {},
             "commands": dict.fromkeys(hosts, commands), "apt_refreshes": dict.fromkeys(hosts, 0),
             **({"controller_cpu_seconds": cpu} if cpu is not None else {})}]}

    table = bench.compare([report(8, 12.0, 40, cpu=9.5), report(2, 8.0, 30)]).splitlines()
    assert table[0] == "| | 2 workers | 8 workers |"
    assert "| no-op rerun | 8.0 s | 12.0 s |" in table
    assert "| no-op rerun vs 2 workers | 1.00x | 1.50x |" in table
    assert "| first deploy: planning (facts, operation order) | 3.0 s | 3.0 s |" in table
    assert "| commands per host, rerun (max) | 30 | 40 |" in table
    assert "| no-op rerun: CPU of pyinfra here | - | 9.5 s |" in table  # reports from before it was measured
    assert "| apt refreshes per host, first (max) | 1 | 1 |" in table
