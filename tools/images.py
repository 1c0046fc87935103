#!/usr/bin/env python3
"""Container images: the lab's, built from source under their upstream names, and copies of the image
catalog (`images` in group_data) into the private registry for air-gapped nodes.

    .venv/bin/python -m tools.images build                  build the lab's images (cached), write their lock
    .venv/bin/python -m tools.images copy INVENTORY         copy the catalog from upstream into the inventory's
                                                            private registry, verified by digest (needs internet)

`build` makes an OCI image layout per catalog entry under ~/.cache/gitops-lab/images: programs built through
the Go module proxy (kubeadm's images from tools/kube/go.mod; CoreDNS; Argo CD; the Sealed Secrets
controller; Cilium and local-path-provisioner from their pinned module zips), pause compiled from the
Kubernetes module's C source, and Debian root filesystems (debootstrap) where an image needs system tools
(kube-proxy: iptables, nftables, conntrack; Cilium's agent: clang/LLVM 19, iproute2, iptables, bpftool;
busybox: Debian's busybox-static). Each image carries exactly the
release its tag names; a build from source cannot have upstream's digest, so `build` writes the lab's own
images lock (the format of group_data/images.lock.json) for inventories/sandbox.py. Layers are reproducible
(fixed owners and times), and every image is rebuilt only when what goes into it changes.

`copy` and the lab tool push with skopeo (Debian's), `--preserve-digests`, and check afterwards that the
registry serves each image at the digest of the lock.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# pyinfra's CLI patches the standard library for gevent when imported: before anything imports ssl.
import pyinfra_cli  # noqa: F401

from tasks import gitlab_api, inventory
from tasks.images import Reference, RegistryClient, RegistryError, mirror_repository
from tasks.settings import Settings, load_settings
from tasks.state import LocalState
from tools.buildlock import build_lock, write_atomically
from tools.gobuild import CACHE, ToolUnavailable, _go, _run, go_env, go_tool, kube_build, source_build
from tools.lab.constants import DEBIAN_MIRROR

REPO = Path(__file__).resolve().parents[1]
IMAGES_DIR = CACHE / "images"
LOCK_FILE = IMAGES_DIR / "images.lock.json"
LAYOUTS = IMAGES_DIR / "layouts"
# The Debian release the lab's root filesystems come from: trixie has clang-19 and busybox 1.37.0.
ROOTFS_SUITE = "trixie"
# File capabilities, as the security.capability xattr (VFS_CAP_REVISION_2) a pax header carries in a layer.
CAP_NET_BIND_SERVICE = bytes.fromhex("01000002" + "00040000" + "00000000" * 3)
TIMES: dict[str, float] = {}


# ------------------------------------------------------------------------------------------ recipes


@dataclass(frozen=True)
class Recipe:
    """What one image is made of. `files` gives each file's place in the image and where to take it from."""

    files: Callable[[], dict[str, Path]]
    rootfs: str = ""  # a ROOTFS recipe for the image's first layer ("" = none: the programs alone)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    capabilities: dict[str, bytes] = field(default_factory=dict)  # path in image -> security.capability
    links: dict[str, str] = field(default_factory=dict)  # path in image -> symlink target


PATH = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def _kube(name: str) -> Callable[[], dict[str, Path]]:
    return lambda: {f"usr/local/bin/{name}": kube_build([name])[name]}


def _static_binary(build: str, binary: str, user: str = "", at: str = "", **recipe: Any) -> Recipe:
    """A static binary (a source build's, or a Go tool's where `build` is "") alone in the image, at /<binary>
    unless `at` says where, as its entrypoint: what a distroless/static or busybox image holds of it."""
    path = at or binary

    def files() -> dict[str, Path]:
        return {path: source_build(build)[binary] if build else go_tool(binary)}

    return Recipe(files, entrypoint=(f"/{path}",), user=user, env=PATH, **recipe)


