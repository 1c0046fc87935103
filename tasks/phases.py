"""Phase ordering, phase messages and the stage decorator for deploy.py and the task modules.

pyinfra 3 does not run operations in file order across host groups: it orders them by a graph built from
each host's own list of operations. An operation that every host calls from the same line is a shared
node of that graph, so everything before it (on any host) runs before everything after it (on any host).
`barrier` is that operation; deploy.py calls it between phases.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, ParamSpec, TypeVar, cast

from pyinfra import host, logger
from pyinfra.api import deploy, operation
from pyinfra.context import ctx_state

P = ParamSpec("P")
R = TypeVar("R")


def stage(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """pyinfra's `@deploy(name)`: the operations inside are grouped under `name` in pyinfra's output. Typed as
    the function it wraps (pyinfra annotates every deploy as taking its global arguments first and returning
    an operation, which would make positional arguments and return values type errors)."""

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        return cast(Callable[P, R], deploy(name)(func))

    return decorator


def _barrier(phase: str) -> Generator[str, None, None]:
    """Every host finishes the operations above before any host starts the ones below. Changes nothing."""
    host.noop(f"{phase}: every host is ready")
    yield from ()  # an operation is a generator, even one that yields no command


# Typed as called: pyinfra annotates an operation's first positional argument as its global `_sudo`.
barrier = cast(Callable[[str], None], operation(is_idempotent=True)(_barrier))


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
