"""tools/buildlock.py: a second process waits for a build in progress and then finds it done; a wait past its
deadline fails naming what it waited for."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tools import buildlock

HOLDER = """
import sys, time
from pathlib import Path
from tools import buildlock
buildlock.CACHE = Path(sys.argv[1])
with buildlock.build_lock("thing"):
    print("holding", flush=True)
    time.sleep(float(sys.argv[3]))
    Path(sys.argv[2]).write_text("built")
"""


def hold_lock(tmp_path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "cache"), str(tmp_path / "built"), str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
    return holder


def test_a_second_process_waits_for_the_build_and_then_finds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(buildlock, "CACHE", tmp_path / "cache")
    holder = hold_lock(tmp_path, 1.5)
    try:
        started = time.monotonic()
        with buildlock.build_lock("thing"):
            waited = time.monotonic() - started
            assert (tmp_path / "built").read_text() == "built"
        assert waited > 0.5, f"took the lock after {waited:.2f}s while another process held it"
    finally:
        holder.wait(timeout=30)
    # another name is not held up by it
    with buildlock.build_lock("other"):
        pass


def test_a_wait_past_its_deadline_names_what_it_waited_for(tmp_path, monkeypatch):
    monkeypatch.setattr(buildlock, "CACHE", tmp_path / "cache")
    holder = hold_lock(tmp_path, 30)
    try:
        with pytest.raises(buildlock.BuildLockTimeout, match="waited 1s for the build of thing"):
            with buildlock.build_lock("thing", deadline_s=1.0):
                pass
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_write_atomically_replaces_the_whole_file(tmp_path):
    target = tmp_path / "lock.json"
    target.write_text("old")
    buildlock.write_atomically(target, "new")
    buildlock.write_atomically(tmp_path / "blob", b"\x00\x01")
    assert target.read_text() == "new" and (tmp_path / "blob").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob", "lock.json"], "a temporary file was left behind"