def _pause() -> dict[str, Path]:
    """pause from the Kubernetes module's C source, static, stamped like the release build."""
    module = json.loads(_run([_go(), "mod", "download", "-json", "k8s.io/kubernetes@v1.37.2"], go_env()))["Dir"]
    out = IMAGES_DIR / "build" / "pause-3.10.2"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        _run(
            [
                "gcc",
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                "-DVERSION=v3.10.2-0",
                "-o",
                str(out),
                f"{module}/build/pause/linux/pause.c",
            ],
            dict(os.environ),
        )
    return {"pause": out}


def _cilium_agent() -> dict[str, Path]:
    binaries = source_build("cilium")
    source = CACHE / "src" / "cilium-v1.20.2"  # the tree the build used: scripts and the BPF sources
    files = {f"usr/bin/{name}": path for name, path in binaries.items() if name != "cilium-cni"}
    files["opt/cni/bin/cilium-cni"] = binaries["cilium-cni"]
    files["init-container.sh"] = source / "images/cilium/init-container.sh"
    files["install-plugin.sh"] = source / "plugins/cilium-cni/install-plugin.sh"
    for path in sorted((source / "bpf").rglob("*")):
        if path.is_file() and path.suffix in (".c", ".h"):
            files[f"var/lib/cilium/bpf/{path.relative_to(source / 'bpf')}"] = path
    return files


ARGOCD_SRC = CACHE / "src" / "argocd-v3.6.1"  # the tree source_build("argocd") built from: its scripts
# The names Argo CD's multi-call binary answers to (its Dockerfile links each to /usr/local/bin/argocd).
ARGOCD_COMMANDS = (
    "argocd-server",
    "argocd-repo-server",
    "argocd-cmp-server",
    "argocd-application-controller",
    "argocd-dex",
    "argocd-notifications",
    "argocd-applicationset-controller",
    "argocd-k8s-auth",
    "argocd-commit-server",
)
ARGOCD_UID = 999


def _argocd() -> dict[str, Path]:
    """Argo CD's image as its Dockerfile lays it out: the binary, the repo-server's helm and kustomize (at the
    versions Argo CD 3.6.1 ships), and its entrypoint and git/gpg wrapper scripts. Without git-lfs (not served
    by the module proxy; the lab's repositories use no LFS)."""
    files = {"usr/local/bin/argocd": source_build("argocd")["argocd"]}
    files["usr/local/bin/helm"] = go_tool("helm")
    files["usr/local/bin/kustomize"] = go_tool("kustomize")
    for script in ("entrypoint.sh", "hack/gpg-wrapper.sh", "hack/git-verify-wrapper.sh"):
        files[f"usr/local/bin/{Path(script).name}"] = ARGOCD_SRC / script
    return files


def _argocd_base(root: Path) -> None:
    """The argocd user (999, group 0 may write its home) and the config folders its Dockerfile makes."""
    with (root / "etc/passwd").open("a") as passwd:
        passwd.write(f"argocd:x:{ARGOCD_UID}:{ARGOCD_UID}::/home/argocd:/bin/sh\n")
    with (root / "etc/group").open("a") as group:
        group.write(f"argocd:x:{ARGOCD_UID}:\n")
    for folder in ("home/argocd", "app/config/ssh", "app/config/tls", "app/config/gpg/source", "app/config/gpg/keys"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "app/config/ssh/ssh_known_hosts").touch()
    (root / "etc/ssh/ssh_known_hosts").unlink(missing_ok=True)
    (root / "etc/ssh/ssh_known_hosts").symlink_to("/app/config/ssh/ssh_known_hosts")
    (root / "home/argocd").chmod(0o775)
    (root / "app/config/gpg/keys").chmod(0o700)


