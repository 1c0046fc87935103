"""Phase 2 planned against faked facts: containerd, runc, CNI plugins, kubeadm/kubelet/kubectl on fresh and
converged nodes; rendered config.toml, hosts.toml and kubeadm configuration; init and join guards."""

from __future__ import annotations

import hashlib
import subprocess
import tomllib
from dataclasses import replace

import pytest
import yaml

from tasks import artifacts, certificates, containerd, kubeadm
from tasks.state import LocalState
from tasks.templating import render
from tests.unit.plan import plan

PINNED = "ab" * 32


@pytest.fixture
def settings(sandbox_settings, tmp_path):
    pinned = {name: dict(spec, sha256=PINNED) for name, spec in sandbox_settings.artifacts.items()}
    return replace(sandbox_settings, artifacts=pinned, state_dir=str(tmp_path / "state"))


PULL = "pull-secret-0123"


@pytest.fixture
def upstream(settings):
    """The same lab with nodes that pull from the upstream registries (no mirror project)."""
    return replace(settings, image_mirror_project="")


@pytest.fixture
def pki(settings):
    return certificates.ensure_lab_pki(LocalState(settings.state_path), settings)


def file_facts(existing: dict[str, str]):
    """Fake File/Sha*File/Directory facts: `existing` maps remote files to their content; their parent
    directories exist."""
    directories = {path.rsplit("/", 1)[0] for path in existing}

    def file(path):
        executable = path == containerd.RUNC or path.startswith("/usr/local/bin/")
        mode = 755 if executable else 600 if path == containerd.CONFIG else 644
        return {"mode": mode, "size": len(existing[path])} if path in existing else None

    def digest(algorithm):
        return lambda path: hashlib.new(algorithm, existing[path].encode()).hexdigest() if path in existing else None
    return {"File": file, "Sha1File": digest("sha1"), "Sha256File": digest("sha256"), "Md5File": digest("md5"),
            "Directory": lambda path: {"mode": 755} if path in directories else None, "DebPackages": {p: ["1"] for p in [*kubeadm.NODE_PACKAGES, "curl"]}}


# ------------------------------------------------------------------------------------------ rendering


