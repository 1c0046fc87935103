"""Phase 2 on the lab's Kubernetes nodes after the real deploy: containerd 2.3 from the artifact mirror,
configured as rendered, trusting the registry and pulling the upstream registries through it; runc and the
CNI plugins; kubeadm, kubelet and kubectl at the pinned release, the kubelet running; secrets root only; and
a container that really runs under `ctr`, from an OCI image built here."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest

from tasks import containerd, images, kubeadm
from tasks.state import LocalState
from tests.conftest import unavailable
from tests.testinfra.conftest import LAB_DIR, NODES, node_ids

KUBE_NODES = [n for n in NODES if not n.has_role("platform")]
NODE = pytest.mark.parametrize("node", KUBE_NODES, ids=node_ids)


@NODE
def test_containerd_2_3_is_active_enabled_and_answers(connect, node):
    host = connect(node)
    service = host.service("containerd")
    assert service.is_running and service.is_enabled
    assert "v2.3.7" in host.check_output("/usr/local/bin/containerd --version")
    server = host.check_output("/usr/local/bin/ctr version")
    assert "Server:" in server and "2.3.7" in server.split("Server:")[1]


@NODE
def test_config_is_the_rendered_one_and_containerd_uses_it(connect, node, lab):
    host = connect(node)
    config = host.file(containerd.CONFIG)
    assert config.content_string == containerd.config_toml(lab, images.pull_password(LocalState(lab.state_path)))
    assert config.mode == 0o600 and config.user == "root", "config.toml holds the registry's pull account"
    # `config dump` is containerd's own merged view: proves the keys are real, not ignored typos.
    dumped = tomllib.loads(host.check_output("/usr/local/bin/containerd config dump"))
    cri = dumped["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert cri["options"]["SystemdCgroup"] is True and cri["options"]["BinaryName"] == containerd.RUNC
    cri_images = dumped["plugins"]["io.containerd.cri.v1.images"]
    assert cri_images["pinned_images"]["sandbox"] == lab.images["pause"]["ref"]
    assert cri_images["registry"]["config_path"] == containerd.CERTS_D
    assert cri_images["registry"]["configs"][lab.registry_domain]["auth"]["username"] == "cluster-pull"
    runtime = dumped["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True, "the lab's conf.d drop-in is read through the imports line"


@NODE
def test_registry_trust_files_hold_the_lab_ca(connect, node, lab):
    host = connect(node)
    hosts = containerd.registry_hosts(lab)
    assert set(hosts) == {lab.registry_domain, "registry.k8s.io", "quay.io", "docker.io", "ghcr.io"}
    for registry, content in hosts.items():
        assert host.file(f"{containerd.CERTS_D}/{registry}/hosts.toml").content_string == content
    assert 'override_path = true' in hosts["registry.k8s.io"] and "/v2/boutique/mirror/registry.k8s.io" in hosts["registry.k8s.io"]
    ca = LocalState(lab.state_path).ca_cert.read_text()
    assert host.file(containerd.lab_ca_file(lab)).content_string == ca


@NODE
def test_runc_and_cni_plugins_are_installed(connect, node):
    host = connect(node)
    assert "runc version 1.5.2" in host.check_output(f"{containerd.RUNC} --version")
    for plugin in ("bridge", "loopback", "host-local", "portmap"):
        assert host.file(f"{containerd.CNI_BIN}/{plugin}").mode & 0o111


@NODE
def test_kubernetes_binaries_are_the_pinned_release_and_kubelet_waits_for_kubeadm(connect, node, lab):
    host = connect(node)
    assert host.check_output("kubeadm version -o short") == f"v{lab.kubernetes_version}"
    assert f"v{lab.kubernetes_version}" in host.check_output("kubectl version --client")
    assert f"v{lab.kubernetes_version}" in host.check_output("kubelet --version")
    assert host.service("kubelet").is_enabled and host.service("kubelet").is_running
    assert "kubeadm-flags.env" in host.check_output("systemctl cat kubelet")


@NODE
def test_the_nodes_secrets_are_root_only_and_no_join_token_is_left(connect, node):
    host = connect(node)
    assert not host.file(kubeadm.JOIN_CONFIG).exists, "the join configuration (its token) outlived the join"
    assert not host.file("/etc/kubernetes/.gitops-lab-private").exists
    private = ["/etc/kubernetes/kubelet.conf", containerd.CONFIG]
    if node.has_role("control_plane"):
        private += [kubeadm.ADMIN_CONF, kubeadm.KUBEADM_CONFIG, "/etc/kubernetes/pki/ca.key"]
    for path in private:
        file = host.file(path)
        assert file.exists and file.mode == 0o600 and file.user == "root", (path, oct(file.mode))


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory):
    """A one-binary OCI image (busybox-static) built with umoci: no registry is reachable here."""
    for tool, package in (("umoci", "umoci"), ("busybox", "busybox-static")):
        if shutil.which(tool) is None:
            unavailable(f"the nested-container test builds its image with {tool} (Debian package {package})")
    work = tmp_path_factory.mktemp("image")
    layout, bundle = work / "layout", work / "bundle"

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, cwd=work)

    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:latest")
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:latest", str(bundle))
    rootfs = bundle / "rootfs" / "bin"
    rootfs.mkdir(parents=True)
    shutil.copy(shutil.which("busybox"), rootfs / "busybox")
    for applet in ("sh", "echo", "cat", "hostname", "sleep"):
        (rootfs / applet).symlink_to("busybox")
    run("umoci", "repack", "--image", f"{layout}:latest", str(bundle))
    run("umoci", "config", "--image", f"{layout}:latest", "--config.cmd=/bin/sh", "--config.env=PATH=/bin")
    archive = work / "busybox.tar"
    run("tar", "-C", str(layout), "-cf", str(archive), ".")
    return archive


@NODE
def test_a_container_runs_under_ctr_with_limits(connect, node, busybox_image):
    host = connect(node)
    remote = "/tmp/lab-busybox.tar"
    subprocess.run(["scp", "-F", str(LAB_DIR / "ssh" / "config"), str(busybox_image), f"root@{node.address}:{remote}"], check=True,
                   capture_output=True)
    host.check_output(f"ctr -n lab images import --base-name lab/busybox {remote}")
    image = host.check_output("ctr -n lab images ls -q").splitlines()[0]
    name = f"lab-test-{node.hostname}"
    out = host.run(f"ctr -n lab run --rm {image} {name}-echo sh -c 'echo hello-from-$(hostname)'")
    assert out.rc == 0 and "hello-from-" in out.stdout, out.stderr
    # The limit is applied: read it from the host's side of the container's cgroup (/<namespace>/<id>).
    host.check_output(f"ctr -n lab run -d --memory-limit 67108864 {image} {name} sleep 60")
    try:
        limit = host.check_output(f"cat /sys/fs/cgroup/memory/lab/{name}/memory.limit_in_bytes "
                                  f"2>/dev/null || cat /sys/fs/cgroup/lab/{name}/memory.max")
        assert limit == "67108864"
    finally:
        host.run(f"ctr -n lab task kill -s KILL {name}; sleep 1; ctr -n lab task delete {name}; "
                 f"ctr -n lab containers delete {name}")
    host.run(f"ctr -n lab images rm {image}; rm -f {remote}")
