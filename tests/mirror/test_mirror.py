"""The local artifact mirror: upstream's archive names, paths, layout and checksum files, binaries that run;
and tools/pin_artifacts.py reading the checksums from it over HTTP."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from dataclasses import replace

import pytest
import yaml

from tasks.artifacts import mirror_path
from tasks.gitops_repo import PLATFORM_APPS, render_gitops_repo
from tasks.settings import load_settings
from tests.conftest import REPO, load_inventory
from tools import pin_artifacts
from tools.gobuild import go_tool
from tools.lab.constants import CHARTS_FOLDER
from tools.mirror import LAB_CHARTS, build_mirror, group_data_artifacts


@pytest.fixture(scope="session")
def mirror(artifact_mirror):
    return artifact_mirror


def path_of(spec: dict) -> str:
    return mirror_path(spec["url"].format(version=spec["version"]))


def test_every_group_data_artifact_is_built_at_its_version(mirror):
    _, artifacts = mirror
    pinned = group_data_artifacts()
    pinned.pop("calico-chart")  # no offline source: see build_mirror.py
    pinned.pop("nfs-provisioner-chart")
    pinned.pop("gitlab-ce-apt-key")  # GitLab's signing keys: no offline source; unused where GitLab is skipped
    pinned.pop("gitlab-runner-apt-key")
    assert set(artifacts) == set(pinned)
    assert {n: a["version"] for n, a in artifacts.items()} == {n: a["version"] for n, a in pinned.items()}


def test_paths_match_the_upstream_release_urls(mirror):
    _, artifacts = mirror
    assert path_of(artifacts["containerd"]) == \
        "github.com/containerd/containerd/releases/download/v2.3.7/containerd-2.3.7-linux-amd64.tar.gz"
    assert path_of(artifacts["runc"]) == "github.com/opencontainers/runc/releases/download/v1.5.2/runc.amd64"
    assert path_of(artifacts["cni-plugins"]).endswith("/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz")
    assert path_of(artifacts["kubeadm"]) == "dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubeadm"


def test_checksum_files_match_the_files_in_upstreams_formats(mirror):
    root, artifacts = mirror
    for name, spec in artifacts.items():
        assert hashlib.sha256((root / path_of(spec)).read_bytes()).hexdigest() == spec["sha256"]
        url, file_name = pin_artifacts.checksum_url(spec, "")
        if not url:
            continue  # the release publishes no checksum for this file
        text = (root / mirror_path(url)).read_text()
        assert pin_artifacts.parse_checksum(text, file_name) == spec["sha256"], name
    assert (root / "dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet.sha256").read_text().strip() == \
        artifacts["kubelet"]["sha256"]  # dl.k8s.io: the bare hash
    assert (root / "github.com/opencontainers/runc/releases/download/v1.5.2/runc.sha256sum").read_text() == \
        f"{artifacts['runc']['sha256']}  runc.amd64\n"


def test_archives_have_upstreams_layout_and_the_binaries_run(mirror, tmp_path):
    root, artifacts = mirror
    with tarfile.open(root / path_of(artifacts["containerd"])) as tar:
        assert sorted(tar.getnames()) == ["bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"]
        tar.extractall(tmp_path / "containerd")
    with tarfile.open(root / path_of(artifacts["cni-plugins"])) as tar:
        assert {"./bridge", "./host-local", "./loopback", "./portmap"} <= set(tar.getnames())
    assert "containerd" in subprocess.run([str(tmp_path / "containerd/bin/containerd"), "--help"],
                                          capture_output=True, text=True).stdout
    for name in ("runc", "kubeadm", "kubectl"):
        binary = tmp_path / name
        shutil.copyfile(root / path_of(artifacts[name]), binary)
        binary.chmod(0o755)
        flag = ["version", "-o", "short"] if name == "kubeadm" else ["version", "--client"] if name == "kubectl" \
            else ["--version"]
        output = subprocess.run([str(binary), *flag], capture_output=True, text=True).stdout
        expected = "runc version 1.5.2" if name == "runc" else "v1.37.2"
        assert expected in output, f"{name}: {output}"


def test_a_rebuild_reuses_the_cache_and_gives_the_same_checksums(mirror):
    root, artifacts = mirror
    again = build_mirror(root)
    assert {n: a["sha256"] for n, a in again.items()} == {n: a["sha256"] for n, a in artifacts.items()}


def test_pin_tool_writes_every_sha256_then_finds_nothing_to_change(served_mirror, mirror, tmp_path, capsys):
    import json

    _, artifacts = mirror
    group_data, lock = tmp_path / "all.py", tmp_path / "artifacts.lock.json"
    # As the sandbox: Cilium, whose chart the local mirror holds (Calico's has no offline source), and GitLab
    # not installed from packages (its apt signing keys have no offline source either).
    source = (REPO / "group_data" / "all.py").read_text()
    assert 'cni = "calico"' in source and 'gitlab_package_source = "https://' in source
    group_data.write_text(source.replace('cni = "calico"', 'cni = "cilium"')
                          .replace('gitlab_package_source = "https://', 'gitlab_package_source = ""  # "https://'))
    args = ["--mirror", served_mirror, "--group-data", str(group_data), "--lock", str(lock)]
    assert pin_artifacts.main([*args, "--check"]) == 1
    assert pin_artifacts.main(args) == 0
    written = json.loads(lock.read_text())
    assert {n: s["sha256"] for n, s in written.items()} == {n: a["sha256"] for n, a in artifacts.items()}
    assert written["containerd"]["url"].endswith("/v2.3.7/containerd-2.3.7-linux-amd64.tar.gz")
    assert pin_artifacts.main([*args, "--check"]) == 0
    assert f"wrote {len(artifacts)} sha256" in capsys.readouterr().out
    # The lock file is what the deploy reads: the sandbox's settings with this lock are pinned.
    assert json.loads((mirror[0] / "artifacts.json").read_text()) == written


def test_pin_tool_names_the_artifact_it_cannot_read(served_mirror, tmp_path, capsys):
    from tests.conftest import REPO

    group_data = tmp_path / "all.py"
    group_data.write_text((REPO / "group_data" / "all.py").read_text().replace('"2.3.7"', '"2.3.99"')
                          .replace('cni = "calico"', 'cni = "cilium"'))
    assert pin_artifacts.main(["--mirror", served_mirror, "--group-data", str(group_data),
                               "--lock", str(tmp_path / "lock.json")]) == 2
    err = capsys.readouterr().err
    assert "the checksum file of containerd 2.3.99" in err and "404" in err
    assert pin_artifacts.parse_checksum("x" * 64 + "  other.tar.gz\n" + "a" * 64 + "  *want.tgz\n", "want.tgz") == "a" * 64


def test_the_helm_repository_serves_each_lab_chart_at_its_pinned_version(served_mirror, mirror, tmp_path):
    """Helm itself (built at the version Argo CD's repo-server runs) pulls the chart from the served mirror,
    checks its digest against index.yaml, and renders it with gitops-repo's values for the sandbox: the
    controller's image is the catalog's, by digest."""
    index = yaml.safe_load((mirror[0] / CHARTS_FOLDER / "index.yaml").read_text())
    pinned = {app.chart: app.version for app in PLATFORM_APPS if app.name in LAB_CHARTS}
    assert {chart: [e["version"] for e in entries] for chart, entries in index["entries"].items()} == \
        {chart: [version] for chart, version in pinned.items()}
    helm = str(go_tool("helm"))
    env = {"HOME": str(tmp_path), "HELM_CACHE_HOME": str(tmp_path / "cache"),
           "HELM_CONFIG_HOME": str(tmp_path / "config"), "HELM_DATA_HOME": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    pull = subprocess.run([helm, "pull", "sealed-secrets", "--repo", f"{served_mirror}/{CHARTS_FOLDER}",
                           "--version", pinned["sealed-secrets"], "--destination", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert pull.returncode == 0, pull.stderr
    archive = tmp_path / f"sealed-secrets-{pinned['sealed-secrets']}.tgz"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == index["entries"]["sealed-secrets"][0]["digest"]

    settings = load_settings(load_inventory(REPO / "inventories" / "sandbox.py"))
    digest = "sha256:" + "ab" * 32
    images = {**settings.images, "sealed-secrets-controller": {**settings.images["sealed-secrets-controller"],
                                                                "digest": digest}}
    repo = render_gitops_repo(replace(settings, images=images), tmp_path / "gitops", "0" * 40)
    rendered = subprocess.run([helm, "template", "sealed-secrets", str(archive), "--namespace", "kube-system",
                               "-f", str(repo / "platform/sealed-secrets/values.yaml")],
                              capture_output=True, text=True, env=env, timeout=120)
    assert rendered.returncode == 0, rendered.stderr
    deployment = next(d for d in yaml.safe_load_all(rendered.stdout) if d and d["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == "sealed-secrets-controller"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"docker.io/bitnami/sealed-secrets-controller:0.40.0@{digest}"
