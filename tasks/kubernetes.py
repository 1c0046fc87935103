"""Phase 2, Kubernetes: kubeadm, kubelet and kubectl on every node; `kubeadm init` on the control plane;
workers joined with a token made in the same run; the admin kubeconfig fetched into the state folder.

Stages: `install` (release binaries, sha256 pinned; the kubelet unit and kubeadm's drop-in), `configure`
(the kubeadm configuration on the control plane), `activate` (init once, join once per worker). Guards:
init runs only where /etc/kubernetes/admin.conf is missing, join only where kubelet.conf is missing, so a
rerun touches neither and a new worker in the inventory joins alone.

Where the control-plane images cannot come from anywhere (no DNS for registry.k8s.io, no registry mirror,
nothing preloaded), init and join are skipped with the reason printed, and everything before them stays
deployed: that is where the offline sandbox stops.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, python, server, systemd

from tasks import artifacts
from tasks.facts import ShellChecks
from tasks.packages import ensure_packages
from tasks.phases import announce_once, run_scoped
from tasks.platform import render
from tasks.settings import Node, Settings

CLUSTER_NAME = "gitops-lab"
KUBEADM_CONFIG = "/etc/kubernetes/kubeadm-config.yaml"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
KUBE_CA = "/etc/kubernetes/pki/ca.crt"
# kubeadm's preflight needs conntrack and iptables; socat and ethtool serve port-forward and checks.
NODE_PACKAGES = ["conntrack", "iptables", "socat", "ethtool"]
CONTROL_PLANE_IMAGES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "etcd",
                        "coredns", "pause")
JOIN_TOKEN_TTL = "15m"


# ------------------------------------------------------------------------------------------ rendering


def api_endpoint(settings: Settings) -> str:
    """host:port every kubeconfig and join uses: the setting, or the control plane's address."""
    endpoint = settings.control_plane_endpoint or str(settings.control_plane.address)
    return endpoint if ":" in endpoint else f"{endpoint}:6443"


def cert_sans(settings: Settings) -> list[str]:
    cp = settings.control_plane
    names = [cp.hostname, str(cp.address), api_endpoint(settings).rsplit(":", 1)[0], *settings.api_server_extra_sans]
    return list(dict.fromkeys(names))


def kubeadm_config(settings: Settings) -> str:
    cp = settings.control_plane
    return render(
        "kubeadm-config.yaml.j2", cluster_name=CLUSTER_NAME, node_name=cp.hostname,
        advertise_address=str(cp.address), kubernetes_version=settings.kubernetes_version,
        control_plane_endpoint=api_endpoint(settings), pod_cidr=str(settings.pod_cidr),
        service_cidr=str(settings.service_cidr), cert_sans=cert_sans(settings),
        fail_cgroup_v1=settings.kubelet_fail_cgroup_v1, kube_proxy_mode=settings.kube_proxy_mode,
    )


