"""Settings validation: the shipped inventories are valid, and every invalid fixture is refused with its
own one-line message, both by the loader and by the pyinfra CLI before it connects to anything."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from tasks.settings import NO_EXAMPLE, SCHEMA, SHIPPED_DEFAULTS, SettingsError, load_settings
from tests.conftest import PYINFRA, REPO, WITHOUT_MIRROR_LOCK, load_inventory

FIXTURES = REPO / "tests" / "fixtures"
INVALID = sorted((FIXTURES / "invalid").glob("*.yaml"))
FIXTURE_INVENTORY = FIXTURES / "inventory.py"


def expected_message(fixture: Path) -> str:
    return yaml.safe_load(fixture.read_text())["expect"]


class ConnectionCounter:
    """A TCP listener on loopback standing in for every host's SSH port; it counts connection attempts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.count += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener():
    counter = ConnectionCounter()
    yield counter
    counter.close()


def load_fixture(fixture: Path, **changes: dict):
    """load_settings of a fixture, optionally changed (`data`, `host_data`, `artifact_override` merged in)."""
    spec = yaml.safe_load(fixture.read_text()) or {}
    for part, value in changes.items():
        merged = spec.setdefault(part, {})
        for key, item in value.items():
            merged[key] = {**merged.get(key, {}), **item} if isinstance(item, dict) and part != "data" else item
    changed = fixture.parent / f".changed-{fixture.name}" if changes else fixture
    if changes:
        changed.write_text(yaml.safe_dump(spec))
    try:
        return load_settings(load_inventory(FIXTURE_INVENTORY, {"SETTINGS_FIXTURE": str(changed)}),
                             "tests/fixtures/inventory.py")
    finally:
        if changes:
            changed.unlink()


