"""Phase 2 planned against faked facts: containerd, runc, CNI plugins, kubeadm/kubelet/kubectl on fresh and
converged nodes; rendered config.toml, hosts.toml and kubeadm configuration; init and join guards."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import replace

import pytest
import yaml

from tasks import artifacts, containerd, kubernetes, platform
from tests.unit.plan import plan

PINNED = "ab" * 32


@pytest.fixture
def settings(sandbox_settings, tmp_path):
    pinned = {name: dict(spec, sha256=PINNED) for name, spec in sandbox_settings.artifacts.items()}
    return replace(sandbox_settings, artifacts=pinned, state_dir=str(tmp_path / "state"))


@pytest.fixture
def lab_secrets(settings):
    return platform.prepare_secrets(settings)


def file_facts(existing: dict[str, str]):
    """Fake File/Sha*File/Directory facts: `existing` maps remote files to their content; their parent
    directories exist."""
    directories = {path.rsplit("/", 1)[0] for path in existing}

    def file(path):
        executable = path == containerd.RUNC or path.startswith("/usr/local/bin/")
        return {"mode": 755 if executable else 644, "size": len(existing[path])} if path in existing else None

    def digest(algorithm):
        return lambda path: hashlib.new(algorithm, existing[path].encode()).hexdigest() if path in existing else None
    return {"File": file, "Sha1File": digest("sha1"), "Sha256File": digest("sha256"), "Md5File": digest("md5"),
            "Directory": lambda path: {"mode": 755} if path in directories else None, "DebPackages": {p: ["1"] for p in [*kubernetes.NODE_PACKAGES, "curl"]}}


# ------------------------------------------------------------------------------------------ rendering


def test_config_toml_is_version_3_with_systemd_cgroups_pause_image_and_certs_d(settings):
    config = tomllib.loads(containerd.config_toml(settings))
    assert config["version"] == 3
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
    assert runtime["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert runtime["runtimes"]["runc"]["options"]["BinaryName"] == containerd.RUNC
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10.2"
    assert images["registry"]["config_path"] == "/etc/containerd/certs.d"


def test_registry_hosts_trust_the_lab_ca_and_mirrors_come_first(settings):
    hosts = containerd.registry_hosts(replace(settings, image_registry_mirrors={
        "registry.k8s.io": "http://198.51.100.1:5000", "docker.io": "https://mirror.lab"}))
    lab = tomllib.loads(hosts["registry.local"])
    assert lab["server"] == "https://registry.local"
    assert lab["host"]["https://registry.local"]["ca"] == "/etc/containerd/certs.d/registry.local/ca.crt"
    k8s = tomllib.loads(hosts["registry.k8s.io"])
    assert k8s["server"] == "https://registry.k8s.io" and "ca" not in k8s["host"]["http://198.51.100.1:5000"]
    assert tomllib.loads(hosts["docker.io"])["host"]["https://mirror.lab"]["ca"].endswith("docker.io/ca.crt")


def test_downloads_come_from_the_mirror_with_upstreams_path(settings):
    assert artifacts.source_url(settings, "containerd") == (
        "http://198.51.100.1:8088/github.com/containerd/containerd/releases/download/v2.3.7/"
        "containerd-2.3.7-linux-amd64.tar.gz")
    upstream = replace(settings, artifact_mirror="")
    assert artifacts.source_url(upstream, "kubeadm") == "https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubeadm"


def kubeadm_documents(settings) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(kubernetes.kubeadm_config(settings))}


def test_kubeadm_config_has_the_four_kinds_from_settings(settings):
    docs = kubeadm_documents(settings)
    assert set(docs) == {"InitConfiguration", "ClusterConfiguration", "KubeletConfiguration", "KubeProxyConfiguration"}
    cluster = docs["ClusterConfiguration"]
    assert cluster["apiVersion"] == "kubeadm.k8s.io/v1beta4" and cluster["kubernetesVersion"] == "v1.37.2"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/12",
                                     "dnsDomain": "cluster.local"}
    assert cluster["controlPlaneEndpoint"] == "198.51.100.11:6443"
    assert cluster["apiServer"]["certSANs"] == ["k8s-master", "198.51.100.11"]
    init = docs["InitConfiguration"]
    assert init["localAPIEndpoint"]["advertiseAddress"] == "198.51.100.11"
    assert init["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "198.51.100.11"}]
    assert docs["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert docs["KubeletConfiguration"]["failCgroupV1"] is True
    assert docs["KubeProxyConfiguration"]["mode"] == "iptables" and "ipvs" not in docs["KubeProxyConfiguration"]


def test_a_stable_endpoint_and_ipvs_change_the_config(settings):
    docs = kubeadm_documents(replace(settings, control_plane_endpoint="api.lab.example", kube_proxy_mode="ipvs",
                                     api_server_extra_sans=["10.0.0.5"]))
    assert docs["ClusterConfiguration"]["controlPlaneEndpoint"] == "api.lab.example:6443"
    assert docs["ClusterConfiguration"]["apiServer"]["certSANs"] == [
        "k8s-master", "198.51.100.11", "api.lab.example", "10.0.0.5"]
    assert docs["KubeProxyConfiguration"]["ipvs"] == {"strictARP": True}


def test_join_config_carries_the_token_only_in_the_file(settings):
    join = yaml.safe_load(kubernetes.join_config(settings, settings.node("k8s-worker1"), "abcdef.0123456789abcdef",
                                                 "sha256:" + "0" * 64))
    assert join["kind"] == "JoinConfiguration"
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "198.51.100.11:6443"
    assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "198.51.100.12"}]


def test_ca_cert_hash_is_the_sha256_of_the_public_key(lab_secrets):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(lab_secrets.ca.cert_pem).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert kubernetes.ca_cert_hash(lab_secrets.ca.cert_pem) == "sha256:" + hashlib.sha256(der).hexdigest()


# ------------------------------------------------------------------------------------------ plans


def test_fresh_node_downloads_unpacks_configures_and_starts_containerd(settings, lab_secrets):
    p = plan(containerd.deploy_runtime, settings, lab_secrets, facts={
        **file_facts({}), "ShellChecks": lambda checks: {k: False for k in checks}, "SystemdStatus": {},
        "SystemdEnabled": {}})
    commands = "\n".join(p.commands())
    for name in ("containerd", "runc", "cni-plugins"):
        assert any(n.startswith(f"Download {name} ") for n in p.names())
    assert "http://198.51.100.1:8088/github.com/containerd/containerd/releases/download/v2.3.7/" in commands
    assert PINNED in commands  # the download is checked against the pin
    assert "tar -xzf /var/cache/gitops-lab/downloads/containerd-2.3.7-linux-amd64.tar.gz -C /usr/local" in commands
    assert f"echo {PINNED} > /var/lib/gitops-lab/unpacked/containerd" in commands
    assert "systemctl restart containerd.service" in commands or "systemctl start containerd.service" in commands
    assert any("certs.d/registry.local/ca.crt" in n for n in p.names())


def converged_node_files(settings, lab_secrets) -> dict[str, str]:
    existing = {containerd.CONFIG: containerd.config_toml(settings), containerd.UNIT: platform.render("containerd.service"),
                containerd.RUNC: "runc"}
    for registry, content in containerd.registry_hosts(settings).items():
        existing[f"{containerd.CERTS_D}/{registry}/hosts.toml"] = content
    existing[f"{containerd.CERTS_D}/registry.local/ca.crt"] = lab_secrets.ca.cert_pem.decode()
    for name in ("containerd", "cni-plugins"):
        existing[f"{artifacts.DOWNLOAD_DIR}/{artifacts.file_name(settings, name)}"] = "archive"
    return existing


def test_converged_node_changes_nothing(settings, lab_secrets):
    existing = converged_node_files(settings, lab_secrets)
    facts = {**file_facts(existing), "ShellChecks": lambda checks: {k: True for k in checks},
             "Sha256File": lambda path: PINNED if path in existing else None,
             "SystemdStatus": {"containerd.service": True}, "SystemdEnabled": {"containerd.service": True}}
    p = plan(containerd.deploy_runtime, settings, lab_secrets, facts=facts)
    assert p.changing() == [], [op.name for op in p.changing()]


def test_an_interrupted_unpack_is_redone(settings, lab_secrets):
    existing = converged_node_files(settings, lab_secrets)
    facts = {**file_facts(existing), "Sha256File": lambda path: PINNED if path in existing else None,
             "ShellChecks": lambda checks: {k: k != "containerd" for k in checks},
             "SystemdStatus": {"containerd.service": True}, "SystemdEnabled": {"containerd.service": True}}
    p = plan(containerd.deploy_runtime, settings, lab_secrets, facts=facts)
    assert [op.name for op in p.changing()] == ["Unpack containerd 2.3.7 into /usr/local", "containerd running and enabled"]
    assert "systemctl restart containerd.service" in p.commands()


def test_a_wrong_checksum_on_the_host_is_downloaded_again(settings, lab_secrets):
    existing = converged_node_files(settings, lab_secrets)
    facts = {**file_facts(existing), "Sha256File": lambda path: "cd" * 32 if path == containerd.RUNC else PINNED,
             "ShellChecks": lambda checks: {k: True for k in checks},
             "SystemdStatus": {"containerd.service": True}, "SystemdEnabled": {"containerd.service": True}}
    p = plan(containerd.deploy_runtime, settings, lab_secrets, facts=facts)
    assert [op.name for op in p.changing()][0] == "Download runc 1.5.2 (sha256 pinned)"


def cluster_facts(admin_conf: bool, preloaded: bool = False, resolvable: bool = False):
    return {"File": lambda path: {"mode": 600} if admin_conf and path == kubernetes.ADMIN_CONF else None,
            "ShellChecks": lambda checks: {"preloaded": preloaded, "resolvable": resolvable}}


def test_init_runs_once_where_images_can_come_from(settings):
    fresh = plan(kubernetes.init_control_plane, settings, host_name="k8s-master",
                 facts=cluster_facts(admin_conf=False, resolvable=True))
    assert fresh.commands() == [f"kubeadm init --config {kubernetes.KUBEADM_CONFIG}"]
    done = plan(kubernetes.init_control_plane, settings, host_name="k8s-master", facts=cluster_facts(admin_conf=True))
    assert done.ops == []


def test_init_without_an_image_source_stops_with_the_reason(settings):
    p = plan(kubernetes.init_control_plane, settings, host_name="k8s-master", facts=cluster_facts(admin_conf=False))
    assert p.ops == []
    assert any("kubeadm init and join skipped" in w and "image_registry_mirrors" in w for w in p.warnings)
    mirrored = replace(settings, image_registry_mirrors={"registry.k8s.io": "http://198.51.100.1:5000"})
    assert plan(kubernetes.init_control_plane, mirrored, host_name="k8s-master",
                facts=cluster_facts(admin_conf=False)).commands()


def test_only_workers_without_kubelet_conf_join(settings):
    class FakeHost:
        def __init__(self, name, joined):
            self.name, self.joined = name, joined

        def get_fact(self, fact, path):
            return {"mode": 600} if self.joined and path == kubernetes.KUBELET_CONF else None

    assert kubernetes.workers_to_join([FakeHost("k8s-worker1", True), FakeHost("k8s-worker3", False)]) == ["k8s-worker3"]
    joined = plan(kubernetes.join_worker, settings, settings.node("k8s-worker1"),
                  facts={"File": lambda path: {"mode": 600}})
    assert joined.ops == []
    fresh = plan(kubernetes.join_worker, settings, settings.node("k8s-worker1"), facts={"File": None})
    assert fresh.names() == ["kubeadm join k8s-worker1 (token masked)"]
    assert plan(kubernetes.create_join_ticket, settings, [], host_name="k8s-master").ops == []


# ------------------------------------------------------------------------------------------ storage


def test_nfs_server_exports_to_the_node_network_and_republishes_only_on_change(settings):
    from tasks import storage

    nfs = replace(settings, storage_class="nfs")
    line = storage.exports_line(nfs)
    assert line == "/srv/nfs/kubernetes 198.51.100.0/24(rw,sync,no_subtree_check,no_root_squash)"
    fresh = plan(storage.nfs_server, nfs, host_name="mini-pc", facts={
        "DebPackages": {}, "Directory": None, "File": {"mode": 644}, "FindInFile": lambda **kw: [],
        "SystemdStatus": {}, "SystemdEnabled": {}})
    assert "exportfs -ra" in fresh.commands() and any("nfs-kernel-server" in c for c in fresh.commands())
    converged = plan(storage.nfs_server, nfs, host_name="mini-pc", facts={
        "DebPackages": {"nfs-kernel-server": ["1"]}, "Directory": {"mode": 755}, "File": {"mode": 644},
        "FindInFile": lambda **kw: [line], "SystemdStatus": {"nfs-server.service": True},
        "SystemdEnabled": {"nfs-server.service": True}})
    assert converged.changing() == [], [op.name for op in converged.changing()]


def test_local_path_storage_class_is_marked_default(settings):
    from tasks import storage

    manifest = ("apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: local-path\n"
                "provisioner: rancher.io/local-path\n").encode()
    namespace, objects = storage.storage_objects(settings, manifest)
    assert namespace == "local-path-storage"
    assert objects[0]["metadata"]["annotations"] == {storage.DEFAULT_CLASS: "true"}


def test_only_the_chosen_options_downloads_must_be_pinned(settings):
    from tasks.settings import SettingsError, require_pinned_artifacts, unused_artifacts

    assert unused_artifacts({"cni": "cilium", "storage_class": "local-path"}) == {"calico-chart",
                                                                                   "nfs-provisioner-chart"}
    unpinned_calico = dict(settings.artifacts, **{"calico-chart": dict(settings.artifacts["calico-chart"], sha256="")})
    require_pinned_artifacts(replace(settings, cni="cilium", artifacts=unpinned_calico))  # not chosen: fine
    with pytest.raises(SettingsError) as err:
        require_pinned_artifacts(replace(settings, cni="calico", artifacts=unpinned_calico))
    assert "artifacts.calico-chart.sha256" in str(err.value)