# Debian root filesystems: packages on top of debootstrap's minbase, and files to drop afterwards.
ROOTFS = {
    "kube-proxy": ["iptables", "nftables", "conntrack", "ipset", "kmod"],
    "cilium": [
        "iptables",
        "nftables",
        "ipset",
        "iproute2",
        "kmod",
        "bpftool",
        "clang-19",
        "llvm-19",
        "ca-certificates",
        "bash-completion",
    ],
    "busybox": ["busybox-static"],
    # Argo CD's base: what its Dockerfile installs (connect-proxy aside: no proxy here).
    "argocd": ["git", "tini", "ca-certificates", "gpg", "gpg-agent", "tzdata", "openssh-client"],
    # Debian's Redis (8.0.2 in trixie), for Argo CD's cache: the 8.10.1 its install.yaml names cannot be built
    # here, so the lab names this one by its own release (image_overrides in inventories/sandbox.py).
    "redis": ["redis-server"],
    # Online Boutique's Node services (tools/boutique_images.py): Debian's Node.js where upstream's alpine has its
    # own; the programs and their node_modules come in a layer of their own.
    "nodejs": ["nodejs"],
    # ... and its Python services: Debian's Python 3 where upstream's alpine has its own, with pip, which
    # installs each service's requirements (tools/boutique_images.py).
    "python": ["python3", "python3-pip", "python-is-python3"],
    # ... and its Java adservice: Debian's OpenJDK 25 runtime, the major of upstream's (Temurin 25 JRE).
    "java": ["openjdk-25-jre-headless"],
}
# Changes a root filesystem gets after debootstrap, and the owners (uid, gid) that differ from root's.
ROOTFS_CHANGES: dict[str, Callable[[Path], None]] = {"argocd": _argocd_base}
ROOTFS_OWNERS = {"argocd": {"home/argocd": (ARGOCD_UID, 0), "app/config/gpg/keys": (ARGOCD_UID, 0)}}
# Bump with a change to a function of ROOTFS_CHANGES, so its layer is made again.
ROOTFS_REVISION = {"argocd": 1}

