"""Phase ordering and phase messages for deploy.py.

pyinfra 3 does not run operations in file order across host groups: it orders them by a graph built from
each host's own list of operations. An operation that every host calls from the same line is a shared
node of that graph, so everything before it (on any host) runs before everything after it (on any host).
`barrier` is that operation; deploy.py calls it between phases.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import operation
from pyinfra.context import ctx_state


@operation(is_idempotent=True)
def barrier(phase: str):
    """Every host finishes the operations above before any host starts the ones below. Changes nothing."""
    host.noop(f"{phase}: every host is ready")
    return
    yield  # an operation is a generator, even one that yields no command


def announce_once(key: str, message: str) -> None:
    """Log a message once per run, although deploy.py runs once per host (remembered on this run's State)."""
    current = ctx_state.get()
    said = getattr(current, "_gitops_lab_said", None)
    if said is None:
        said = set()
        setattr(current, "_gitops_lab_said", said)
    if key not in said:
        said.add(key)
        logger.warning(message)
