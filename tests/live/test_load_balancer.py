"""MetalLB in the lab, for real: built from source, synced by Argo CD from the lab's Helm repository, its
address pool from metallb-config. A LoadBalancer Service gets an address of the pool, and this machine reaches
it over the lab bridge: a worker's speaker answers ARP for it (L2 mode), and kube-proxy takes it to the pods.
The times go to reports/metallb-lab.json. (Traefik, the ingress in front of the VIP, cannot be built here:
docs/lab.md.)"""

from __future__ import annotations

import json
import subprocess
import time

import requests

from tests.conftest import REPO
from tests.live.conftest import pinned, wait_for
from tools.lab.constants import BRIDGE

CONTROLLER_DEADLINE_S = 300  # Argo CD syncs the chart (wave -5) and then the pool (wave -4)
ASSIGN_DEADLINE_S = 60
ANSWER_DEADLINE_S = 60

HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"
SERVER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "lb-echo"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "lb-echo"}},
        "template": {
            "metadata": {"labels": {"app": "lb-echo"}},
            "spec": {
                "nodeSelector": {"lab.gitops/role": "worker"},
                "containers": [
                    {
                        "name": "echo",
                        "image": "IMAGE",
                        "command": ["sh", "-c", HTTPD],
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 2},
                    }
                ],
            },
        },
    },
}


def lab_host_macs() -> dict[str, str]:
    """Each lab host's MAC address(es) on its own side of the veth (network namespace lab-<host>)."""
    macs = {}
    names = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    for entry in json.loads(names or "[]"):
        netns = entry["name"]
        if not netns.startswith("lab-"):
            continue
        links = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True, check=True)
        for link in json.loads(links.stdout):
            if link.get("link_type") == "ether" and link.get("address"):
                macs[link["address"]] = netns.removeprefix("lab-")
    return macs


def neighbour_mac(address: str) -> str | None:
    shown = subprocess.run(["ip", "-j", "neigh", "show", address, "dev", BRIDGE], capture_output=True, text=True)
    entries = json.loads(shown.stdout or "[]")
    return entries[0].get("lladdr") if entries else None


def test_a_load_balancer_address_of_the_pool_answers_from_this_machine_through_a_worker(cluster, namespace,
                                                                                       lab_settings):
    wait_for("MetalLB's controller (synced by Argo CD) rolled out",
             lambda: (cluster.get("apps/v1", "Deployment", "metallb-controller", "metallb-system") or {})
             .get("status", {}).get("availableReplicas"), CONTROLLER_DEADLINE_S, interval=3)
    wait_for("metallb-config's IPAddressPool (synced by Argo CD)",
             lambda: cluster.get("metallb.io/v1beta1", "IPAddressPool", "lab-pool", "metallb-system"),
             CONTROLLER_DEADLINE_S, interval=3)
    server = json.loads(json.dumps(SERVER).replace("IMAGE", pinned(lab_settings, "busybox")))
    cluster.apply(server, namespace=namespace)
    cluster.wait_rolled_out("Deployment", "lb-echo", namespace, timeout_s=180)
    pod = cluster.list_objects("v1", "Pod", namespace, "app=lb-echo")[0]["metadata"]["name"]

    # The pool's last address: its first is the ingress controller's VIP.
    vip = str(lab_settings.metallb_pool[1])
    started = time.monotonic()
    cluster.apply({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "lb-echo", "namespace": namespace,
                                "annotations": {"metallb.io/loadBalancerIPs": vip}},
                   "spec": {"type": "LoadBalancer", "selector": {"app": "lb-echo"},
                            "ports": [{"port": 80, "targetPort": 8080}]}})

    def assigned() -> str | None:
        ingress = (cluster.get("v1", "Service", "lb-echo", namespace) or {}).get("status", {}).get("loadBalancer", {})
        return next((i.get("ip") for i in ingress.get("ingress") or []), None)

    assert wait_for(f"MetalLB assigning {vip} to Service lb-echo", assigned, ASSIGN_DEADLINE_S) == vip
    assigned_s = time.monotonic() - started

    def answer() -> str | None:
        try:
            return requests.get(f"http://{vip}/", timeout=2).text.strip()
        except requests.RequestException:
            return None

    body = wait_for(f"http://{vip}/ answering from this machine over {BRIDGE}", answer, ANSWER_DEADLINE_S)
    answered_s = time.monotonic() - started
    assert body == pod

    # Who answered ARP for the VIP: a worker (kubeadm labels the control plane to be left out of load balancers).
    mac = neighbour_mac(vip)
    announcer = lab_host_macs().get(mac or "")
    assert announcer and announcer.startswith("k8s-worker"), (mac, lab_host_macs())

    out = REPO / "reports" / "metallb-lab.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"vip": vip, "announced_by": announcer, "assigned_s": round(assigned_s, 1),
                               "first_answer_s": round(answered_s, 1)}, indent=1) + "\n")
    print(f"MetalLB: {vip} assigned after {assigned_s:.1f}s, answered through {announcer} after {answered_s:.1f}s")
    cluster.delete("v1", "Service", "lb-echo", namespace)