def test_config_toml_is_version_3_with_systemd_cgroups_pause_image_and_certs_d(settings):
    config = tomllib.loads(containerd.config_toml(settings, PULL))
    assert config["imports"] == ["/etc/containerd/conf.d/*.toml"]
    assert config["version"] == 3
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]
    assert runtime["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert runtime["runtimes"]["runc"]["options"]["BinaryName"] == containerd.RUNC
    images = config["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10.2"
    assert images["registry"]["config_path"] == "/etc/containerd/certs.d"
    assert images["registry"]["configs"]["registry.local"]["auth"] == {"username": "cluster-pull", "password": PULL}


def test_with_a_mirror_project_the_upstream_registries_are_pulled_through_the_private_one(settings):
    hosts = containerd.registry_hosts(settings)
    assert set(hosts) == {"registry.local", "registry.k8s.io", "quay.io", "docker.io", "ghcr.io"}
    k8s = tomllib.loads(hosts["registry.k8s.io"])
    mirror = "https://registry.local/v2/boutique/mirror/registry.k8s.io"
    assert k8s["server"] == "https://registry.k8s.io" and list(k8s["host"]) == [mirror]
    assert k8s["host"][mirror] == {"capabilities": ["pull", "resolve"], "override_path": True,
                                   "ca": "/etc/containerd/certs.d/registry.local/ca.crt"}


def test_without_a_mirror_project_only_configured_mirrors_are_written(upstream):
    assert set(containerd.registry_hosts(upstream)) == {"registry.local"}
    with_cache = replace(upstream, image_registry_mirrors={"docker.io": "http://198.51.100.1:5000"})
    docker = tomllib.loads(containerd.registry_hosts(with_cache)["docker.io"])
    assert docker["host"]["http://198.51.100.1:5000"] == {"capabilities": ["pull", "resolve"]}


def test_registry_hosts_trust_the_lab_ca_and_mirrors_come_first(upstream):
    hosts = containerd.registry_hosts(replace(upstream, image_registry_mirrors={
        "registry.k8s.io": "http://198.51.100.1:5000", "docker.io": "https://mirror.lab"}))
    lab = tomllib.loads(hosts["registry.local"])
    assert lab["server"] == "https://registry.local"
    assert lab["host"]["https://registry.local"]["ca"] == "/etc/containerd/certs.d/registry.local/ca.crt"
    k8s = tomllib.loads(hosts["registry.k8s.io"])
    assert k8s["server"] == "https://registry.k8s.io" and "ca" not in k8s["host"]["http://198.51.100.1:5000"]
    assert tomllib.loads(hosts["docker.io"])["host"]["https://mirror.lab"]["ca"].endswith("registry.local/ca.crt")


def test_downloads_come_from_the_mirror_with_upstreams_path(settings):
    assert artifacts.source_url(settings, "containerd") == (
        "http://198.51.100.1:8088/github.com/containerd/containerd/releases/download/v2.3.7/"
        "containerd-2.3.7-linux-amd64.tar.gz")
    upstream = replace(settings, artifact_mirror="")
    assert artifacts.source_url(upstream, "kubeadm") == "https://dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubeadm"


def kubeadm_documents(settings) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(kubeadm.kubeadm_config(settings))}


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
    assert docs["KubeletConfiguration"]["failCgroupV1"] is settings.kubelet_fail_cgroup_v1
    assert docs["KubeProxyConfiguration"]["mode"] == "iptables" and "ipvs" not in docs["KubeProxyConfiguration"]


def test_a_stable_endpoint_and_ipvs_change_the_config(settings):
    docs = kubeadm_documents(replace(settings, control_plane_endpoint="api.lab.example", kube_proxy_mode="ipvs",
                                     api_server_extra_sans=["10.0.0.5"]))
    assert docs["ClusterConfiguration"]["controlPlaneEndpoint"] == "api.lab.example:6443"
    assert docs["ClusterConfiguration"]["apiServer"]["certSANs"] == [
        "k8s-master", "198.51.100.11", "api.lab.example", "10.0.0.5"]
    assert docs["KubeProxyConfiguration"]["ipvs"] == {"strictARP": True}


def test_join_config_carries_the_token_only_in_the_file(settings):
    join = yaml.safe_load(kubeadm.join_config(settings, settings.node("k8s-worker1"), "abcdef.0123456789abcdef",
                                                 "sha256:" + "0" * 64))
    assert join["kind"] == "JoinConfiguration"
    assert join["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "198.51.100.11:6443"
    assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "198.51.100.12"}]


def test_ca_cert_hash_is_the_sha256_of_the_public_key(pki):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    key = x509.load_pem_x509_certificate(pki.ca.cert_pem).public_key()
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert kubeadm.ca_cert_hash(pki.ca.cert_pem) == "sha256:" + hashlib.sha256(der).hexdigest()


# ------------------------------------------------------------------------------------------ plans


