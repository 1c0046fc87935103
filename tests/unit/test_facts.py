"""tasks/facts.py: plan-time fact snapshots."""

from __future__ import annotations

from pyinfra import host as current_host
from pyinfra.api import Config, Inventory, State
from pyinfra.context import ctx_host, ctx_state
from pyinfra.facts.files import File

from tasks.facts import ShellChecks, snapshot


def test_a_snapshot_reads_each_fact_once_per_host_and_arguments(monkeypatch):
    inventory = Inventory((["a", "b"], {}))
    state = State(inventory, Config())
    a, b = inventory.get_host("a"), inventory.get_host("b")
    asked: list[tuple] = []

    def fake_get_fact(self, fact, **kwargs):
        asked.append((self.name, fact.__name__, tuple(sorted(kwargs.items()))))
        return f"{self.name}:{kwargs.get('path')}"

    monkeypatch.setattr(type(a), "get_fact", fake_get_fact)
    with ctx_state.use(state), ctx_host.use(a):
        assert snapshot(File, path="/x") == "a:/x"
        assert snapshot(File, current_host, path="/x") == "a:/x", "pyinfra's proxy means the current host"
        assert snapshot(File, a, path="/x") == "a:/x"
        assert snapshot(File, b, path="/x") == "b:/x"
        assert snapshot(File, path="/y") == "a:/y"
        assert snapshot(ShellChecks, checks={"k": "true"}) == "a:None"
    with ctx_state.use(state), ctx_host.use(b):
        assert snapshot(File, path="/x") == "b:/x"
    assert asked == [("a", "File", (("path", "/x"),)), ("b", "File", (("path", "/x"),)),
                     ("a", "File", (("path", "/y"),)), ("a", "ShellChecks", (("checks", {"k": "true"}),))]


def test_hosts_planned_at_once_read_a_shared_fact_once(monkeypatch):
    """pyinfra plans the hosts in parallel greenlets: sixteen workers asking for one fact of the control plane
    make one remote command (sixteen sessions at once overran sshd's MaxSessions in the 16-worker lab)."""
    import gevent

    inventory = Inventory(([f"worker{i}" for i in range(16)] + ["master"], {}))
    state = State(inventory, Config())
    master = inventory.get_host("master")
    in_flight, most, reads = 0, 0, 0

    def slow_get_fact(self, fact, **kwargs):
        nonlocal in_flight, most, reads
        in_flight += 1
        most = max(most, in_flight)
        gevent.sleep(0.05)  # the SSH round trip, during which the other greenlets run
        in_flight -= 1
        reads += 1
        return True

    monkeypatch.setattr(type(master), "get_fact", slow_get_fact)

    def plan(worker):
        with ctx_state.use(state), ctx_host.use(worker):
            return snapshot(File, master, path="/etc/kubernetes/admin.conf")

    workers = [inventory.get_host(f"worker{i}") for i in range(16)]
    greenlets = [gevent.spawn(plan, worker) for worker in workers]
    gevent.joinall(greenlets, raise_error=True)
    assert [g.value for g in greenlets] == [True] * 16
    assert (reads, most) == (1, 1)
