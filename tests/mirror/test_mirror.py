"""The local artifact mirror: upstream's archive names, paths and layout, checksums that match, binaries that run."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile

import pytest

from tests.conftest import unavailable
from tests.mirror.build_mirror import TIMES, build_mirror
from tests.tools import CACHE, ToolUnavailable


@pytest.fixture(scope="module")
def mirror():
    from tests.tools import BUILD_TIMES

    try:
        artifacts = build_mirror(CACHE / "mirror")
    except ToolUnavailable as exc:
        unavailable(str(exc))
    BUILD_TIMES.update(TIMES)
    return CACHE / "mirror", {a.name: a for a in artifacts}


def test_paths_match_the_upstream_release_urls(mirror):
    _, artifacts = mirror
    assert artifacts["containerd"].path == \
        "containerd/containerd/releases/download/v2.3.7/containerd-2.3.7-linux-amd64.tar.gz"
    assert artifacts["runc"].path == "opencontainers/runc/releases/download/v1.5.2/runc.amd64"
    assert artifacts["cni-plugins"].path.endswith("/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz")


def test_checksum_files_match_the_archives(mirror):
    root, artifacts = mirror
    for artifact in artifacts.values():
        data = (root / artifact.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact.sha256
        assert (root / f"{artifact.path}.sha256").read_text().split()[0] == artifact.sha256


def test_archives_have_upstreams_layout_and_the_binaries_run(mirror, tmp_path):
    root, artifacts = mirror
    with tarfile.open(root / artifacts["containerd"].path) as tar:
        assert sorted(tar.getnames()) == ["bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"]
        tar.extractall(tmp_path / "containerd")
    with tarfile.open(root / artifacts["cni-plugins"].path) as tar:
        assert {"./bridge", "./host-local", "./loopback", "./portmap"} <= set(tar.getnames())
    assert "containerd" in subprocess.run([str(tmp_path / "containerd/bin/containerd"), "--help"],
                                          capture_output=True, text=True).stdout
    runc = root / artifacts["runc"].path
    runc.chmod(0o755)
    version = subprocess.run([str(runc), "--version"], capture_output=True, text=True).stdout
    assert "seccomp" in version.lower() or "runc version" in version


def test_a_rebuild_reuses_the_cache_and_gives_the_same_checksums(mirror):
    root, artifacts = mirror
    again = {a.name: a for a in build_mirror(root)}
    assert {n: a.sha256 for n, a in again.items()} == {n: a.sha256 for n, a in artifacts.items()}
