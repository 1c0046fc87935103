"""One build at a time per cached thing, across processes.

CI starts the lab's builds in the background (tools/prebuild.py) while the first test layers run; a test that
needs the same binary, image or base image then waits for that build and finds it in the cache, instead of
building it a second time on the same two CPUs. Standard library only: the lab tool runs without the
virtualenv.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tools.lab.constants import CACHE

# Longer than any single build here (Kubernetes, the largest, takes about 8 minutes on this machine's 2 CPUs).
WAIT_DEADLINE_S = 3600.0


class BuildLockTimeout(RuntimeError):
    pass


@contextlib.contextmanager
def build_lock(name: str, deadline_s: float = WAIT_DEADLINE_S) -> Iterator[None]:
    """Hold the lock of `name` (e.g. "kubernetes", "image-argocd") while the block runs. Whoever waited must
    check the cache again inside the block: the holder has usually just filled it. Not re-entrant: a block must
    not take the lock of the name it holds."""
    folder = CACHE / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.lock"
    with open(path, "w") as handle:
        started = time.monotonic()
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    print(f"waiting for the build of {name}: another process is building it ({path})", file=sys.stderr)
                    announced = True
                if time.monotonic() - started > deadline_s:
                    raise BuildLockTimeout(
                        f"waited {deadline_s:.0f}s for the build of {name} in another process ({path}): "
                        "check for a stuck build (`fuser -v` on that file) and end it"
                    ) from None
                time.sleep(1.0)
        yield  # closing the file releases the lock, also when the process dies


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write `path` so that a reader in another process sees the old content or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if isinstance(data, str):
        tmp.write_text(data)
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)
