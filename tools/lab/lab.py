#!/usr/bin/env python3
"""The local lab: real Debian 12 hosts on this machine, for tests and trials.

    python3 -m tools.lab up       create (or keep) every host of inventories/sandbox.py and wait for SSH
    python3 -m tools.lab down     power the hosts off and remove every machine, namespace, mount and process
    python3 -m tools.lab status   one line per host
    python3 -m tools.lab ssh NAME [CMD...]
    python3 -m tools.lab recreate NAME   replace one host by a fresh machine (same name and address)
    python3 -m tools.lab cluster-info    the cluster's nodes and how to use it (after the deploy)

Each host is a systemd-nspawn machine booting systemd as PID 1 with sshd, in its own network namespace,
wired by a veth into the bridge `lab0` (198.51.100.1/24). Root filesystems are overlays on one cached
debootstrap base. apt inside the hosts goes through apt-cacher-ng on the bridge address (no NAT, no
route to anything else). State lives in $LAB_DIR (default /var/tmp/gitops-lab); `down` keeps only the
caches (base image, apt cache, SSH key).

What the lab needs only because its hosts are containers (chrony without clock control, writable cgroup
mounts for nested containers, no DNS) is baked into the base image here, never into the deploy.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import ipaddress
import json
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.buildlock import build_lock
from tools.lab import git_server, registry
from tools.lab.constants import (
    APT_PROXY_PORT,
    BRIDGE,
    BRIDGE_ADDR,
    BRIDGE_NET,
    DEBIAN_MIRROR,
    LAB_DIR,
    MIRROR_DIR,
    MIRROR_PORT,
    REPO,
    SSH_KEY,
    WORKERS_FILE,
    lab_workers,
)

# The Debian releases a lab host can run (docs/lab.md): the deploy supports both (tasks/debian.py).
RELEASES = ("bookworm", "trixie")
DEFAULT_RELEASE = "trixie"
BASE_PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "procps",
    "python3",
    "ca-certificates",
    # the platform host serves gitops-repo over SSH (tools/lab/git_server.py)
    "git",
]
NEEDED_TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "apt-cacher-ng": "apt-cacher-ng",
    "zstd": "zstd",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
}
SSH_WAIT_SECONDS = 90
MIN_FREE_GIB = 16
# A host with a running control plane and pods needs longer than a plain one to power off.
STOP_WAIT_SECONDS = 45

# Files baked into the base image. Every one is here only because lab hosts are containers.
BAKED_FILES = {
    # No DNS server is reachable from the lab. The bridge address answers DNS queries with "port
    # unreachable", so lookups of unknown names fail at once instead of waiting for a timeout; and CoreDNS,
    # which forwards to the node's resolv.conf, finds a server to name (it refuses to start with none).
    "etc/resolv.conf": f"# lab host: no DNS; names come from /etc/hosts\nnameserver {BRIDGE_ADDR}\noptions timeout:1 attempts:1\n",
    "etc/hostname": "debian\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/apt/apt.conf.d/01lab-proxy": f'Acquire::http::Proxy "http://{BRIDGE_ADDR}:{APT_PROXY_PORT}";\n',
    # Containers lack CAP_SYS_TIME (and must never get it: the clock is the machine's). chronyd -x serves
    # and measures time without setting the clock, so the deploy's chrony setup is observable here.
    "etc/systemd/system/chrony.service.d/10-lab-container.conf": (
        "[Unit]\nConditionCapability=\n\n[Service]\nExecStart=\nExecStart=!/usr/sbin/chronyd -x $DAEMON_OPTS\n"
    ),
    # Nested containers (containerd in a lab host) need the cgroup v1 controller mounts writable.
    "etc/systemd/system/lab-cgroup-rw.service": (
        "[Unit]\nDescription=Lab only: make cgroup controller mounts writable for nested containers\n"
        "DefaultDependencies=no\nBefore=containerd.service\nAfter=local-fs.target\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        'ExecStart=/bin/sh -c \'for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw "$d" '
        '|| echo "lab: cannot make $d writable" >&2; done\'\n\n'
        "[Install]\nWantedBy=multi-user.target\n"
    ),
    # The kubelet reads /dev/kmsg, which a container does not get (mknod is refused): the console stands in.
    "etc/systemd/system/lab-kmsg.service": (
        "[Unit]\nDescription=Lab only: /dev/kmsg for the kubelet\nDefaultDependencies=no\nBefore=kubelet.service\n\n"
        "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/ln -sf /dev/console /dev/kmsg\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    ),
    # /proc/sys is read-only here, and must stay so (writable, it would change this machine's own values), but
    # the kubelet sets three of them at start: small files with those values are bound over the three paths.
    "etc/systemd/system/lab-kubelet-sysctls.service": (
        "[Unit]\nDescription=Lab only: the sysctls the kubelet writes, as files\nDefaultDependencies=no\n"
        "Before=kubelet.service\nAfter=local-fs.target\n\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"
        "ExecStart=/usr/local/sbin/lab-kubelet-sysctls\n\n[Install]\nWantedBy=multi-user.target\n"
    ),
    "usr/local/sbin/lab-kubelet-sysctls": (
        "#!/bin/sh\n# Lab only (tools/lab/lab.py): each value in a file of its own, bound over its /proc/sys path.\n"
        "set -e\nmkdir -p /run/lab-sysctl\n"
        "for setting in vm/overcommit_memory=1 kernel/panic=10 kernel/panic_on_oops=1; do\n"
        '    name=${setting%%=*}\n    file=/run/lab-sysctl/$(echo "$name" | tr / .)\n'
        '    echo "${setting#*=}" > "$file"\n'
        '    mountpoint -q "/proc/sys/$name" || mount --bind "$file" "/proc/sys/$name"\ndone\n'
    ),
    # runc cannot write oom_score_adj here (this machine's bounding set lacks CAP_SYS_RESOURCE): containerd
    # keeps it within what it may set. A drop-in, through the imports line of the deploy's config.toml.
    "etc/containerd/conf.d/10-lab-container.toml": (
        "# Lab only: containers in a container (tools/lab/lab.py)\nversion = 3\n\n"
        "[plugins.'io.containerd.cri.v1.runtime']\n  restrict_oom_score_adj = true\n"
    ),
}
# Root's login shell: logs every command run over SSH (pyinfra's facts and operations, one line each) to
# COMMAND_LOG, so the benchmark and tests can count what a deploy runs on each host.
BAKED_FILES["usr/local/sbin/lab-logged-shell"] = (
    "#!/bin/bash\n# Lab only (tools/lab/lab.py): root's shell; logs each `-c` command, then runs it with bash.\n"
    'if [ "$1" = "-c" ]; then\n'
    "    command=${2//$'\\n'/\\\\n}\n"
    '    printf \'%s\\t%s\\n\' "$EPOCHREALTIME" "$command" >> /var/log/lab-commands.log\n'
    "fi\n"
    'exec -a "$0" /bin/bash "$@"\n'
)
COMMAND_LOG = "/var/log/lab-commands.log"
BAKED_LINKS = {
    f"etc/systemd/system/multi-user.target.wants/{unit}": f"/etc/systemd/system/{unit}"
    for unit in ("lab-cgroup-rw.service", "lab-kmsg.service", "lab-kubelet-sysctls.service")
}


# Every lab host shares this machine's inotify limits: /proc/sys is read-only inside, so the deploy's own values
# (tasks/foundation.py KUBERNETES_SYSCTLS) cannot take effect there. Debian's 128 instances run out at about ten
# workers (systemd, containerd and the kubelet of every host draw on them; containerd's CRI service then fails
# with "too many open files"). `up` raises them to the deploy's values, `down` puts back what it found.
INOTIFY_LIMITS = {"fs.inotify.max_user_instances": 8192, "fs.inotify.max_user_watches": 524288}
SYSCTLS_BEFORE = LAB_DIR / "sysctls-before.json"


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    role: str = ""

    @property
    def netns(self) -> str:
        return f"lab-{self.name}"

    @property
    def veth(self) -> str:  # host side; at most 15 characters
        return f"lab{self.address.rsplit('.', 1)[1]}"

    @property
    def dir(self) -> Path:
        return LAB_DIR / "hosts" / self.name

    @property
    def merged(self) -> Path:
        return self.dir / "merged"


def log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def run(cmd: list[str], check: bool = True, quiet: bool = False, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if check and proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}".rstrip())
    if not quiet and proc.returncode != 0:
        log(f"(ignored) {' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def sandbox_inventory() -> dict:
    try:
        lab_workers()  # a bad LAB_WORKERS in one line, not as the inventory's traceback
    except ValueError as exc:
        raise LabError(str(exc)) from None
    return runpy.run_path(str(REPO / "inventories" / "sandbox.py"))


def sandbox_hosts() -> list[LabHost]:
    """The machines to create: every host of inventories/sandbox.py, so the two never disagree."""
    inv = sandbox_inventory()
    hosts: dict[str, LabHost] = {}
    for group in ("platform", "control_plane", "worker"):
        for name, data in inv.get(group, []):
            address = data["address"]
            if ipaddress.ip_address(address) not in BRIDGE_NET or address == BRIDGE_ADDR:
                raise LabError(f"inventories/sandbox.py: {name} address {address} must be inside {BRIDGE_NET}, not .1")
            hosts.setdefault(name, LabHost(name, address, group))
    return list(hosts.values())


# ---------------------------------------------------------------- prerequisites, SSH key, base image


def check_prerequisites() -> None:
    missing = sorted(
        {
            pkg
            for tool, pkg in NEEDED_TOOLS.items()
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
        }
    )
    if missing:
        raise LabError(f"missing tools; install them with: apt-get install -y {' '.join(missing)}")
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, mounts, systemd-nspawn)")
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    free_gib = shutil.disk_usage(LAB_DIR).free / 2**30
    if free_gib < MIN_FREE_GIB:
        raise LabError(
            f"only {free_gib:.1f} GiB free on the filesystem of {LAB_DIR}; the lab needs {MIN_FREE_GIB} GiB "
            "(four hosts with a cluster take about 11, and each kubelet keeps 2 GiB free): free some space, or "
            "set LAB_DIR to a larger filesystem"
        )


def ensure_ssh_key() -> Path:
    key = SSH_KEY
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gitops-lab", "-f", str(key)])
    config = LAB_DIR / "ssh" / "config"
    config.write_text(
        f"Host {BRIDGE_NET.network_address.exploded.rsplit('.', 1)[0]}.*\n"
        f"  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 2\n"
    )
    return key


RELEASE_FILE = LAB_DIR / "release"


def recorded_release() -> str | None:
    """The release of the hosts `up` last booted (None: no lab was ever up)."""
    return RELEASE_FILE.read_text().strip() if RELEASE_FILE.exists() else None


def lab_release() -> str:
    """LAB_RELEASE when set; else the running hosts' release; else the default (Debian 13)."""
    wanted = os.environ.get("LAB_RELEASE", "")
    if wanted and wanted not in RELEASES:
        raise LabError(f"LAB_RELEASE={wanted!r} is not a release the lab builds: use one of {', '.join(RELEASES)}")
    if wanted:
        return wanted
    if recorded_release() in RELEASES and any(is_mounted(h.merged) for h in known_host_dirs()):
        return str(recorded_release())
    return DEFAULT_RELEASE


