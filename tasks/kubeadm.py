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
from pyinfra.facts.files import File
from pyinfra.operations import files, python, server, systemd

from tasks import artifacts, follow_up, images
from tasks.facts import ShellChecks, snapshot
from tasks.images import Reference
from tasks.packages import ensure_packages
from tasks.phases import announce_once, run_scoped, stage
from tasks.remote import put_private_file
from tasks.settings import KUBEADM_IMAGES, Node, Settings, image_repository
from tasks.state import LocalState
from tasks.templating import render

CLUSTER_NAME = "gitops-lab"
KUBEADM_CONFIG = "/etc/kubernetes/kubeadm-config.yaml"
ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
KUBE_CA = "/etc/kubernetes/pki/ca.crt"
# kubeadm's preflight needs conntrack and iptables; socat and ethtool serve port-forward and checks.
NODE_PACKAGES = ["conntrack", "iptables", "socat", "ethtool"]
JOIN_TOKEN_TTL = "15m"
# The kubelet's systemd unit and kubeadm's drop-in for it: (operation name, template, destination).
KUBELET_UNIT_FILES = [
    ("kubelet unit (systemd)", "kubelet.service", "/etc/systemd/system/kubelet.service"),
    ("kubelet drop-in for kubeadm", "10-kubeadm.conf", "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"),
]
JOIN_CONFIG = "/etc/kubernetes/kubeadm-join.yaml"
# kubeadm writes admin.conf early in init and leaves everything in place when a later step fails: the guard
# (admin.conf present) would then skip init on the rerun and keep a broken control plane. A failed init is
# rolled back at once, so the rerun starts over.
INIT_COMMAND = (
    f"kubeadm init --config {KUBEADM_CONFIG} || {{ rc=$?; "
    'echo "kubeadm init failed (exit $rc); rolled back with kubeadm reset -f, so a rerun starts over; '
    'see the output above and journalctl -u kubelet -u containerd" >&2; '
    "kubeadm reset -f > /dev/null 2>&1; exit $rc; }"
)


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
        "kubeadm-config.yaml.j2",
        cluster_name=CLUSTER_NAME,
        node_name=cp.hostname,
        advertise_address=str(cp.address),
        kubernetes_version=settings.kubernetes_version,
        control_plane_endpoint=api_endpoint(settings),
        pod_cidr=str(settings.pod_cidr),
        service_cidr=str(settings.service_cidr),
        cert_sans=cert_sans(settings),
        fail_cgroup_v1=settings.kubelet_fail_cgroup_v1,
        eviction_hard=settings.kubelet_eviction_hard,
        kube_proxy_mode=settings.kube_proxy_mode,
        ignore_preflight_errors=settings.kubeadm_ignore_preflight_errors,
        timeouts=settings.kubeadm_timeouts,
        image_repository=image_repository(settings.images["kube-apiserver"]["ref"]).rsplit("/", 1)[0],
        etcd_tag=Reference.parse(settings.images["etcd"]["ref"]).tag,
        coredns_tag=Reference.parse(settings.images["coredns"]["ref"]).tag,
    )


