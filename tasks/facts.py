"""Small pyinfra facts this codebase needs and pyinfra does not ship."""

from __future__ import annotations

from typing import Any

from gevent.lock import Semaphore  # type: ignore[import-untyped]  # pyinfra plans hosts in gevent greenlets
from pyinfra.api import FactBase, QuoteString, StringCommand
from pyinfra.context import ContextObject, ctx_host


class ContainerType(FactBase[str]):
    """The container technology the host runs in ('systemd-nspawn', 'lxc', 'docker', ...), or 'none'."""

    def command(self) -> str:
        return "systemd-detect-virt --container 2>/dev/null || true"

    def process(self, output: Any) -> str:
        lines = [line.strip() for line in output if line.strip()]
        return lines[0] if lines else "none"


class ActiveSwap(FactBase[list]):
    """Active swap devices and files (from /proc/swaps)."""

    def command(self) -> str:
        return "tail -n +2 /proc/swaps"

    def process(self, output: Any) -> list[str]:
        return [line.split()[0] for line in output if line.strip()]


class FreeDiskGiB(FactBase[float]):
    """Free space for root on the filesystem holding `path`, in GiB.

    Uses df on the path itself: the lab hosts' root is an overlay, which some tools skip.
    """

    def command(self, path: str = "/") -> StringCommand:
        return StringCommand("df", "-Pk", QuoteString(path), "|", "tail", "-n", "1")

    def process(self, output: Any) -> float:
        fields = list(output)[0].split()
        return int(fields[3]) / 2**20


class Ipv4Interfaces(FactBase[list]):
    """IPv4 addresses with their interface, prefix length and whether DHCP assigned them ('dynamic')."""

    def command(self) -> str:
        return "ip -o -4 addr show"

    def process(self, output: Any) -> list[dict[str, Any]]:
        result = []
        for line in output:
            fields = line.split()
            if "inet" not in fields:
                continue
            address, _, prefix = fields[fields.index("inet") + 1].partition("/")
            result.append(
                {
                    "interface": fields[1].rstrip(":"),
                    "address": address,
                    "prefix": int(prefix or 32),
                    "dynamic": "dynamic" in fields,
                }
            )
        return result


class ShellChecks(FactBase[dict]):
    """Runs named shell tests on the host; returns {name: True/False} by exit status.

    Used for capabilities that have no file of their own, e.g. a kernel feature that is built in
    (so /proc/modules does not list it) or a sysctl that a container may not write.
    """

    def command(self, checks: dict[str, str]) -> str:
        parts = [f"if {test}; then echo '{name} yes'; else echo '{name} no'; fi" for name, test in checks.items()]
        return "; ".join(parts) if parts else "true"

    def process(self, output: Any) -> dict[str, bool]:
        result = {}
        for line in output:
            name, _, answer = line.rpartition(" ")
            if name:
                result[name] = answer == "yes"
        return result


def snapshot(fact: type[FactBase], target: Any = None, **kwargs: Any) -> Any:
    """A fact as it was when this run began planning, read once per host and run however often the deploy's
    own code asks (pyinfra reads a fact anew on every call: right inside operations, which run after earlier
    changes, but a repeated remote command at planning time, where nothing has changed yet).

    Kept on the host object, which lives for one run. pyinfra plans every host at once (one greenlet each):
    the first to ask reads the fact and the others wait for its answer, so a fact of the control plane that
    every worker asks for is one remote command, not one SSH session per worker at the same moment (16
    workers overran sshd's MaxSessions of 10 on the control plane's connection)."""
    # The host itself, not pyinfra's proxy (which stands for whichever host is current).
    if target is None:
        target = ctx_host.get()
    elif isinstance(target, ContextObject):
        target = target._get_module()
    cache: dict[tuple, Any] = target.__dict__.setdefault("_gitops_lab_fact_snapshots", {})
    locks: dict[tuple, Semaphore] = target.__dict__.setdefault("_gitops_lab_fact_locks", {})
    key = (fact.__name__, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    with locks.setdefault(key, Semaphore()):
        if key not in cache:
            cache[key] = target.get_fact(fact, **kwargs)
    return cache[key]
