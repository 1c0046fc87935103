"""Phase 2, storage: the default StorageClass. `storage_class = "local-path"` (the default) needs nothing on
the hosts: local-path-provisioner (installed by post-bootstrap) keeps volumes under
/opt/local-path-provisioner on the node a pod runs on. `storage_class = "nfs"`: the platform host exports
NFS_EXPORT to the node network, every node gets the NFS client, and post-bootstrap installs the
nfs-subdir-external-provisioner chart pointing at that export (volumes survive a pod moving nodes)."""

from __future__ import annotations

from pyinfra.api import deploy
from pyinfra.operations import files, server, systemd

from tasks.kube_client import load_manifests
from tasks.packages import ensure_packages
from tasks.settings import Settings

NFS_EXPORT = "/srv/nfs/kubernetes"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def exports_line(settings: Settings) -> str:
    # no_root_squash: the provisioner creates per-volume folders as root; only the node network may mount.
    return f"{NFS_EXPORT} {settings.node_network}(rw,sync,no_subtree_check,no_root_squash)"


@deploy("Phase 2: NFS server for the nfs StorageClass")
def nfs_server(settings: Settings) -> None:
    ensure_packages(["nfs-kernel-server"])
    files.directory(name=f"Export directory {NFS_EXPORT}", path=NFS_EXPORT, mode="755", present=True)
    exports = files.line(name="/etc/exports: the Kubernetes export, node network only", path="/etc/exports",
                         line=f"^{NFS_EXPORT} ", replace=exports_line(settings))
    if exports.will_change:
        server.shell(name="exportfs -ra (publish the changed exports)", commands=["exportfs -ra"])
    systemd.service(name="nfs-server running and enabled", service="nfs-server", running=True, enabled=True)


@deploy("Phase 2: NFS client on the nodes")
def nfs_client() -> None:
    ensure_packages(["nfs-common"])


def storage_objects(settings: Settings, source: bytes) -> tuple[str, list[dict]]:
    """(namespace, objects) of the chosen provisioner, its StorageClass marked as the cluster default."""
    if settings.storage_class == "local-path":
        objects = load_manifests(source.decode())
        for obj in objects:
            if obj["kind"] == "StorageClass":
                obj["metadata"].setdefault("annotations", {})[DEFAULT_CLASS] = "true"
        return "local-path-storage", objects
    from tasks.helm_charts import render_chart

    values = {"nfs": {"server": str(settings.platform.address), "path": NFS_EXPORT},
              "storageClass": {"name": "nfs", "defaultClass": True}}
    return "nfs-provisioner", render_chart(source, values, "nfs-provisioner", "nfs-provisioner")