def join_config(settings: Settings, node: Node, token: str, ca_cert_hash: str) -> str:
    return render(
        "kubeadm-join.yaml.j2",
        node_name=node.hostname,
        node_address=str(node.address),
        control_plane_endpoint=api_endpoint(settings),
        token=token,
        ca_cert_hash=ca_cert_hash,
        ignore_preflight_errors=settings.kubeadm_ignore_preflight_errors,
        timeouts=settings.kubeadm_timeouts,
    )


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's discovery hash: sha256 of the CA's SubjectPublicKeyInfo (DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public_key = x509.load_pem_x509_certificate(ca_pem).public_key()
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def image_source_checks(settings: Settings) -> dict[str, str]:
    """Shell tests telling whether kubeadm can get the control-plane images on this host from upstream."""
    return {
        "preloaded": f"/usr/local/bin/ctr -n k8s.io images ls -q 2>/dev/null "
        f"| grep -q 'kube-apiserver:v{settings.kubernetes_version}$'",
        # A name lookup only: where there is no DNS this fails at once and sends nothing anywhere.
        "resolvable": "getent hosts registry.k8s.io >/dev/null",
    }


def images_unavailable_reason(settings: Settings, checks: dict[str, bool]) -> str | None:
    if checks.get("preloaded") or checks.get("resolvable") or "registry.k8s.io" in settings.image_registry_mirrors:
        return None
    return (
        f"the control-plane images ({', '.join(KUBEADM_IMAGES)} for v{settings.kubernetes_version}) "
        "cannot come from anywhere: registry.k8s.io does not resolve, no mirror is configured, and none is "
        "preloaded in containerd. Fix: give the nodes DNS and internet, or set image_mirror_project and copy "
        "the catalog into the private registry (python3 -m tools.images copy; docs/artifacts.md)"
    )


def mirror_blocker(settings: Settings, state: LocalState) -> str | None:
    """With image_mirror_project: every image the cluster needs must be in the private registry at its pinned
    digest before init (asked from this machine, once per run)."""
    try:
        missing = images.missing_from_mirror(settings, state)
    except images.RegistryError as exc:
        return f"the private registry cannot be checked: {exc}"
    if not missing:
        return None
    return (
        f"the private registry lacks {len(missing)} image(s) the cluster needs: {'; '.join(missing)}. Fix: copy "
        "the catalog (python3 -m tools.images copy INVENTORY; docs/artifacts.md), then rerun"
    )


# ------------------------------------------------------------------------------------------ stages


@stage("Phase 2: kubeadm, kubelet, kubectl installed")
def install(settings: Settings) -> list:
    ensure_packages(NODE_PACKAGES)
    changed = [
        artifacts.fetch(settings, name, f"/usr/local/bin/{name}", mode="755")
        for name in ("kubeadm", "kubelet", "kubectl")
    ]
    for name, template, dest in KUBELET_UNIT_FILES:
        changed.append(
            files.put(name=name, src=StringIO(render(template)), dest=dest, mode="644", create_remote_dir=True)
        )
    return changed


@stage("Phase 2: kubelet enabled")
def enable_kubelet(changed: list) -> None:
    # Enabled, not started: kubeadm starts it at init or join, and until then it would only crash-loop.
    # A changed binary or unit: reload systemd, and restart a kubelet that already serves a cluster.
    restart = server.shell(
        name="kubelet reloaded (its binary or unit changed)",
        commands=[f"systemctl daemon-reload && if [ -e {KUBELET_CONF} ]; then systemctl restart kubelet; fi"],
        _if=follow_up.needed("kubelet-restart", changed),
    )
    follow_up.done("kubelet-restart", restart)
    systemd.service(name="kubelet enabled (kubeadm starts it)", service="kubelet", enabled=True, running=None)


@stage("Phase 2: kubeadm configuration")
def configure_control_plane(settings: Settings) -> None:
    files.put(
        name=f"kubeadm configuration ({KUBEADM_CONFIG})",
        src=StringIO(kubeadm_config(settings)),
        dest=KUBEADM_CONFIG,
        mode="600",
        create_remote_dir=True,
    )


def cluster_blocker(settings: Settings, state: LocalState, control_plane: Any) -> str | None:
    """Why no cluster can exist after this run (None: it exists already, or init will make it).

    Read from the control plane's facts, so every host of the run agrees (workers skip their join too)."""
    if snapshot(File, control_plane, path=ADMIN_CONF):
        return None
    if settings.image_mirror_project:
        return run_scoped("mirror-blocker", lambda: mirror_blocker(settings, state))
    return images_unavailable_reason(
        settings, snapshot(ShellChecks, control_plane, checks=image_source_checks(settings))
    )


@stage("Phase 2: kubeadm init")
def init_control_plane(settings: Settings, state: LocalState) -> bool:
    """Returns whether the cluster exists (or will, once this run's init ran)."""
    if snapshot(File, path=ADMIN_CONF):
        return True  # initialised before: kubeadm init must never run twice
    reason = cluster_blocker(settings, state, host)
    if reason:
        announce_once("kubeadm", f"    kubeadm init and join skipped: {reason}")
        return False
    server.shell(
        name="kubeadm init (takes a few minutes: pulls images, starts the control plane)",
        commands=[INIT_COMMAND],
    )
    return True


@stage("Phase 2: admin kubeconfig")
def fetch_admin_kubeconfig(state: LocalState) -> None:
    local = state.kubeconfig
    if not local.exists():
        # Created empty with 0600 first: files.get then writes into it and the mode stays.
        state.write_private(local, b"")
    files.get(
        name=f"Admin kubeconfig -> {local} (context kubernetes-admin@{CLUSTER_NAME})", src=ADMIN_CONF, dest=str(local)
    )


# ---- join: the control plane makes one short-lived token at run time; workers read it at run time


@dataclass
class JoinTicket:
    token: str
    ca_cert_hash: str


def _tickets() -> dict[str, JoinTicket]:
    return run_scoped("join", dict)


def _create_join_ticket(settings: Settings, pending_workers: list[str]) -> None:
    # A worker without kubelet.conf is a new or rebuilt machine: a Node object left from its earlier life would
    # make kubeadm join refuse the name (while Ready) or keep stale state, so it goes first.
    stale = " ".join(settings.node(name).hostname for name in pending_workers)
    ok, _ = host.run_shell_command(
        f"kubectl --kubeconfig {ADMIN_CONF} delete node --ignore-not-found --wait=false {stale}",
        print_output=False,
        print_input=False,
    )
    if not ok:
        raise RuntimeError(
            f"removing the Node objects of {stale} failed on {host.name}: check "
            f"`kubectl --kubeconfig {ADMIN_CONF} get nodes` there"
        )
    ok, output = host.run_shell_command(
        f"kubeadm token create --ttl {JOIN_TOKEN_TTL}", print_output=False, print_input=False
    )
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
        raise RuntimeError(
            f"{host.name} cannot join: the control plane made no join token in this run "
            "(did its part of phase 2 fail? see the output above)"
        )
    config = join_config(settings, node, ticket.token, ticket.ca_cert_hash)
    # The token lives only in this file (0600 from its first byte, removed after the join), never on a
    # command line or in the output.
    put_private_file(config, JOIN_CONFIG)
    ok, output = host.run_shell_command(
        f"kubeadm join --config {JOIN_CONFIG}; rc=$?; rm -f {JOIN_CONFIG}; exit $rc",
        print_output=False,
        print_input=False,
    )
    if not ok:
        tail = "\n".join(output.stderr.splitlines()[-5:])
        raise RuntimeError(
            f"kubeadm join failed on {host.name}:\n{tail}\ncheck that {api_endpoint(settings)} "
            "is reachable from it and that the clocks agree (chronyc tracking)"
        )


def workers_to_join(targets: list[Any]) -> list[str]:
    return sorted(t.name for t in targets if snapshot(File, t, path=KUBELET_CONF) is None)


@stage("Phase 2: join token")
def create_join_ticket(settings: Settings, pending_workers: list[str]) -> None:
    if pending_workers:
        python.call(
            name=f"Join token for {', '.join(pending_workers)} (masked)",
            function=_create_join_ticket,
            settings=settings,
            pending_workers=pending_workers,
        )


@stage("Phase 2: kubeadm join")
def join_worker(settings: Settings, node: Node) -> None:
    if snapshot(File, path=KUBELET_CONF):
        return  # joined before: left alone
    python.call(name=f"kubeadm join {node.hostname} (token masked)", function=_join, settings=settings, node=node)
