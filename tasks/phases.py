"""Phase ordering and phase messages for deploy.py.

pyinfra 3 does not run operations in file order across host groups: it orders them by a graph built from
each host's own list of operations. An operation that every host calls from the same line is a shared
node of that graph, so everything before it (on any host) runs before everything after it (on any host).
`barrier` is that operation; deploy.py calls it between phases.
"""

from __future__ import annotations

from typing import Any, Callable

from pyinfra import host, logger
from pyinfra.api import operation
from pyinfra.context import ctx_state


@operation(is_idempotent=True)
def barrier(phase: str):
    """Every host finishes the operations above before any host starts the ones below. Changes nothing."""
    host.noop(f"{phase}: every host is ready")
    return
    yield  # an operation is a generator, even one that yields no command


def run_scoped(name: str, factory: Callable[[], Any]) -> Any:
    """A value shared by every host's pass through deploy.py in this run (kept on the run's State): what one
    host's operations leave for another's, or what must happen once per run."""
    current = ctx_state.get()
    attribute = f"_gitops_lab_{name}"
    if not hasattr(current, attribute):
        setattr(current, attribute, factory())
    return getattr(current, attribute)


def announce_once(key: str, message: str) -> None:
    """Log a message once per run, although deploy.py runs once per host."""
    said = run_scoped("said", set)
    if key not in said:
        said.add(key)
        logger.warning(message)
