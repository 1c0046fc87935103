"""The cluster phase's rendered configurations, checked by the real programs that read them: kubeadm 1.37
(`kubeadm config validate`: every field and value of v1beta4 and the component configs) and containerd 2.3
(`containerd config dump`: the merged configuration it would run with)."""

from __future__ import annotations

import subprocess
import tarfile
import tomllib
from dataclasses import replace

import pytest

from tasks import containerd, kubeadm as kubeadm_tasks
from tasks.settings import KUBEADM_TIMEOUT_DEFAULTS
from tests.conftest import unavailable
from tools.gobuild import ToolUnavailable, kube_build


@pytest.fixture(scope="module")
def kubeadm():
    try:
        return kube_build(["kubeadm"])["kubeadm"]
    except ToolUnavailable as exc:
        unavailable(str(exc))


def validate(kubeadm, tmp_path, text: str) -> subprocess.CompletedProcess:
    config = tmp_path / "kubeadm.yaml"
    config.write_text(text)
    return subprocess.run([str(kubeadm), "config", "validate", "--config", str(config)], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("variant", ["defaults", "ipvs-endpoint-sans", "cgroup-v1-allowed", "kubeadm-defaults"])
def test_kubeadm_accepts_the_rendered_configuration(kubeadm, tmp_path, sandbox_settings, variant):
    settings = {
        "defaults": sandbox_settings,
        "ipvs-endpoint-sans": replace(sandbox_settings, kube_proxy_mode="ipvs", control_plane_endpoint="api.lab:6443",
                                      api_server_extra_sans=["10.0.0.5", "api.example.org"]),
        "cgroup-v1-allowed": replace(sandbox_settings, kubelet_fail_cgroup_v1=False, kube_proxy_mode="nftables"),
        "kubeadm-defaults": replace(sandbox_settings, kubeadm_timeouts={}),
    }[variant]
    proc = validate(kubeadm, tmp_path, kubeadm_tasks.kubeadm_config(settings))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok" in (proc.stdout + proc.stderr).lower()


def test_kubeadm_rejects_a_misspelt_field(kubeadm, tmp_path, sandbox_settings):
    """The control case: kubeadm's validation is strict, so the check above means something."""
    text = kubeadm_tasks.kubeadm_config(sandbox_settings).replace("podSubnet:", "podSubnett:")
    proc = validate(kubeadm, tmp_path, text)
    assert proc.returncode != 0 and "podSubnett" in proc.stdout + proc.stderr


def test_kubeadm_accepts_the_join_configuration(kubeadm, tmp_path, sandbox_settings):
    text = kubeadm_tasks.join_config(sandbox_settings, sandbox_settings.node("k8s-worker1"), "abcdef.0123456789abcdef",
                                  "sha256:" + "0" * 64)
    proc = validate(kubeadm, tmp_path, text)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_containerd_reads_the_rendered_config_as_written(artifact_mirror, tmp_path, sandbox_settings):
    root, artifacts = artifact_mirror
    spec = artifacts["containerd"]
    from tasks.artifacts import mirror_path

    with tarfile.open(root / mirror_path(spec["url"].format(version=spec["version"]))) as tar:
        tar.extract("bin/containerd", tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(containerd.config_toml(sandbox_settings, "pull-password-for-the-test"))
    proc = subprocess.run([str(tmp_path / "bin" / "containerd"), "--config", str(config), "config", "dump"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    dumped = tomllib.loads(proc.stdout)
    # 2.3 reads version 3 (what the cluster phase writes, as Kubernetes' docs show it) and migrates it in
    # memory to its own newest format, which `config dump` prints.
    assert dumped["version"] >= 3
    runc = dumped["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is True
    assert dumped["plugins"]["io.containerd.cri.v1.runtime"]["cni"]["bin_dirs"] == ["/opt/cni/bin"]
    assert dumped["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == sandbox_settings.images["pause"]["ref"]


def test_kubeadm_reads_the_timeouts_the_setting_names(kubeadm, tmp_path, sandbox_settings):
    """Every timeout the setting accepts is one kubeadm knows (a misspelt one would be refused, as above), in
    init's and in join's configuration."""
    every = {name: 90 for name in KUBEADM_TIMEOUT_DEFAULTS}
    settings = replace(sandbox_settings, kubeadm_timeouts=every)
    init = kubeadm_tasks.kubeadm_config(settings)
    join = kubeadm_tasks.join_config(settings, settings.node("k8s-worker1"), "abcdef.0123456789abcdef",
                                     "sha256:" + "0" * 64)
    for text in (init, join):
        assert "  kubernetesAPICall: 90s" in text
        proc = validate(kubeadm, tmp_path, text)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = validate(kubeadm, tmp_path, init.replace("kubernetesAPICall:", "kubernetesApiCall:"))
    assert proc.returncode != 0 and "kubernetesApiCall" in proc.stdout + proc.stderr
