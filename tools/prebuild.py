"""Build everything the lab layers need, ahead of them: the artifact mirror, the lab's images and the Debian
base images of both releases the tests boot.

CI (`.ci/run`) starts this in the background before `make test`, so the builds (most of a fresh machine's
time) overlap the test layers that need no lab, which leave one of the two CPUs idle. Every build takes its
lock (tools/buildlock.py): a test that needs something still being built waits for it and then reads it from
the cache, so nothing is built twice. A failure here is only printed: the test that needs the thing builds it
again in the foreground and reports the error where it belongs.

    PREBUILD_REPORT=reports/prebuild.json python -m tools.prebuild
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# The images step loads the sandbox inventory through pyinfra's CLI package, which patches the standard
# library for gevent on import: import it before anything imports ssl, as the pyinfra command does.
import pyinfra_cli  # noqa: F401

# Debian releases the tests boot lab hosts on: the lab's default and the one tests/releases checks.
RELEASES = ("trixie", "bookworm")


def _mirror() -> None:
    from tools.lab.constants import MIRROR_DIR
    from tools.mirror import build_mirror

    build_mirror(MIRROR_DIR)


def _images() -> None:
    from tools import images

    images.build_all(images.lab_catalog())


def _base_images() -> None:
    from tools.lab.lab import base_archive

    for release in RELEASES:
        base_archive(release)


# In the order the test layers first need them: the mirror (tests/mirror, then Kubernetes for tests/kube),
# the images (tests/lab). The Debian base images (`lab up`) are mostly downloads, so they are built alongside,
# in a thread of their own, instead of after the compiling.
STEPS: dict[str, Callable[[], None]] = {
    "artifact mirror": _mirror,
    "lab images": _images,
}
ALONGSIDE: dict[str, Callable[[], None]] = {"Debian base images": _base_images}


def _run_step(label: str, step: Callable[[], None], failed: list[str], done: dict[str, float]) -> None:
    started = time.monotonic()
    print(f"prebuild: {label} ...", flush=True)
    try:
        step()
    except Exception:  # reported here; the test that needs it builds it again and fails there
        traceback.print_exc()
        failed.append(label)
        print(f"prebuild: {label} FAILED after {time.monotonic() - started:.0f}s", flush=True)
        return
    done[f"{label} (all of it)"] = time.monotonic() - started
    print(f"prebuild: {label} done in {done[f'{label} (all of it)']:.0f}s", flush=True)


def main() -> int:
    failed: list[str] = []
    done: dict[str, float] = {}
    alongside = [
        threading.Thread(target=_run_step, args=(label, step, failed, done), daemon=True)
        for label, step in ALONGSIDE.items()
    ]
    for thread in alongside:
        thread.start()
    for label, step in STEPS.items():
        _run_step(label, step, failed, done)
    for thread in alongside:
        thread.join()
    from tools import images, mirror
    from tools.gobuild import BUILD_TIMES

    times = {**BUILD_TIMES, **mirror.TIMES, **images.TIMES, **done}
    for what, seconds in times.items():
        print(f"prebuild: {what}: {seconds:.0f}s")
    report = os.environ.get("PREBUILD_REPORT")
    if report:  # the tests' timings section shows these (tests/conftest.py)
        Path(report).write_text(json.dumps({"times": times, "failed": failed}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