RECIPES: dict[str, Recipe] = {
    "kube-apiserver": Recipe(_kube("kube-apiserver"), env=PATH),
    "kube-controller-manager": Recipe(_kube("kube-controller-manager"), env=PATH),
    "kube-scheduler": Recipe(_kube("kube-scheduler"), env=PATH),
    "kube-proxy": Recipe(_kube("kube-proxy"), rootfs="kube-proxy", env=PATH),
    "etcd": Recipe(lambda: {"usr/local/bin/etcd": kube_build(["etcd"])["etcd"]}, env=PATH),
    "coredns": Recipe(
        lambda: {"coredns": go_tool("coredns")},
        entrypoint=("/coredns",),
        user="65532:65532",
        capabilities={"coredns": CAP_NET_BIND_SERVICE},
    ),
    "pause": Recipe(_pause, entrypoint=("/pause",), user="65535:65535"),
    "cilium": Recipe(
        _cilium_agent,
        rootfs="cilium",
        cmd=("/usr/bin/cilium-dbg",),
        workdir="/home/cilium",
        env={**PATH, "INITSYSTEM": "SYSTEMD", "HUBBLE_SERVER": "unix:///var/run/cilium/hubble.sock"},
    ),
    "cilium-operator": Recipe(
        lambda: {"usr/bin/cilium-operator-generic": source_build("cilium-operator")["cilium-operator-generic"]},
        env=PATH,
    ),
    "local-path-provisioner": Recipe(
        lambda: {"usr/bin/local-path-provisioner": source_build("local-path-provisioner")["local-path-provisioner"]},
        env=PATH,
    ),
    "busybox": Recipe(lambda: {}, rootfs="busybox", cmd=("sh",), env=PATH),
    "argocd": Recipe(
        _argocd,
        rootfs="argocd",
        entrypoint=("/usr/bin/tini", "--"),
        user=str(ARGOCD_UID),
        workdir="/home/argocd",
        env={**PATH, "USER": "argocd", "GRPC_ENABLE_TXT_SERVICE_CONFIG": "false"},
        links={
            **{f"usr/local/bin/{name}": "/usr/local/bin/argocd" for name in ARGOCD_COMMANDS},
            "usr/local/bin/uid_entrypoint.sh": "/usr/local/bin/entrypoint.sh",
        },
    ),
    # Its Dockerfile: the static controller alone on distroless/static, as user 1001.
    "sealed-secrets-controller": Recipe(
        lambda: {"usr/local/bin/controller": source_build("sealed-secrets-controller")["controller"]},
        entrypoint=("controller",),
        user="1001",
        env=PATH,
    ),
    # Its Dockerfile: the static binary alone on distroless/static, as nobody.
    "metrics-server": _static_binary("metrics-server", "metrics-server", user="65534"),
    # Their Dockerfiles: each static binary alone on distroless/static. The chart runs the controller as
    # 65534 and the speaker as root with NET_RAW (it answers ARP for the VIPs on the node's network).
    "metallb-controller": _static_binary("metallb", "controller", user="65534"),
    "metallb-speaker": _static_binary("metallb", "speaker"),
    # kube-prometheus-stack's: their Dockerfiles put each static binary on busybox (distroless for
    # kube-state-metrics), as nobody. The operator names /bin/prometheus-config-reloader as the command.
    "prometheus-operator": _static_binary("prometheus-operator", "operator", user="65534", at="bin/operator"),
    "prometheus-config-reloader": _static_binary(
        "prometheus-operator", "prometheus-config-reloader", user="65534", at="bin/prometheus-config-reloader"
    ),
    "prometheus": _static_binary(
        "prometheus",
        "prometheus",
        user="65534",
        at="bin/prometheus",
        workdir="/prometheus",
        cmd=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"),
    ),
    "alertmanager": _static_binary(
        "alertmanager",
        "alertmanager",
        user="65534",
        at="bin/alertmanager",
        workdir="/alertmanager",
        cmd=("--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"),
    ),
    "node-exporter": _static_binary("", "node_exporter", user="65534", at="bin/node_exporter"),  # distroless
    "kube-state-metrics": _static_binary(
        "kube-state-metrics", "kube-state-metrics", user="65534", cmd=("--port=8080", "--telemetry-port=8081")
    ),
    # install.yaml passes redis-server's arguments only (`--save "" --appendonly no --requirepass ...`).
    "argocd-redis": Recipe(lambda: {}, rootfs="redis", entrypoint=("/usr/bin/redis-server",), user="999", env=PATH),
}


# ------------------------------------------------------------------------------------------ layers


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


@dataclass(frozen=True)
class Layer:
    blob: Path  # the gzipped tar, named by its digest
    digest: str  # sha256 of the gzipped tar
    diff_id: str  # sha256 of the uncompressed tar
    size: int


def _store_layer(tar_bytes: bytes) -> Layer:
    compressed = _gzip(tar_bytes)
    digest = "sha256:" + hashlib.sha256(compressed).hexdigest()
    blob = IMAGES_DIR / "blobs" / digest.split(":")[1]
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        write_atomically(blob, compressed)
    return Layer(blob, digest, "sha256:" + hashlib.sha256(tar_bytes).hexdigest(), len(compressed))


