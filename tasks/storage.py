"""The default StorageClass, by the setting `storage_class`.

`local-path` (the default) needs nothing on the hosts: local-path-provisioner keeps volumes under
/opt/local-path-provisioner on the node a pod runs on. `nfs`: in phase 2 the platform host exports
NFS_EXPORT to the node network and every node gets the NFS client; then the nfs-subdir-external-provisioner
chart points at that export (volumes survive a pod moving nodes). The provisioner is installed by the
post-bootstrap step (`install`), from its pinned artifact, with its class marked as the cluster default.
"""

from __future__ import annotations

import yaml
from pyinfra.operations import files, server, systemd

from tasks import follow_up
from tasks.helm_charts import render_chart
from tasks.kube_client import Applied, Cluster, load_manifests
from tasks.packages import ensure_packages
from tasks.phases import stage
from tasks.settings import Settings

NFS_EXPORT = "/srv/nfs/kubernetes"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def exports_line(settings: Settings) -> str:
    # no_root_squash: the provisioner creates per-volume folders as root; only the node network may mount.
    return f"{NFS_EXPORT} {settings.node_network}(rw,sync,no_subtree_check,no_root_squash)"


@stage("Phase 2: NFS server for the nfs StorageClass")
def nfs_server(settings: Settings) -> None:
    ensure_packages(["nfs-kernel-server"])
    files.directory(name=f"Export directory {NFS_EXPORT}", path=NFS_EXPORT, mode="755", present=True)
    exports = files.line(
        name="/etc/exports: the Kubernetes export, node network only",
        path="/etc/exports",
        line=f"^{NFS_EXPORT} ",
        replace=exports_line(settings),
    )
    systemd.service(name="nfs-server running and enabled", service="nfs-server", running=True, enabled=True)
    published = server.shell(
        name="exportfs -ra (publish the changed exports)",
        commands=["exportfs -ra"],
        _if=follow_up.needed("nfs-exports", [exports]),
    )
    follow_up.done("nfs-exports", published)


@stage("Phase 2: NFS client on the nodes")
def nfs_client() -> None:
    ensure_packages(["nfs-common"])


def pinned(image: dict[str, str]) -> str:
    """A catalog image as a pod names it: by digest where the lock pins one."""
    return f"{image['ref']}@{image['digest']}" if image["digest"] else image["ref"]


def storage_objects(settings: Settings, source: bytes) -> tuple[str, list[dict]]:
    """(namespace, objects) of the chosen provisioner, its StorageClass marked as the cluster default. The
    local-path manifest's images (the provisioner, and its helper pods' untagged busybox) become the catalog's."""
    if settings.storage_class == "local-path":
        objects = load_manifests(source.decode())
        for obj in objects:
            if obj["kind"] == "StorageClass":
                obj["metadata"].setdefault("annotations", {})[DEFAULT_CLASS] = "true"
            elif obj["kind"] == "Deployment":
                for container in obj["spec"]["template"]["spec"]["containers"]:
                    container["image"] = pinned(settings.images["local-path-provisioner"])
            elif obj["kind"] == "ConfigMap" and "helperPod.yaml" in obj.get("data", {}):
                helper = yaml.safe_load(obj["data"]["helperPod.yaml"])
                for container in helper["spec"]["containers"]:
                    container["image"] = pinned(settings.images["busybox"])
                obj["data"]["helperPod.yaml"] = yaml.safe_dump(helper, sort_keys=False)
        return "local-path-storage", objects
    values = {
        "nfs": {"server": str(settings.platform.address), "path": NFS_EXPORT},
        "storageClass": {"name": "nfs", "defaultClass": True},
    }
    return "nfs-provisioner", render_chart(source, values, "nfs-provisioner", "nfs-provisioner")


def install(cluster: Cluster, settings: Settings, source: bytes) -> list[Applied]:
    return cluster.apply_into(*storage_objects(settings, source))
