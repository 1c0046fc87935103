"""Ending the processes a test started (only those: by their own process group, never by name)."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(proc: subprocess.Popen, wait_s: float = 15) -> None:
    """SIGTERM to the process group of `proc` (started with start_new_session=True), SIGKILL if it is still
    there after `wait_s`."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
