"""Follow-up actions (a service restart, a reload) that must run when earlier operations changed something,
also in a later run when this one was cut off between the change and the follow-up.

pyinfra's `op.will_change` would answer at planning time by running each operation's checks an extra time
(every stat and checksum twice per run); `op.did_change` answers at run time for free, but forgets a change
whose follow-up never ran. So a change also leaves a marker on the host, the follow-up runs while the marker
exists, and removes it once done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyinfra.facts.files import FindFiles
from pyinfra.operations import server, systemd

from tasks.facts import snapshot

PENDING_DIR = "/var/lib/gitops-lab/pending"


def needed(key: str, changed: list[Any]) -> Callable[[], bool]:
    """Plans the marker for `key` and returns the run-time condition of its follow-up: any of `changed` (None
    for a step that was not needed) changed something, or an earlier run left the marker."""
    marker = f"{PENDING_DIR}/{key}"
    # One listing per host and run, however many follow-ups ask.
    pending = marker in (snapshot(FindFiles, path=PENDING_DIR) or [])
    operations = [op for op in changed if op is not None]

    def changed_now() -> bool:
        return any(op.did_change() for op in operations)

    if operations:
        server.shell(
            name=f"Remember: {key} is due", commands=[f"mkdir -p {PENDING_DIR}", f"touch {marker}"], _if=changed_now
        )
    return lambda: pending or changed_now()


def done(key: str, follow_up: Any) -> None:
    """Removes the marker once the follow-up operation ran."""
    server.shell(name=f"{key}: done", commands=[f"rm -f {PENDING_DIR}/{key}"], _if=follow_up.did_change)


def restart(service: str, changed: list[Any], why: str, daemon_reload: bool = False) -> None:
    """Restart `service` (start it, if it is down) when any of `changed` changed something, now or in a run
    cut off before its restart."""
    key = f"{service}-restart"
    restarted = systemd.service(
        name=f"{service} restarted ({why})",
        service=service,
        running=True,
        restarted=True,
        daemon_reload=daemon_reload,
        _if=needed(key, changed),
    )
    done(key, restarted)