def base_recipe_id(release: str) -> str:
    recipe = repr((release, DEBIAN_MIRROR, BASE_PACKAGES, sorted(BAKED_FILES.items()), sorted(BAKED_LINKS.items())))
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def build_base_archive(archive: Path, release: str) -> None:
    work = LAB_DIR / f"build-rootfs-{release}"
    if work.exists():
        shutil.rmtree(work)
    log(f"building the {release} base image (minbase + {len(BASE_PACKAGES)} packages; about 2 minutes)")
    started = time.monotonic()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        release,
        str(work),
        DEBIAN_MIRROR,
    ]
    proc = subprocess.run(cmd, text=True, capture_output=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        debootstrap_log = work / "debootstrap" / "debootstrap.log"
        if debootstrap_log.exists():
            tail += "\n--- debootstrap.log ---\n" + "\n".join(debootstrap_log.read_text().splitlines()[-25:])
        raise LabError(f"debootstrap failed (mirror {DEBIAN_MIRROR}; set LAB_DEBIAN_MIRROR to use another):\n{tail}")
    # Each host gets its own SSH host key and machine-id at boot preparation; drop the ones built in.
    for key in (work / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    (work / "etc" / "machine-id").write_text("")
    for rel, content in BAKED_FILES.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(content)
        if rel.startswith("usr/local/sbin/"):
            path.chmod(0o755)
    passwd = work / "etc" / "passwd"
    passwd.write_text(passwd.read_text().replace(":/root:/bin/bash\n", ":/root:/usr/local/sbin/lab-logged-shell\n"))
    for rel, target in BAKED_LINKS.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or path.exists():
            path.unlink()
        path.symlink_to(target)
    # Keep the image small and free of a stale package index: the deploy refreshes apt metadata itself.
    shutil.rmtree(work / "var" / "cache" / "apt" / "archives", ignore_errors=True)
    (work / "var" / "cache" / "apt" / "archives" / "partial").mkdir(parents=True)
    for lists in (work / "var" / "lib" / "apt" / "lists").glob("*_*"):
        lists.unlink()
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_suffix(".tmp")
    run(["tar", "--zstd", "-C", str(work), "-cf", str(tmp), "."])
    tmp.rename(archive)
    shutil.rmtree(work)
    log(f"base image cached at {archive} ({archive.stat().st_size // 2**20} MiB, {time.monotonic() - started:.0f}s)")


def base_archive(release: str) -> Path:
    """The base image of `release` as an archive, built once per release and recipe (CI builds it in the
    background while the first test layers run: tools/prebuild.py)."""
    recipe = base_recipe_id(release)
    archive = LAB_DIR / "cache" / f"base-{release}-{recipe}.tar.zst"
    with build_lock(f"base-{release}"):
        if not archive.exists():
            for stale in archive.parent.glob(f"base-{release}-*.tar.zst"):
                stale.unlink()
            build_base_archive(archive, release)
    return archive


def ensure_rootfs(release: str) -> Path:
    """The unpacked base image of `release` (cached per release and recipe), which hosts overlay."""
    recipe = base_recipe_id(release)
    rootfs = LAB_DIR / f"rootfs-{release}"
    stamp = rootfs / ".lab-recipe"
    if rootfs.exists() and stamp.exists() and stamp.read_text() == recipe:
        return rootfs
    if any(is_mounted(h.merged) for h in known_host_dirs()):
        raise LabError("the base image changed while hosts are running: run `python3 -m tools.lab down` first")
    shutil.rmtree(LAB_DIR / "rootfs", ignore_errors=True)  # the single, unversioned base of earlier lab tools
    archive = base_archive(release)
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.mkdir(parents=True)
    run(["tar", "--zstd", "-C", str(rootfs), "-xf", str(archive)])
    stamp.write_text(recipe)
    return rootfs


# ---------------------------------------------------------------- network and apt proxy


def link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return run(cmd, check=False, quiet=True).returncode == 0


def netns_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def bridge_up() -> None:
    if not link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "replace", f"{BRIDGE_ADDR}/{BRIDGE_NET.prefixlen}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid_file: Path, must_contain: str) -> int | None:
    """The PID recorded in pid_file if that process is still the one we started (its command line says so)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if must_contain in cmdline else None


def sysctl_file(key: str, root: Path = Path("/proc/sys")) -> Path:
    return root / key.replace(".", "/")


def raise_inotify_limits(root: Path = Path("/proc/sys"), record: Path = SYSCTLS_BEFORE) -> None:
    """Raise this machine's inotify limits to INOTIFY_LIMITS where lower, remembering the first value found."""
    before = json.loads(record.read_text()) if record.exists() else {}
    for key, wanted in INOTIFY_LIMITS.items():
        current = int(sysctl_file(key, root).read_text())
        if current < wanted:
            before.setdefault(key, current)
            sysctl_file(key, root).write_text(f"{wanted}\n")
            log(f"{key}: {current} -> {wanted} on this machine while the lab runs (its hosts share it)")
    if before:
        record.write_text(json.dumps(before, indent=1) + "\n")


def restore_inotify_limits(root: Path = Path("/proc/sys"), record: Path = SYSCTLS_BEFORE) -> None:
    """Put back what `up` raised, unless something else changed the value since."""
    if not record.exists():
        return
    for key, value in json.loads(record.read_text()).items():
        current = int(sysctl_file(key, root).read_text())
        if current == INOTIFY_LIMITS[key]:
            sysctl_file(key, root).write_text(f"{value}\n")
            log(f"{key}: {current} -> {value} (as before the lab)")
        else:
            log(f"{key}: left at {current}, set by something else since the lab raised it to {INOTIFY_LIMITS[key]}")
    record.unlink()


def apt_proxy_up() -> None:
    base = LAB_DIR / "acng"
    pid_file = base / "pid"
    if pid_alive(pid_file, "apt-cacher-ng") and port_open(BRIDGE_ADDR, APT_PROXY_PORT):
        return
    for sub in ("cache", "log", "conf"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(base / "cache", 0o777)
    os.chmod(base / "log", 0o777)
    # No Remap-* lines: a plain caching proxy (the stock config answers "503 Host not found" here).
    (base / "conf" / "acng.conf").write_text("SupportDir: /usr/lib/apt-cacher-ng\nExThreshold: 4\n")
    start_on_bridge(
        "apt-cacher-ng",
        [
            "/usr/sbin/apt-cacher-ng",
            "-c",
            str(base / "conf"),
            "ForeGround=1",
            f"CacheDir={base / 'cache'}",
            f"LogDir={base / 'log'}",
            f"SocketPath={base / 'socket'}",
            f"Port={APT_PROXY_PORT}",
            f"BindAddress={BRIDGE_ADDR}",
        ],
        APT_PROXY_PORT,
        pid_file,
        base / "out.log",
    )


def start_on_bridge(label: str, cmd: list[str], port: int, pid_file: Path, log_file: Path) -> None:
    """Start a lab service in its own session, record its PID, and wait until it listens on the bridge."""
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    pid_file.write_text(str(proc.pid))
    for _ in range(50):
        if port_open(BRIDGE_ADDR, port):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise LabError(f"{label} did not start on {BRIDGE_ADDR}:{port}; see {log_file}")


def mirror_up() -> None:
    """Serve MIRROR_DIR read-only on the bridge address (only the lab hosts can reach it)."""
    mirror_dir = MIRROR_DIR
    pid_file = LAB_DIR / "mirror.pid"
    if pid_alive(pid_file, "http.server") and port_open(BRIDGE_ADDR, MIRROR_PORT):
        return
    if not (mirror_dir / "artifacts.json").exists():
        log(f"artifact mirror not served: {mirror_dir} has no artifacts.json (build it: make mirror)")
        return
    start_on_bridge(
        "the mirror server",
        [sys.executable, "-m", "http.server", "--bind", BRIDGE_ADDR, "--directory", str(mirror_dir), str(MIRROR_PORT)],
        MIRROR_PORT,
        pid_file,
        LAB_DIR / "mirror.log",
    )


def stop_pid(pid_file: Path, must_contain: str, label: str, wait: float = STOP_WAIT_SECONDS) -> None:
    pid = pid_alive(pid_file, must_contain)
    if pid:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and pid_alive(pid_file, must_contain):
            time.sleep(0.1)
        if pid_alive(pid_file, must_contain):
            log(f"{label} did not stop within {wait:.0f}s; killing PID {pid}")
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
    pid_file.unlink(missing_ok=True)


# ---------------------------------------------------------------- hosts


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts)


def cgroup_hierarchies() -> list[tuple[str, str]]:
    """(mount point, our own path inside it) for every mounted cgroup v1 hierarchy."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for ctrl in controllers.split(","):
            if ctrl:
                own[ctrl] = path
    result = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            _, mount_point, fstype, options = line.split()[:4]
            if fstype != "cgroup":
                continue
            mounted = [o for o in options.split(",") if o in own]
            if mounted:
                result.append((mount_point, own[mounted[0]]))
    return result


def host_cgroups(host: LabHost) -> list[Path]:
    return [Path(mp) / path.lstrip("/") / f"lab-{host.name}" for mp, path in cgroup_hierarchies()]


def prepare_host(host: LabHost, rootfs: Path, key: Path) -> None:
    for sub in ("upper", "work", "merged", "containerd"):
        (host.dir / sub).mkdir(parents=True, exist_ok=True)
    if not is_mounted(host.merged):
        run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={rootfs},upperdir={host.dir / 'upper'},workdir={host.dir / 'work'}",
                str(host.merged),
            ]
        )
    m = host.merged
    if not (m / "etc" / "machine-id").read_text().strip():
        (m / "etc" / "machine-id").write_text(run(["systemd-id128", "new"]).stdout)
    host_key = m / "etc" / "ssh" / "ssh_host_ed25519_key"
    if not host_key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host.name}", "-f", str(host_key)])
    ssh_dir = m / "root" / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    os.chmod(ssh_dir / "authorized_keys", 0o600)

    if not netns_exists(host.netns):
        run(["ip", "netns", "add", host.netns])
    if not link_exists(host.veth):
        if link_exists("eth0", host.netns):
            run(["ip", "-n", host.netns, "link", "del", "eth0"])
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
    run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
    run(["ip", "-n", host.netns, "addr", "replace", f"{host.address}/{BRIDGE_NET.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
    run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
    run(["ip", "-n", host.netns, "route", "replace", "default", "via", BRIDGE_ADDR])


def boot_host(host: LabHost) -> None:
    cgroups = host_cgroups(host)
    (host.dir / "cgroups").write_text("".join(f"{c}\n" for c in cgroups))

    def enter_own_cgroups() -> None:
        # Runs in the child before exec: each host gets its own cgroup in every hierarchy; otherwise all
        # hosts share one and nested runc containers collide.
        for cg in cgroups:
            cg.mkdir(parents=True, exist_ok=True)
            if cg.parent.name and "cpuset" in str(cg) and (cg.parent / "cpuset.cpus").exists():
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (cg / f).write_text((cg.parent / f).read_text())
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    env = dict(os.environ, SYSTEMD_NSPAWN_API_VFS_WRITABLE="network")
    cmd = [
        "systemd-nspawn",
        "-D",
        str(host.merged),
        "--boot",
        "--register=no",
        "--keep-unit",
        f"--machine={host.name}",
        f"--network-namespace-path=/run/netns/{host.netns}",
        "--console=read-only",
        "--capability=CAP_NET_ADMIN",
        # BPF for Cilium's datapath, perf_event_open for its agent's event ring (nspawn's filter refuses both)
        "--system-call-filter=@keyring bpf perf_event_open",
        # Cilium mounts bpffs there itself; nspawn's /sys has no such folder to mount on
        "--tmpfs=/sys/fs/bpf",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        f"--bind={host.dir / 'containerd'}:/var/lib/containerd",
        *registry.nspawn_options(host.role),
    ]
    with open(host.dir / "nspawn.log", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
            preexec_fn=enter_own_cgroups,
        )
    (host.dir / "pid").write_text(str(proc.pid))


def ssh_cmd(host: LabHost, *command: str, timeout: int = 2) -> list[str]:
    return [
        "ssh",
        "-F",
        str(LAB_DIR / "ssh" / "config"),
        "-o",
        f"ConnectTimeout={timeout}",
        f"root@{host.address}",
        *command,
    ]


def ssh_ok(host: LabHost) -> bool:
    return run(ssh_cmd(host, "true"), check=False, quiet=True, timeout=10).returncode == 0


def nspawn_marker(host: LabHost) -> str:
    return f"--machine={host.name}"


def host_running(host: LabHost) -> bool:
    return pid_alive(host.dir / "pid", nspawn_marker(host)) is not None


def diagnostics(host: LabHost) -> str:
    lines = [f"--- diagnostics for {host.name} ({host.address}) ---"]
    logf = host.dir / "nspawn.log"
    if logf.exists():
        lines += ["last lines of " + str(logf) + ":"] + logf.read_text(errors="replace").splitlines()[-30:]
    for cmd in (["ip", "-n", host.netns, "addr"], ["ip", "link", "show", host.veth], ["ip", "addr", "show", BRIDGE]):
        proc = run(cmd, check=False, quiet=True)
        lines.append("$ " + " ".join(cmd))
        lines.append((proc.stdout + proc.stderr).rstrip())
    return "\n".join(lines)


def wait_for_ssh(hosts: list[LabHost]) -> None:
    deadline = time.monotonic() + SSH_WAIT_SECONDS
    pending = list(hosts)
    while pending and time.monotonic() < deadline:
        for host in list(pending):
            if not host_running(host):
                raise LabError(f"{host.name}: systemd-nspawn exited during boot\n{diagnostics(host)}")
            if port_open(host.address, 22) and ssh_ok(host):
                pending.remove(host)
        if pending:
            time.sleep(0.2)
    if pending:
        raise LabError(
            f"no SSH after {SSH_WAIT_SECONDS}s on: {', '.join(h.name for h in pending)}\n"
            + "\n".join(diagnostics(h) for h in pending)
        )
    # sshd answers before boot is complete; wait for systemd to settle so the first deploy sees a quiet host.
    for host in hosts:
        proc = run(
            ssh_cmd(host, "timeout", "60", "systemctl", "is-system-running", "--wait"),
            check=False,
            quiet=True,
            timeout=90,
        )
        state = proc.stdout.strip() or proc.stderr.strip()
        if state != "running":
            failed = run(ssh_cmd(host, "systemctl", "--failed", "--no-legend", "--plain"), check=False, quiet=True)
            log(f"{host.name}: systemd is {state!r}; failed units: {failed.stdout.strip() or 'none'}")


def up() -> None:
    check_prerequisites()
    hosts = sandbox_hosts()
    started = time.monotonic()
    LAB_DIR.mkdir(parents=True, exist_ok=True)
    key = ensure_ssh_key()
    release = lab_release()
    running = [h.name for h in known_host_dirs() if is_mounted(h.merged)]
    if running and recorded_release() not in (None, release):
        raise LabError(
            f"{', '.join(running)} run {recorded_release()}, not {release}: run `python3 -m tools.lab down` first, "
            f"then up again with LAB_RELEASE={release}"
        )
    wanted = {h.name for h in hosts}
    extra = sorted(name for name in running if name not in wanted)
    if extra:
        raise LabError(
            f"{', '.join(extra)} run but are not among the {len(hosts) - 2} workers asked for: run "
            "`python3 -m tools.lab down` first, or up with LAB_WORKERS set to the running number"
        )
    rootfs = ensure_rootfs(release)
    RELEASE_FILE.write_text(release + "\n")
    WORKERS_FILE.write_text(f"{lab_workers()}\n")
    raise_inotify_limits()
    bridge_up()
    apt_proxy_up()
    mirror_up()
    booted = []
    for host in hosts:
        if host_running(host):
            continue
        cleanup_host(host, quiet=True)  # leftovers of a crashed run
        prepare_host(host, rootfs, key)
        registry.install(host.merged, host.role, log)
        try:
            git_server.install(host.merged, host.role, log)
        except git_server.GitStandInError as exc:
            raise LabError(f"{exc}; run `python3 -m tools.lab down` to clean up") from None
        boot_host(host)
        booted.append(host)
    try:
        wait_for_ssh(hosts)
        registry.fill(next(h.address for h in hosts if h.role == "platform"), log)
    except (LabError, registry.StandInError) as exc:
        log("lab did not come up; run `python3 -m tools.lab down` to clean up")
        raise LabError(str(exc)) from None
    what = f"booted {', '.join(h.name for h in booted)}" if booted else "all hosts were already running"
    log(f"up in {time.monotonic() - started:.1f}s ({what}; Debian {release}); SSH config: {LAB_DIR / 'ssh' / 'config'}")


# ---------------------------------------------------------------- teardown


def known_host_dirs() -> list[LabHost]:
    """Hosts of the inventory plus any host directory a previous (maybe crashed) run left behind."""
    hosts = {h.name: h for h in sandbox_hosts()}
    hosts_dir = LAB_DIR / "hosts"
    if hosts_dir.exists():
        for d in hosts_dir.iterdir():
            if d.name not in hosts:
                hosts[d.name] = LabHost(d.name, "0.0.0.0")
    return list(hosts.values())


def cgroup_pids(cgroups: list[Path]) -> set[int]:
    pids: set[int] = set()
    for cg in cgroups:
        for procs in cg.rglob("cgroup.procs") if cg.exists() else []:
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in procs.read_text().split())
    return pids


def kill_leftover_processes(host: LabHost, cgroups: list[Path]) -> None:
    """Kill what is still running in the host's own cgroups.

    After a crash (systemd-nspawn killed with SIGKILL) the container's systemd and its services live on,
    orphaned. Only the lab's processes can be in these cgroups: they are named after the host and sit
    below the lab tool's own cgroup.
    """
    deadline = time.monotonic() + 10
    while (pids := cgroup_pids(cgroups)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    if pids:
        log(f"{host.name}: processes {sorted(pids)} survived SIGKILL")


def cleanup_host(host: LabHost, quiet: bool = False) -> None:
    stop_pid(host.dir / "pid", nspawn_marker(host), host.name)
    cg_file = host.dir / "cgroups"
    cgroups = [Path(p) for p in cg_file.read_text().split()] if cg_file.exists() else host_cgroups(host)
    kill_leftover_processes(host, cgroups)
    for cg in cgroups:
        if cg.exists():
            # Depth first: systemd inside the host made sub-cgroups.
            for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            try:
                cg.rmdir()
            except OSError as exc:
                log(f"{host.name}: could not remove cgroup {cg}: {exc}")
    shutil.rmtree(f"/run/systemd/nspawn/propagate/{host.name}", ignore_errors=True)
    if host.address != "0.0.0.0" and link_exists(host.veth):
        run(["ip", "link", "del", host.veth], check=False, quiet=quiet)
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns], check=False, quiet=quiet)
    if is_mounted(host.merged) and run(["umount", "-R", str(host.merged)], check=False, quiet=True).returncode != 0:
        run(["umount", "-l", str(host.merged)], check=False, quiet=quiet)
    if host.dir.exists() and not is_mounted(host.merged):
        shutil.rmtree(host.dir)


def power_off(hosts: list[LabHost], wait: float = STOP_WAIT_SECONDS) -> None:
    """SIGTERM to every host's systemd-nspawn at once (each shuts its host down cleanly), SIGKILL to those
    still running after `wait`: the hosts stop in parallel, not one after another."""
    running = {host.name: pid for host in hosts if (pid := pid_alive(host.dir / "pid", nspawn_marker(host)))}
    for pid in running.values():
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(pid_alive(h.dir / "pid", nspawn_marker(h)) for h in hosts):
        time.sleep(0.2)
    for host in hosts:
        if pid := pid_alive(host.dir / "pid", nspawn_marker(host)):
            log(f"{host.name} did not power off within {wait:.0f}s; killing PID {pid}")
            os.kill(pid, signal.SIGKILL)


def down() -> None:
    started = time.monotonic()
    hosts = known_host_dirs()
    power_off(hosts)
    for host in hosts:
        cleanup_host(host)
    stop_pid(LAB_DIR / "acng" / "pid", "apt-cacher-ng", "apt-cacher-ng")
    stop_pid(LAB_DIR / "mirror.pid", "http.server", "mirror server")
    if link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE], check=False)
    leftovers = leftover_report()
    if leftovers:
        raise LabError("down left these behind:\n" + leftovers)
    WORKERS_FILE.unlink(missing_ok=True)
    restore_inotify_limits()
    log(f"down in {time.monotonic() - started:.1f}s; nothing of the lab remains (caches kept in {LAB_DIR})")


def leftover_report() -> str:
    found = []
    names = {h.name for h in known_host_dirs()}
    for name in names:
        if netns_exists(f"lab-{name}"):
            found.append(f"network namespace lab-{name}")
    if link_exists(BRIDGE):
        found.append(f"bridge {BRIDGE}")
    with open("/proc/self/mounts") as mounts:
        found += [f"mount {line.split()[1]}" for line in mounts if line.split()[1].startswith(str(LAB_DIR / "hosts"))]
    proc = run(["pgrep", "-af", "systemd-nspawn"], check=False, quiet=True)
    found += [f"process {line}" for line in proc.stdout.splitlines() if "--machine=" in line]
    for host in known_host_dirs():
        pids = cgroup_pids(host_cgroups(host))
        if pids:
            found.append(f"{len(pids)} processes of {host.name} (in its cgroups): {sorted(pids)[:5]}")
        found += [f"cgroup {cg}" for cg in host_cgroups(host) if cg.exists()]
    return "\n".join(found)


def status() -> int:
    hosts = sandbox_hosts()
    print(f"{'host':<13} {'address':<15} {'machine':<9} {'ssh':<5} systemd")
    all_ok = True
    for host in hosts:
        running = host_running(host)
        ssh = running and ssh_ok(host)
        state = ""
        if ssh:
            state = run(ssh_cmd(host, "systemctl", "is-system-running"), check=False, quiet=True).stdout.strip()
        all_ok &= ssh
        print(
            f"{host.name:<13} {host.address:<15} {'running' if running else 'stopped':<9} "
            f"{'ok' if ssh else '-':<5} {state}"
        )
    proxy = "up" if pid_alive(LAB_DIR / "acng" / "pid", "apt-cacher-ng") else "down"
    mirror = "up" if pid_alive(LAB_DIR / "mirror.pid", "http.server") else "down"
    print(
        f"bridge {BRIDGE}: {'up' if link_exists(BRIDGE) else 'absent'}; apt proxy: {proxy}; artifact mirror: {mirror}; "
        f"release: {recorded_release() or DEFAULT_RELEASE}"
    )
    return 0 if all_ok else 1


def recreate(name: str) -> None:
    """Power one host off, throw its machine away, and boot it fresh (a replaced machine with the same name and
    address): what the deploy must cope with by joining it again."""
    host = next((h for h in sandbox_hosts() if h.name == name), None)
    if host is None:
        raise LabError(f"no host {name} in inventories/sandbox.py")
    power_off([host])
    cleanup_host(host)
    up()


def cluster_info() -> int:
    """How to use the lab's cluster, with its nodes as the API server reports them."""
    # The project's settings and Kubernetes client need its virtualenv (`make lab` runs this with it).
    from tasks import inventory  # (imported here: see above)
    from tasks.kube_client import ClusterError, connect
    from tasks.settings import load_settings
    from tasks.state import LocalState

    settings = load_settings(inventory.load(REPO / "inventories" / "sandbox.py"), "inventories/sandbox.py")
    kubeconfig = LocalState(settings.state_path).kubeconfig
    try:
        nodes = connect(kubeconfig).list_objects("v1", "Node")
    except ClusterError as exc:
        log(f"no cluster to use yet: {exc}")
        return 1
    for item in sorted(nodes, key=lambda n: n["metadata"]["name"]):
        ready = next((c["status"] for c in item["status"].get("conditions", []) if c["type"] == "Ready"), "?")
        log(f"node {item['metadata']['name']}: Ready={ready}")
    log(
        f"use the cluster: export KUBECONFIG={kubeconfig}  (context kubernetes-admin@gitops-lab), then kubectl "
        "get nodes; `make lab-down` removes the lab"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "status", "ssh", "recreate", "cluster-info"])
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.action in ("up", "recreate", "cluster-info"):
        # These use the project's code (its virtualenv). pyinfra's CLI patches the standard library for gevent
        # when imported, which must happen before anything imports ssl; `down` and `status` need none of it.
        import pyinfra_cli  # noqa: F401
    try:
        if args.action == "up":
            up()
        elif args.action == "down":
            down()
        elif args.action == "status":
            return status()
        elif args.action == "cluster-info":
            return cluster_info()
        elif args.action == "recreate":
            if not args.rest:
                parser.error("recreate needs a host name")
            recreate(args.rest[0])
        else:
            if not args.rest:
                parser.error("ssh needs a host name")
            host = next((h for h in sandbox_hosts() if h.name == args.rest[0]), None)
            if host is None:
                parser.error(f"unknown host {args.rest[0]}")
            os.execvp("ssh", ssh_cmd(host, *args.rest[1:]))
    except LabError as exc:
        print(f"[lab] ERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
