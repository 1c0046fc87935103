"""The lab tool raises this machine's inotify limits for the lab (its hosts share them) and puts them back."""

from __future__ import annotations

from pathlib import Path

from tasks.foundation import KUBERNETES_SYSCTLS
from tools.lab import lab

INSTANCES = "fs.inotify.max_user_instances"
WATCHES = "fs.inotify.max_user_watches"


def machine(tmp_path: Path, instances: int, watches: int) -> Path:
    root = tmp_path / "proc-sys"
    for key, value in ((INSTANCES, instances), (WATCHES, watches)):
        lab.sysctl_file(key, root).parent.mkdir(parents=True, exist_ok=True)
        lab.sysctl_file(key, root).write_text(f"{value}\n")
    return root


def value(root: Path, key: str) -> int:
    return int(lab.sysctl_file(key, root).read_text())


def test_the_lab_raises_the_limits_to_the_deploy_s_own_values():
    assert lab.INOTIFY_LIMITS == {k: v for k, v in KUBERNETES_SYSCTLS.items() if k.startswith("fs.inotify.")}


def test_up_raises_what_is_lower_and_down_restores_it(tmp_path):
    root, record = machine(tmp_path, 128, 600000), tmp_path / "before.json"
    lab.raise_inotify_limits(root, record)
    assert (value(root, INSTANCES), value(root, WATCHES)) == (8192, 600000)  # a higher value is kept
    lab.raise_inotify_limits(root, record)  # a second `up` must not record the raised value as the original
    lab.restore_inotify_limits(root, record)
    assert (value(root, INSTANCES), value(root, WATCHES)) == (128, 600000)
    assert not record.exists()


def test_down_keeps_a_value_changed_by_someone_else_since_up(tmp_path):
    root, record = machine(tmp_path, 128, 8192), tmp_path / "before.json"
    lab.raise_inotify_limits(root, record)
    lab.sysctl_file(INSTANCES, root).write_text("16384\n")
    lab.sysctl_file(WATCHES, root).write_text("524288\n")  # the lab's value: restored
    lab.restore_inotify_limits(root, record)
    assert (value(root, INSTANCES), value(root, WATCHES)) == (16384, 8192)


def test_nothing_is_recorded_when_the_machine_already_allows_enough(tmp_path):
    root, record = machine(tmp_path, 8192, 524288), tmp_path / "before.json"
    lab.raise_inotify_limits(root, record)
    assert not record.exists()
    lab.restore_inotify_limits(root, record)
    assert (value(root, INSTANCES), value(root, WATCHES)) == (8192, 524288)