def files_layer(files: dict[str, Path], capabilities: dict[str, bytes], links: dict[str, str] | None = None) -> Layer:
    """A layer of single files (programs 0755, the rest 0644), with their parent folders, file capabilities
    and symlinks."""
    links = links or {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        folders = sorted({str(parent) for p in [*files, *links] for parent in Path(p).parents if str(parent) != "."})
        for folder in folders:
            info = _normalise(tarfile.TarInfo(folder + "/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, source in sorted(files.items()):
            data = source.read_bytes()
            info = _normalise(tarfile.TarInfo(name))
            executable = os.access(source, os.X_OK) or name.endswith(".sh")  # scripts lose their mode in zips
            info.size, info.mode = len(data), 0o755 if executable else 0o644
            if name in capabilities:
                info.pax_headers = {
                    "SCHILY.xattr.security.capability": capabilities[name].decode("utf-8", "surrogateescape")
                }
            tar.addfile(info, io.BytesIO(data))
        for name, target in sorted(links.items()):
            info = _normalise(tarfile.TarInfo(name))
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)
    return _store_layer(buffer.getvalue())


def rootfs_layer(name: str) -> Layer:
    """The Debian root filesystem of ROOTFS[name] as one layer, built once per recipe."""
    inputs = (ROOTFS_SUITE, DEBIAN_MIRROR, ROOTFS[name], ROOTFS_OWNERS.get(name), ROOTFS_REVISION.get(name))
    recipe = hashlib.sha256(repr(inputs).encode()).hexdigest()[:12]
    record = IMAGES_DIR / "rootfs" / f"{name}-{recipe}.json"
    with build_lock(f"rootfs-{name}-{recipe}"):
        if record.exists():
            layer = json.loads(record.read_text())
            if Path(layer["blob"]).exists():
                return Layer(Path(layer["blob"]), layer["digest"], layer["diff_id"], layer["size"])
        return _build_rootfs_layer(name, record)


def _build_rootfs_layer(name: str, record: Path) -> Layer:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        root = Path(tmp) / "rootfs"
        _debootstrap(root, ROOTFS[name])
        if name == "cilium":  # the agent calls clang and llc by their plain names
            for tool in ("clang", "llc"):
                (root / "usr/local/bin" / tool).symlink_to(f"/usr/bin/{tool}-19")
        if name == "busybox":  # the image is busybox alone, with a link per applet
            root = _busybox_tree(root, Path(tmp) / "busybox")
        if name in ROOTFS_CHANGES:
            ROOTFS_CHANGES[name](root)
        layer = _store_layer(_tar_tree(root, ROOTFS_OWNERS.get(name, {})))
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps({"blob": str(layer.blob), "digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size})
    )
    TIMES[f"rootfs {name} ({ROOTFS_SUITE})"] = time.monotonic() - started
    return layer


def _debootstrap(root: Path, packages: list[str]) -> None:
    proc = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", ROOTFS_SUITE, str(root), DEBIAN_MIRROR],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise ToolUnavailable(
            f"debootstrap {ROOTFS_SUITE} failed (mirror {DEBIAN_MIRROR}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    for junk in (
        "var/cache/apt",
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "var/log",
        "debootstrap",
    ):
        shutil.rmtree(root / junk, ignore_errors=True)


def _busybox_tree(root: Path, dest: Path) -> Path:
    (dest / "bin").mkdir(parents=True)
    shutil.copy2(root / "usr/bin/busybox", dest / "bin/busybox")
    applets = subprocess.run([str(dest / "bin/busybox"), "--list"], capture_output=True, text=True).stdout.split()
    for applet in applets:
        if applet != "busybox":
            (dest / "bin" / applet).symlink_to("busybox")
    for folder in ("tmp", "etc", "root", "var"):
        (dest / folder).mkdir()
    (dest / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (dest / "etc/group").write_text("root:x:0:\nnobody:x:65534:\n")
    return dest


def _tar_tree(root: Path, owners: dict[str, tuple[int, int]] | None = None) -> bytes:
    """A tar of `root` in sorted order, owners (root, but for `owners`: path -> uid, gid) and times fixed; the
    contents of dev, proc, sys, run left out. Links to folders (merged /usr: bin -> usr/bin) are stored as
    links, not walked into."""
    owners = owners or {}

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info = _normalise(info)
        if info.name in owners:
            info.uid, info.gid = owners[info.name]
            info.uname = info.gname = ""
        return info

    buffer = io.BytesIO()
    skip = {"dev", "proc", "sys", "run"}
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder, dirs, names in os.walk(root):
            rel = Path(folder).relative_to(root)
            if rel != Path("."):
                tar.add(folder, arcname=str(rel), recursive=False, filter=owned)
            if rel.parts and rel.parts[0] in skip:
                dirs[:] = []
                continue
            links = [d for d in dirs if os.path.islink(os.path.join(folder, d))]
            dirs[:] = sorted(d for d in dirs if d not in links)
            for name in sorted(names + links):
                tar.add(os.path.join(folder, name), arcname=str(rel / name), recursive=False, filter=owned)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ images


def _blob(data: bytes) -> tuple[str, Path]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = IMAGES_DIR / "blobs" / digest.split(":")[1]
    if not path.exists():
        write_atomically(path, data)
    return digest, path


def build_image(name: str, ref: str, recipe: Recipe | None = None) -> tuple[Path, str]:
    """(OCI layout folder, manifest digest) of catalog image `name` (or of `recipe`, named `name`), built or
    reused."""
    with build_lock(f"image-{name}"):
        return _build_image(name, ref, recipe or RECIPES[name])


def _build_image(name: str, ref: str, recipe: Recipe) -> tuple[Path, str]:
    layers = [rootfs_layer(recipe.rootfs)] if recipe.rootfs else []
    files = recipe.files()
    if files or recipe.links:
        layers.append(files_layer(files, recipe.capabilities, recipe.links))
    config: dict = {"Env": [f"{k}={v}" for k, v in recipe.env.items()]}
    for key, value in (
        ("Entrypoint", list(recipe.entrypoint)),
        ("Cmd", list(recipe.cmd)),
        ("User", recipe.user),
        ("WorkingDir", recipe.workdir),
    ):
        if value:
            config[key] = value
    image_config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
            "history": [{"created_by": f"gitops-lab tools/images.py: {name}"}],
        },
        sort_keys=True,
    ).encode()
    config_digest, _ = _blob(image_config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(image_config),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.digest, "size": layer.size}
                for layer in layers
            ],
        },
        sort_keys=True,
    ).encode()
    manifest_digest, _ = _blob(manifest)
    layout = LAYOUTS / name
    tag = Reference.parse(ref).tag
    _write_layout(
        layout,
        manifest_digest,
        len(manifest),
        tag,
        [config_digest, manifest_digest, *(layer.digest for layer in layers)],
    )
    return layout, manifest_digest


