"""tools/prebuild.py: every step runs, also after one fails; a failure is reported, not raised; the report
the tests' timings read lists what failed."""

from __future__ import annotations

import json

from tools import prebuild


def test_a_failed_step_is_reported_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    ran = []

    def broken():
        ran.append("broken")
        raise RuntimeError("go build failed")

    monkeypatch.setattr(prebuild, "STEPS", {"first": broken, "second": lambda: ran.append("second")})
    monkeypatch.setattr(prebuild, "ALONGSIDE", {"downloads": lambda: ran.append("downloads")})
    monkeypatch.setenv("PREBUILD_REPORT", str(tmp_path / "prebuild.json"))
    assert prebuild.main() == 1
    assert sorted(ran) == ["broken", "downloads", "second"]
    report = json.loads((tmp_path / "prebuild.json").read_text())
    assert report["failed"] == ["first"]
    assert {"second (all of it)", "downloads (all of it)"} <= set(report["times"])
    out = capsys.readouterr()
    assert "prebuild: first FAILED" in out.out and "go build failed" in out.err