def test_fresh_node_downloads_unpacks_configures_and_starts_containerd(settings, pki):
    p = plan(containerd.deploy_runtime, settings, pki.ca.cert_pem, PULL, facts={
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
    config = p.find("containerd config.toml")
    assert any(c.startswith(f"chmod 600 {containerd.CONFIG}") for c in config.commands), "it holds the pull account"


def converged_node_files(settings, pki) -> dict[str, str]:
    existing = {containerd.CONFIG: containerd.config_toml(settings, PULL), containerd.UNIT: render("containerd.service"),
                containerd.RUNC: "runc"}
    for registry, content in containerd.registry_hosts(settings).items():
        existing[f"{containerd.CERTS_D}/{registry}/hosts.toml"] = content
    existing[f"{containerd.CERTS_D}/registry.local/ca.crt"] = pki.ca.cert_pem.decode()
    for name in ("containerd", "cni-plugins"):
        existing[f"{artifacts.DOWNLOAD_DIR}/{artifacts.file_name(settings, name)}"] = "archive"
    return existing


def test_converged_node_changes_nothing(settings, pki):
    existing = converged_node_files(settings, pki)
    facts = {**file_facts(existing), "ShellChecks": lambda checks: {k: True for k in checks},
             "Sha256File": lambda path: PINNED if path in existing else None,
             "SystemdStatus": {"containerd.service": True}, "SystemdEnabled": {"containerd.service": True}}
    p = plan(containerd.deploy_runtime, settings, pki.ca.cert_pem, PULL, facts=facts)
    assert p.changing() == [], [op.name for op in p.changing()]


def test_an_interrupted_unpack_is_redone(settings, pki):
    existing = converged_node_files(settings, pki)
    facts = {**file_facts(existing), "Sha256File": lambda path: PINNED if path in existing else None,
             "ShellChecks": lambda checks: {k: k != "containerd" for k in checks},
             "SystemdStatus": {"containerd.service": True}, "SystemdEnabled": {"containerd.service": True}}
    p = plan(containerd.deploy_runtime, settings, pki.ca.cert_pem, PULL, facts=facts)
    assert [op.name for op in p.changing()] == [
        "Unpack containerd 2.3.7 into /usr/local", "Remember: containerd-restart is due",
        "containerd restarted (its binary, unit or config changed)", "containerd-restart: done"]
    assert "systemctl restart containerd.service" in p.commands()


def test_a_wrong_checksum_on_the_host_is_downloaded_again(settings, pki):
    existing = converged_node_files(settings, pki)
    facts = {**file_facts(existing), "Sha256File": lambda path: "cd" * 32 if path == containerd.RUNC else PINNED,
             "ShellChecks": lambda checks: {k: True for k in checks},
             "SystemdStatus": {"containerd.service": True}, "SystemdEnabled": {"containerd.service": True}}
    p = plan(containerd.deploy_runtime, settings, pki.ca.cert_pem, PULL, facts=facts)
    assert [op.name for op in p.changing()][0] == "Download runc 1.5.2 (sha256 pinned)"


def cluster_facts(admin_conf: bool, preloaded: bool = False, resolvable: bool = False):
    return {"File": lambda path: {"mode": 600} if admin_conf and path == kubeadm.ADMIN_CONF else None,
            "ShellChecks": lambda checks: {"preloaded": preloaded, "resolvable": resolvable}}


def test_init_runs_once_where_images_can_come_from(upstream, tmp_path):
    state = LocalState(tmp_path)
    fresh = plan(kubeadm.init_control_plane, upstream, state, host_name="k8s-master",
                 facts=cluster_facts(admin_conf=False, resolvable=True))
    assert fresh.commands() == [kubeadm.INIT_COMMAND]
    done = plan(kubeadm.init_control_plane, upstream, state, host_name="k8s-master",
                facts=cluster_facts(admin_conf=True))
    assert done.ops == []


@pytest.mark.parametrize("init_rc", [0, 3])
def test_a_failed_init_is_rolled_back_so_the_rerun_starts_over(tmp_path, init_rc):
    # The real shell runs the command against a stand-in kubeadm that logs its calls.
    calls = tmp_path / "calls"
    fake = tmp_path / "kubeadm"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n[ "$1" = init ] && exit {init_rc}\nexit 0\n')
    fake.chmod(0o755)
    done = subprocess.run(["sh", "-c", kubeadm.INIT_COMMAND], env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == init_rc
    logged = calls.read_text().splitlines()
    assert logged == [f"init --config {kubeadm.KUBEADM_CONFIG}"] + (["reset -f"] if init_rc else [])
    assert ("rolled back with kubeadm reset -f" in done.stderr) == bool(init_rc)


def test_init_without_an_image_source_stops_with_the_reason(upstream, tmp_path):
    state = LocalState(tmp_path)
    p = plan(kubeadm.init_control_plane, upstream, state, host_name="k8s-master", facts=cluster_facts(admin_conf=False))
    assert p.ops == []
    assert any("kubeadm init and join skipped" in w and "image_mirror_project" in w for w in p.warnings)
    mirrored = replace(upstream, image_registry_mirrors={"registry.k8s.io": "http://198.51.100.1:5000"})
    assert plan(kubeadm.init_control_plane, mirrored, state, host_name="k8s-master",
                facts=cluster_facts(admin_conf=False)).commands()


@pytest.mark.parametrize("missing", [[], ["registry.k8s.io/etcd:3.7.0-0 (not copied)"]])
def test_with_a_mirror_project_init_waits_for_every_image_in_the_private_registry(settings, tmp_path, monkeypatch,
                                                                                 missing):
    from tasks import images

    monkeypatch.setattr(images, "missing_from_mirror", lambda settings, state: missing)
    p = plan(kubeadm.init_control_plane, settings, LocalState(tmp_path), host_name="k8s-master",
             facts=cluster_facts(admin_conf=False))
    if missing:
        assert p.ops == []
        assert any("the private registry lacks 1 image(s)" in w and "etcd:3.7.0-0 (not copied)" in w
                   and "tools.images copy" in w for w in p.warnings), p.warnings
    else:
        assert p.commands() == [kubeadm.INIT_COMMAND]


def test_kubeadm_takes_its_images_and_accepted_preflight_failures_from_the_settings(settings):
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(kubeadm.kubeadm_config(
        replace(settings, kubeadm_ignore_preflight_errors=("SystemVerification",))))}
    cluster = docs["ClusterConfiguration"]
    assert cluster["imageRepository"] == "registry.k8s.io"
    assert cluster["etcd"] == {"local": {"imageTag": "3.7.0-0"}} and cluster["dns"] == {"imageTag": "v1.14.6"}
    assert docs["InitConfiguration"]["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]
    join = yaml.safe_load(kubeadm.join_config(replace(settings, kubeadm_ignore_preflight_errors=("SystemVerification",)),
                                              settings.node("k8s-worker1"), "abcdef.0123456789abcdef", "sha256:" + "0" * 64))
    assert join["nodeRegistration"]["ignorePreflightErrors"] == ["SystemVerification"]
    none = replace(settings, kubeadm_ignore_preflight_errors=())
    assert "ignorePreflightErrors" not in yaml.safe_load(kubeadm.join_config(
        none, settings.node("k8s-worker1"), "abcdef.0123456789abcdef", "sha256:" + "0" * 64))["nodeRegistration"]
    assert "ignorePreflightErrors" not in yaml.safe_load_all(kubeadm.kubeadm_config(none)).__next__()["nodeRegistration"]


def test_only_workers_without_kubelet_conf_join(settings):
    class FakeHost:
        def __init__(self, name, joined):
            self.name, self.joined = name, joined

        def get_fact(self, fact, path):
            return {"mode": 600} if self.joined and path == kubeadm.KUBELET_CONF else None

    assert kubeadm.workers_to_join([FakeHost("k8s-worker1", True), FakeHost("k8s-worker3", False)]) == ["k8s-worker3"]
    joined = plan(kubeadm.join_worker, settings, settings.node("k8s-worker1"),
                  facts={"File": lambda path: {"mode": 600}})
    assert joined.ops == []
    fresh = plan(kubeadm.join_worker, settings, settings.node("k8s-worker1"), facts={"File": None})
    assert fresh.names() == ["kubeadm join k8s-worker1 (token masked)"]
    assert plan(kubeadm.create_join_ticket, settings, [], host_name="k8s-master").ops == []


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

    choices = {"cni": "cilium", "storage_class": "local-path"}
    assert unused_artifacts(choices, "https://packages.gitlab.com") == {"calico-chart", "nfs-provisioner-chart"}
    assert unused_artifacts(choices, "") == {"calico-chart", "nfs-provisioner-chart", "gitlab-ce-apt-key",
                                             "gitlab-runner-apt-key"}
    unpinned_calico = dict(settings.artifacts, **{"calico-chart": dict(settings.artifacts["calico-chart"], sha256="")})
    require_pinned_artifacts(replace(settings, cni="cilium", artifacts=unpinned_calico))  # not chosen: fine
    with pytest.raises(SettingsError) as err:
        require_pinned_artifacts(replace(settings, cni="calico", artifacts=unpinned_calico))
    assert "artifacts.calico-chart.sha256" in str(err.value)


# ------------------------------------------------------------------------------------------ apt metadata


def fresh_node_phases(settings, node, ca_pem):
    """Phases 0-2 of a Kubernetes node as deploy.py runs them, up to kubeadm's binaries."""
    from tasks import foundation

    foundation.prepare_host(settings, node)
    certificates.trust_lab_ca(ca_pem)
    containerd.deploy_runtime(settings, ca_pem, PULL)
    kubeadm.enable_kubelet(kubeadm.install(settings))


def test_a_fresh_node_refreshes_apt_metadata_once_in_a_whole_run(settings, pki):
    """Before: one `apt-get update` per step that found a package missing (up to eight per node)."""
    facts = {**file_facts({}), "DebPackages": {}, "ShellChecks": lambda checks: {k: False for k in checks},
             "SystemdStatus": {}, "SystemdEnabled": {}, "ContainerType": "none", "ActiveSwap": False,
             "Sysctl": lambda keys: {}, "Hostname": "debian", "Command": "", "KernelModules": {}}
    p = plan(fresh_node_phases, settings, settings.node("k8s-worker1"), pki.ca.cert_pem, facts=facts)
    installs = [c for c in p.commands() if " install " in c and "apt-get" in c]
    assert [c for c in p.commands() if c == "apt-get update"] == ["apt-get update"], p.names()
    assert p.commands().index("apt-get update") < p.commands().index(installs[0])
    installed = [word for c in installs for word in c.split() if word in (
        "chrony", "kmod", "ca-certificates", "curl", *kubeadm.NODE_PACKAGES)]
    assert sorted(installed) == sorted(set(installed)), "a package is installed twice in one run"
    assert set(installed) == {"chrony", "kmod", "ca-certificates", "curl", *kubeadm.NODE_PACKAGES}


# ------------------------------------------------------------------------------------------ follow-ups


def kubelet_phase(settings):
    kubeadm.enable_kubelet(kubeadm.install(settings))


def kubelet_facts(changed_binary: str | None = None, pending: list[str] | None = None) -> dict:
    existing = {dest: render(template) for _name, template, dest in kubeadm.KUBELET_UNIT_FILES}
    existing.update({f"/usr/local/bin/{name}": "binary" for name in ("kubeadm", "kubelet", "kubectl")})
    return {**file_facts(existing), "FindFiles": pending or [], "SystemdEnabled": {"kubelet.service": True},
            "SystemdStatus": {"kubelet.service": True},
            "Sha256File": lambda path: "0" * 64 if path.endswith(f"/{changed_binary}") else PINNED}


def test_a_converged_kubelet_is_neither_reloaded_nor_restarted(settings):
    p = plan(kubelet_phase, settings, facts=kubelet_facts())
    assert p.changing() == [], [op.name for op in p.changing()]


def test_a_new_kubelet_binary_reloads_and_restarts_a_joined_kubelet_and_clears_its_marker(settings):
    p = plan(kubelet_phase, settings, facts=kubelet_facts(changed_binary="kubelet"))
    names = [op.name for op in p.changing()]
    assert names[-3:] == ["Remember: kubelet-restart is due", "kubelet reloaded (its binary or unit changed)",
                          "kubelet-restart: done"], names
    restart = p.find("kubelet reloaded").commands[0]
    assert "systemctl daemon-reload" in restart and f"if [ -e {kubeadm.KUBELET_CONF} ]" in restart


def test_a_restart_left_due_by_a_cut_off_run_happens_on_the_rerun(settings):
    """The run that replaced the binary stopped before the restart: nothing differs now but the marker."""
    p = plan(kubelet_phase, settings, facts=kubelet_facts(pending=["/var/lib/gitops-lab/pending/kubelet-restart"]))
    assert [op.name for op in p.changing()] == ["kubelet reloaded (its binary or unit changed)",
                                                "kubelet-restart: done"]