def image_size(name: str) -> int:
    """The compressed size of a built image (its layers and config, as a registry stores them), in bytes."""
    layout = LAYOUTS / name
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    manifest = json.loads((layout / "blobs" / "sha256" / entry["digest"].split(":")[1]).read_bytes())
    return int(manifest["config"]["size"] + sum(layer["size"] for layer in manifest["layers"]))


def _write_layout(layout: Path, manifest_digest: str, size: int, tag: str, blobs: list[str]) -> None:
    """An OCI image layout (index.json, oci-layout, blobs/) naming the manifest by its tag."""
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    if (layout / "index.json").exists() and json.loads((layout / "index.json").read_text()) == index:
        return
    shutil.rmtree(layout, ignore_errors=True)
    (layout / "blobs" / "sha256").mkdir(parents=True)
    for digest in blobs:
        os.link(IMAGES_DIR / "blobs" / digest.split(":")[1], layout / "blobs" / "sha256" / digest.split(":")[1])
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps(index))


def build_all(catalog: dict[str, str]) -> dict[str, str]:
    """Build every image of `catalog` (name -> ref) that has a recipe; write and return the lock (ref -> digest)."""
    lock = {}
    for name, ref in catalog.items():
        started = time.monotonic()
        _, digest = build_image(name, ref)
        lock[ref] = digest
        TIMES.setdefault(f"image {name}", time.monotonic() - started)
    write_atomically(LOCK_FILE, json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return lock


# ------------------------------------------------------------------------------------------ copying


@dataclass(frozen=True)
class Destination:
    """A registry to copy into: its address (host[:port], reached over TLS), credentials and CA."""

    address: str
    user: str
    password: str
    ca_file: Path

    def client(self) -> RegistryClient:
        return RegistryClient(f"https://{self.address}", self.user, self.password, ca_file=str(self.ca_file))


def copy_image(source: str, destination: Destination, repository: str, tag: str, digest: str) -> bool:
    """skopeo copy of `source` (a skopeo transport reference) to repository:tag, unless the registry serves
    `digest` there already. Afterwards the registry must serve exactly `digest`. Returns whether it copied."""
    client = destination.client()
    if client.manifest_digest(repository, tag) == digest:
        return False
    with tempfile.TemporaryDirectory() as certs:
        shutil.copyfile(destination.ca_file, Path(certs) / "ca.crt")
        proc = subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--all",
                "--preserve-digests",
                "--dest-cert-dir",
                certs,
                "--dest-creds",
                f"{destination.user}:{destination.password}",
                source,
                f"docker://{destination.address}/{repository}:{tag}",
            ],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    if proc.returncode != 0:
        raise RegistryError(f"skopeo copy {source} failed: {proc.stderr.strip()[-500:]}")
    served = client.manifest_digest(repository, tag)
    if served != digest:
        raise RegistryError(f"{destination.address}/{repository}:{tag} serves {served} after the copy, not {digest}")
    return True