def run_cli(fixture: Path, port: int, *args: str) -> subprocess.CompletedProcess:
    env = {"SETTINGS_FIXTURE": str(fixture), "FIXTURE_SSH_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([PYINFRA, "-y", str(FIXTURE_INVENTORY), "deploy.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_there_is_one_fixture_per_rule_and_each_names_its_message():
    assert len(INVALID) >= 70
    messages = [expected_message(f) for f in INVALID]
    assert all(messages), "every invalid fixture must say which message it expects"
    assert len(set(messages)) == len(messages), "two fixtures expect the same message: one of them tests nothing new"


@pytest.mark.parametrize("inventory", ["lab.py", "sandbox.py"])
def test_shipped_inventories_are_valid(inventory):
    settings = load_settings(load_inventory(REPO / "inventories" / inventory, data=WITHOUT_MIRROR_LOCK))
    assert [n.name for n in settings.with_role("platform")] == ["mini-pc"]
    assert settings.control_plane.name == "k8s-master"
    assert [n.name for n in settings.workers] == ["k8s-worker1", "k8s-worker2"]
    assert settings.node("k8s-worker1").node_labels["node-role.kubernetes.io/worker"] == ""


def test_lab_inventory_uses_the_example_addresses_the_user_edits():
    settings = load_settings(load_inventory(REPO / "inventories" / "lab.py"))
    assert {n.name: str(n.address) for n in settings.nodes} == {
        "mini-pc": "192.168.10.10", "k8s-master": "192.168.10.11",
        "k8s-worker1": "192.168.10.12", "k8s-worker2": "192.168.10.13",
    }
    assert "EXAMPLES" in (REPO / "inventories" / "lab.py").read_text()


def test_any_number_of_workers_is_valid(tmp_path):
    fixture = tmp_path / "five_workers.yaml"
    hosts = [{"name": "mini-pc", "address": "198.51.100.10", "roles": ["platform"]},
             {"name": "k8s-master", "address": "198.51.100.11", "roles": ["control_plane"]}]
    hosts += [{"name": f"k8s-worker{i}", "address": f"198.51.100.{11 + i}", "roles": ["worker"]} for i in range(1, 6)]
    fixture.write_text(yaml.safe_dump({"hosts": hosts}))
    settings = load_settings(load_inventory(FIXTURE_INVENTORY, {"SETTINGS_FIXTURE": str(fixture)}))
    assert len(settings.workers) == 5


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_is_rejected_with_its_message(fixture):
    with pytest.raises(SettingsError) as err:
        load_fixture(fixture)
    message = str(err.value)
    assert expected_message(fixture) in message
    assert "\n" not in message, "the error must be one line"
    assert message.startswith(f"setting {err.value.key}") and ". Fix: " in message


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_cli_rejects_invalid_settings_before_connecting(fixture, listener):
    proc = run_cli(fixture, listener.port)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    error_lines = [line for line in output.splitlines() if "pyinfra error" in line]
    assert len(error_lines) == 1 and expected_message(fixture) in error_lines[0], output
    assert "Traceback" not in output
    assert listener.count == 0, "pyinfra tried to connect although the settings are invalid"


def test_cli_with_valid_settings_does_try_to_connect(listener):
    """The control case: proves the listener would have seen a connection attempt."""
    proc = run_cli(FIXTURES / "valid.yaml", listener.port)
    assert listener.count > 0, proc.stdout + proc.stderr
    assert "setting " not in proc.stderr


def test_lab_inventory_refuses_to_start_until_its_downloads_are_pinned(listener):
    """A fresh clone's group_data has versions and URLs but no sha256s (they could not be fetched where this
    was written): `pyinfra inventories/lab.py deploy.py` stops before connecting, naming the key and the fix.
    Every host is pointed at the test's listener (--data), so a connection attempt would be counted."""
    proc = subprocess.run(
        [PYINFRA, "-y", "--dry", "inventories/lab.py", "deploy.py", "--data", "ssh_hostname=127.0.0.1",
         "--data", f"ssh_port={listener.port}", "--data", "ssh_connect_timeout=2"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    errors = [line for line in output.splitlines() if "pyinfra error" in line]
    assert len(errors) == 1 and "setting artifacts.containerd.sha256" in errors[0], output
    assert "is not pinned in group_data/artifacts.lock.json" in errors[0] and "tools/pin_artifacts.py" in errors[0]
    assert listener.count == 0


def test_the_settings_reference_is_generated_from_the_declarations():
    from tools import settings_reference

    assert (REPO / "docs" / "settings.md").read_text() == settings_reference.render(), \
        "docs/settings.md differs from the code: run python -m tools.settings_reference"
    assert all(f"`{key}`" in settings_reference.render() for key in SCHEMA)


def test_each_setting_is_declared_once_with_a_parser_and_a_description():
    source = (REPO / "tasks" / "settings.py").read_text()
    for key, spec in SCHEMA.items():
        assert source.count(f"    {key}: ") == 1, f"{key} is declared more than once"
        assert spec.doc and callable(spec.parse)


def test_the_shipped_defaults_the_messages_rely_on_are_group_datas():
    import runpy

    defaults = runpy.run_path(str(REPO / "group_data" / "all.py"))
    assert {key: defaults[key] for key in SHIPPED_DEFAULTS} == SHIPPED_DEFAULTS


def apply_example(fixture: Path, err: SettingsError):
    """The fixture with the error's example written where the error points."""
    key = err.key
    if key.startswith("artifacts."):
        _, name, field = key.split(".")
        return load_fixture(fixture, artifact_override={name: {field: err.example}})
    if key.startswith("images."):
        return load_fixture(fixture, image_override={key.split(".", 1)[1]: err.example})
    top, _, entry = key.partition(".")
    if entry and top in SCHEMA:  # one entry of a mapping setting: the fixture's mapping with that entry fixed
        mapping = yaml.safe_load(fixture.read_text()).get("data", {}).get(top, {})
        return load_fixture(fixture, data={top: {**mapping, entry: err.example}})
    if SCHEMA[key].scope == "host":
        return load_fixture(fixture, host_data={err.host: {key: err.example}})
    return load_fixture(fixture, data={key: err.example})


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_every_fix_example_is_accepted_when_applied(fixture):
    """An example in a "Fix:" is a valid value for that key: written where the error says, this error goes
    away (another mistake of the same fixture may remain, but not on that key)."""
    with pytest.raises(SettingsError) as err:
        load_fixture(fixture)
    assert "e.g." not in err.value.fix, "examples go into SettingsError.example, where this test can check them"
    if err.value.example is NO_EXAMPLE:
        return
    try:
        apply_example(fixture, err.value)
    except SettingsError as still:
        assert (still.key, still.host) != (err.value.key, err.value.host), f"the example did not fix it: {still}"




def test_an_unpinned_image_is_reported_with_the_command_that_pins_what_the_inventory_pulls(sandbox_settings):
    """The sandbox replaces Argo CD's Redis (image_overrides): the error names that image's reference (what the
    nodes pull) and the pin tool's command for this inventory, which pins the replacement, not the original."""
    import dataclasses

    from tasks.settings import require_pinned_images

    pinned = {name: {**image, "digest": "sha256:" + "0" * 64} for name, image in sandbox_settings.images.items()}
    redis = {**sandbox_settings.images["argocd-redis"], "digest": ""}
    assert redis["ref"] != redis["upstream"]
    with pytest.raises(SettingsError) as err:
        require_pinned_images(
            dataclasses.replace(sandbox_settings, images={**pinned, "argocd-redis": redis}), "inventories/sandbox.py"
        )
    assert err.value.key == "images.argocd-redis" and redis["ref"] in err.value.problem
    assert "`python3 tools/pin_artifacts.py --images --inventory inventories/sandbox.py`" in err.value.fix
    require_pinned_images(dataclasses.replace(sandbox_settings, images=pinned))  # all pinned: no error


def test_a_retired_ingress_controller_is_announced_and_the_default_is_not(sandbox_settings):
    from dataclasses import replace

    assert sandbox_settings.ingress_controller == "traefik" and sandbox_settings.retired_choices() == []
    notices = replace(sandbox_settings, ingress_controller="ingress-nginx").retired_choices()
    assert len(notices) == 1 and "retired upstream" in notices[0] and 'ingress_controller = "traefik"' in notices[0]


def test_an_unknown_ingress_controller_is_refused_with_a_valid_fix():
    from tasks.settings import SettingsError, _choice, INGRESS_CONTROLLERS

    with pytest.raises(SettingsError) as caught:
        _choice(INGRESS_CONTROLLERS)({"ingress_controller": "nginx"}, "ingress_controller")
    assert "use one of: traefik, ingress-nginx" in str(caught.value)
    assert caught.value.example in INGRESS_CONTROLLERS