def join_config(settings: Settings, node: Node, token: str, ca_cert_hash: str) -> str:
    return render("kubeadm-join.yaml.j2", node_name=node.hostname, node_address=str(node.address),
                  control_plane_endpoint=api_endpoint(settings), token=token, ca_cert_hash=ca_cert_hash)


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's discovery hash: sha256 of the CA's SubjectPublicKeyInfo (DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public_key = x509.load_pem_x509_certificate(ca_pem).public_key()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def kubeconfig_path(settings: Settings) -> Path:
    return settings.state_path / "kubeconfig"


def image_source_checks(settings: Settings) -> dict[str, str]:
    """Shell tests telling whether kubeadm can get the control-plane images on this host."""
    return {
        "preloaded": f"/usr/local/bin/ctr -n k8s.io images ls -q 2>/dev/null "
                     f"| grep -q 'kube-apiserver:v{settings.kubernetes_version}$'",
        # A name lookup only: the lab has no DNS, so this fails at once and sends nothing anywhere.
        "resolvable": "getent hosts registry.k8s.io >/dev/null",
    }


def images_unavailable_reason(settings: Settings, checks: dict[str, bool]) -> str | None:
    if checks.get("preloaded") or checks.get("resolvable") or "registry.k8s.io" in settings.image_registry_mirrors:
        return None
    return (f"the control-plane images ({', '.join(CONTROL_PLANE_IMAGES)} for v{settings.kubernetes_version}) "
            "cannot come from anywhere: registry.k8s.io does not resolve, image_registry_mirrors has no "
            "registry.k8s.io entry, and none is preloaded in containerd. Fix: give the nodes DNS and internet, "
            "or set image_registry_mirrors = {\"registry.k8s.io\": \"http://your-mirror:5000\"}")


# ------------------------------------------------------------------------------------------ stages


@deploy("Phase 2: kubeadm, kubelet, kubectl installed")
def install(settings: Settings) -> list:
    ensure_packages(NODE_PACKAGES)
    changed = [artifacts.fetch(settings, name, f"/usr/local/bin/{name}", mode="755")
               for name in ("kubeadm", "kubelet", "kubectl")]
    changed.append(files.put(name="kubelet unit (systemd)", src=StringIO(render("kubelet.service")),
                             dest="/etc/systemd/system/kubelet.service", mode="644"))
    changed.append(files.put(name="kubelet drop-in for kubeadm", src=StringIO(render("10-kubeadm.conf")),
                             dest="/etc/systemd/system/kubelet.service.d/10-kubeadm.conf", mode="644",
                             create_remote_dir=True))
    return changed


@deploy("Phase 2: kubelet enabled")
def enable_kubelet(changed: list) -> None:
    # Enabled, not started: kubeadm starts it at init or join, and until then it would only crash-loop.
    reload = any(op is not None and op.will_change for op in changed)
    systemd.service(name="kubelet enabled (kubeadm starts it)", service="kubelet", enabled=True, running=None,
                    daemon_reload=reload, restarted=reload and host.get_fact(File, path=KUBELET_CONF) is not None)


@deploy("Phase 2: kubeadm configuration")
def configure_control_plane(settings: Settings) -> None:
    files.put(name=f"kubeadm configuration ({KUBEADM_CONFIG})", src=StringIO(kubeadm_config(settings)),
              dest=KUBEADM_CONFIG, mode="600", create_remote_dir=True)


def cluster_blocker(settings: Settings, control_plane: Any) -> str | None:
    """Why no cluster can exist after this run (None: it exists already, or init will make it).

    Read from the control plane's facts, so every host of the run agrees (workers skip their join too)."""
    if control_plane.get_fact(File, path=ADMIN_CONF):
        return None
    return images_unavailable_reason(settings, control_plane.get_fact(ShellChecks, checks=image_source_checks(settings)))


@deploy("Phase 2: kubeadm init")
def init_control_plane(settings: Settings) -> bool:
    """Returns whether the cluster exists (or will, once this run's init ran)."""
    if host.get_fact(File, path=ADMIN_CONF):
        return True  # initialised before: kubeadm init must never run twice
    reason = cluster_blocker(settings, host)
    if reason:
        announce_once("kubeadm", f"    kubeadm init and join skipped: {reason}")
        return False
    server.shell(name="kubeadm init (takes a few minutes: pulls images, starts the control plane)",
                 commands=[f"kubeadm init --config {KUBEADM_CONFIG}"])
    return True


@deploy("Phase 2: admin kubeconfig")
def fetch_admin_kubeconfig(settings: Settings) -> None:
    local = kubeconfig_path(settings)
    if not local.exists():
        # Created empty with 0600 first: files.get then writes into it and the mode stays.
        local.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        local.touch(mode=0o600)
    local.chmod(0o600)
    files.get(name=f"Admin kubeconfig -> {local} (context kubernetes-admin@{CLUSTER_NAME})", src=ADMIN_CONF,
              dest=str(local))


# ---- join: the control plane makes one short-lived token at run time; workers read it at run time


@dataclass
class JoinTicket:
    token: str
    ca_cert_hash: str


def _tickets() -> dict[str, JoinTicket]:
    return run_scoped("join", dict)


def _create_join_ticket(settings: Settings) -> None:
    ok, output = host.run_shell_command(f"kubeadm token create --ttl {JOIN_TOKEN_TTL}", print_output=False,
                                        print_input=False)
    if not ok:
        raise RuntimeError(f"kubeadm token create failed on {host.name}: check `kubeadm token list` there")
    token = output.stdout.strip().splitlines()[-1]
    with tempfile.NamedTemporaryFile() as ca:
        host.get_file(KUBE_CA, ca.name)
        _tickets()["join"] = JoinTicket(token, ca_cert_hash(Path(ca.name).read_bytes()))
    logger.info(f"    [{host.name}] join token created (valid {JOIN_TOKEN_TTL}; not shown)")


def _join(settings: Settings, node: Node) -> None:
    ticket = _tickets().get("join")
    if ticket is None:
        raise RuntimeError(f"{host.name} cannot join: the control plane made no join token in this run "
                           "(did its part of phase 2 fail? see the output above)")
    config = join_config(settings, node, ticket.token, ticket.ca_cert_hash)
    path = "/etc/kubernetes/kubeadm-join.yaml"
    host.put_file(StringIO(config), path, print_output=False, print_input=False)
    # The token lives in the file (0600, removed after), never on a command line or in the output.
    ok, output = host.run_shell_command(f"chmod 600 {path} && kubeadm join --config {path}; rc=$?; rm -f {path}; "
                                        "exit $rc", print_output=False, print_input=False)
    if not ok:
        tail = "\n".join(output.stderr.splitlines()[-5:])
        raise RuntimeError(f"kubeadm join failed on {host.name}:\n{tail}\ncheck that {api_endpoint(settings)} "
                           "is reachable from it and that the clocks agree (chronyc tracking)")


def workers_to_join(targets: list[Any]) -> list[str]:
    return sorted(t.name for t in targets if t.get_fact(File, path=KUBELET_CONF) is None)


@deploy("Phase 2: join token")
def create_join_ticket(settings: Settings, pending_workers: list[str]) -> None:
    if pending_workers:
        python.call(name=f"Join token for {', '.join(pending_workers)} (masked)", function=_create_join_ticket,
                    settings=settings)


@deploy("Phase 2: kubeadm join")
def join_worker(settings: Settings, node: Node) -> None:
    if host.get_fact(File, path=KUBELET_CONF):
        return  # joined before: left alone
    python.call(name=f"kubeadm join {node.hostname} (token masked)", function=_join, settings=settings, node=node)