def copy_catalog(settings: Settings, destination: Destination, from_layouts: bool) -> list[str]:
    """Copy the needed catalog images into the mirror project; returns the refs copied. From upstream by
    digest, or (the lab) from the OCI layouts `build` made."""
    copied = []
    for name in settings.needed_images():
        image = settings.images[name]
        if not image["digest"]:
            raise RegistryError(
                f"{image['ref']} has no digest in {settings.images_lock}: pin it first "
                "(python3 tools/pin_artifacts.py --images)"
            )
        ref = Reference.parse(image["ref"])
        source = (
            f"oci:{LAYOUTS / name}:{ref.tag}"
            if from_layouts
            else f"docker://{ref.registry}/{ref.repository}@{image['digest']}"
        )
        if copy_image(source, destination, mirror_repository(settings, image["ref"]), ref.tag, image["digest"]):
            copied.append(image["ref"])
    return copied


def lab_catalog() -> dict[str, str]:
    """name -> ref of every image the sandbox inventory's cluster pulls (the lab builds exactly these)."""
    settings = load_settings(inventory.load(REPO / "inventories" / "sandbox.py"), "inventories/sandbox.py")
    return {name: settings.images[name]["ref"] for name in settings.needed_images()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("build", help="build the lab's images and write their lock")
    copy = sub.add_parser("copy", help="copy the catalog from upstream into the inventory's private registry")
    copy.add_argument("inventory", help="e.g. inventories/lab.py")
    args = parser.parse_args(argv)
    if args.action == "build":
        for ref, digest in build_all(lab_catalog()).items():
            print(f"{ref} {digest}")
        for what, seconds in TIMES.items():
            print(f"{what}: {seconds:.0f}s")
        print(f"wrote {LOCK_FILE}")
        return 0
    settings = load_settings(inventory.load(args.inventory), args.inventory)
    state = LocalState(settings.state_path)
    if not settings.image_mirror_project:
        print(
            f"{args.inventory}: image_mirror_project is empty, so the nodes pull from upstream: nothing to copy",
            file=sys.stderr,
        )
        return 2
    # The deploy's own GitLab token may push to every project of the group (its `api` scope).
    destination = Destination(str(settings.platform.address), "root", gitlab_api.deploy_api_token(state), state.ca_cert)
    try:
        copied = copy_catalog(settings, destination, from_layouts=False)
    except RegistryError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    print(f"copied {len(copied)} image(s), verified by digest: {', '.join(copied) or 'all were there already'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
