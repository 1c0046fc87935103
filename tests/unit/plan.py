"""Plan a @deploy function with faked facts and return what it would do, without any host.

This is the unit layer for task modules: pyinfra's real operations decide what to run from the facts
given here, and the test asserts the resulting operations and commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from unittest import mock

from pyinfra.api import Config, Inventory, State
from pyinfra.api.deploy import add_deploy
from pyinfra.api.host import Host
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_state


@dataclass
class PlannedOp:
    name: str
    commands: list[str]


@dataclass
class Plan:
    ops: list[PlannedOp]
    warnings: list[str]

    def names(self) -> list[str]:
        return [op.name for op in self.ops]

    def changing(self) -> list[PlannedOp]:
        return [op for op in self.ops if op.commands]

    def commands(self) -> list[str]:
        return [c for op in self.ops for c in op.commands]

    def find(self, fragment: str) -> PlannedOp:
        matches = [op for op in self.ops if fragment in op.name]
        assert matches, f"no operation named like {fragment!r}; planned: {self.names()}"
        return matches[0]


def plan(deploy_func: Callable[..., Any], *args: Any, host_name: str = "k8s-worker1",
         facts: dict[str, Any] | None = None, **kwargs: Any) -> Plan:
    """facts: {FactClassName: value or callable(**fact_kwargs)}; a fact not given returns None."""
    facts = facts or {}
    inventory = Inventory(([host_name], {}))
    state = State(inventory, Config())
    host = inventory.get_host(host_name)
    state.activate_host(host)
    asked: list[str] = []

    def fake_get_fact(self: Host, fact_cls: type, *fact_args: Any, **fact_kwargs: Any) -> Any:
        asked.append(fact_cls.__name__)
        value = facts.get(fact_cls.__name__)
        return value(**fact_kwargs) if callable(value) else value

    warnings: list[str] = []
    with mock.patch.object(Host, "get_fact", fake_get_fact), \
            mock.patch("pyinfra.logger.warning", side_effect=lambda msg, *a: warnings.append(str(msg))):
        add_deploy(state, deploy_func, *args, host=host, **kwargs)
        ops = []
        # As a run would: in order, each operation's `_if` conditions evaluated against the operations before
        # it, every command taken to succeed (so `did_change` answers as it would on the host).
        state.is_executing = True
        with ctx_state.use(state), ctx_host.use(host):
            for op_hash in state.get_op_order():
                if op_hash not in state.ops[host]:
                    continue
                data = state.get_op_data_for_host(host, op_hash)
                raw = list(data.command_generator())
                data.operation_meta.set_complete(True, raw, CommandOutput([]))
                commands = [str(getattr(c, "get_masked_value", lambda: c)()) for c in raw]
                name = sorted(state.op_meta[op_hash].names)[0].split(" | ")[-1]
                ops.append(PlannedOp(name, commands))
    return Plan(ops, warnings)
