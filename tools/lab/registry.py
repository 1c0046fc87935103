"""The lab's stand-in for GitLab's container registry: `registry.local` served for real on the platform host.

GitLab itself cannot be installed offline, but its container registry is a fork of the CNCF distribution
registry, which the Go module proxy serves. The lab tool puts that registry on the platform host (mini-pc)
as a systemd service, listening where GitLab's would (the platform host's address, port 443), with TLS from
the lab CA (the certificate phase 1 issues for registry.local) and HTTP Basic authentication for the nodes'
pull account (`cluster-pull`, whose password the deploy generates into the state folder). Its storage is a
folder on this machine (bind-mounted), so the images survive `lab down`; after `lab up` the lab's images
(`python -m tools.images build`) are pushed into it under their upstream names with skopeo, verified by
digest, exactly where `image_mirror_project` makes the nodes look. A stand-in, named as one: no projects, no
token service, one account that may also push (the real registry gives `cluster-pull` read access only).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tools.lab.constants import CACHE, REPO

if TYPE_CHECKING:
    from tasks.certificates import LabPki
    from tasks.settings import Settings
    from tasks.state import LocalState
    from tools.images import Destination

STORAGE = CACHE / "registry-storage"
CONFIG_DIR = "etc/lab-registry"
UNIT = "lab-registry.service"
PORT = 443
WAIT_SECONDS = 30


class StandInError(RuntimeError):
    pass


def nspawn_options(role: str) -> list[str]:
    """The platform host keeps the registry's storage in this machine's cache."""
    return [f"--bind={STORAGE}:/var/lib/registry"] if role == "platform" else []


def _config(address: str) -> str:
    return f"""# Lab only: GitLab's container registry stand-in (tools/lab/registry.py)
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: {address}:{PORT}
  tls:
    certificate: /{CONFIG_DIR}/registry.crt
    key: /{CONFIG_DIR}/registry.key
auth:
  htpasswd:
    realm: registry.local
    path: /{CONFIG_DIR}/htpasswd
"""


UNIT_TEXT = f"""[Unit]
Description=Lab only: GitLab container registry stand-in (CNCF distribution registry)
After=network-online.target

[Service]
ExecStart=/usr/local/bin/registry serve /{CONFIG_DIR}/config.yml
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def _sandbox() -> tuple[Settings, LocalState, LabPki]:
    # The project's settings and PKI need its virtualenv; `lab down` and `lab status` run without one.
    from tasks import certificates, inventory  # (imported here: see above)
    from tasks.settings import load_settings
    from tasks.state import LocalState

    settings = load_settings(inventory.load(REPO / "inventories" / "sandbox.py"), "inventories/sandbox.py")
    state = LocalState(settings.state_path)
    return settings, state, certificates.ensure_lab_pki(state, settings)


def install(root: Path, role: str, log: Callable[[str], None]) -> None:
    """Put the stand-in into the platform host's root filesystem (before it boots); nothing for other hosts."""
    if role != "platform":
        return
    import bcrypt  # the htpasswd format the registry reads (a dependency of paramiko, in the virtualenv)

    from tasks import images  # (the project's virtualenv: see _sandbox)
    from tools.gobuild import go_tool

    settings, state, pki = _sandbox()
    STORAGE.mkdir(parents=True, exist_ok=True)
    config = root / CONFIG_DIR
    config.mkdir(parents=True, exist_ok=True)
    shutil.copy2(go_tool("registry"), root / "usr/local/bin/registry")
    (config / "config.yml").write_text(_config(str(settings.platform.address)))
    shutil.copyfile(pki.registry.cert_path, config / "registry.crt")
    shutil.copyfile(pki.registry.key_path, config / "registry.key")
    (config / "registry.key").chmod(0o600)
    password = images.pull_password(state).encode()
    # bcrypt at a low cost: the registry checks it on every request, and the default cost (12) made each blob
    # of every pull wait most of a second on this machine's two cores. The stand-in's network is this machine's.
    (config / "htpasswd").write_text(
        f"{images.PULL_USER}:{bcrypt.hashpw(password, bcrypt.gensalt(rounds=6)).decode()}\n"
    )
    (config / "htpasswd").chmod(0o600)
    (root / "etc/systemd/system" / UNIT).write_text(UNIT_TEXT)
    wants = root / "etc/systemd/system/multi-user.target.wants" / UNIT
    if not wants.is_symlink():
        wants.symlink_to(f"/etc/systemd/system/{UNIT}")
    log(
        f"GitLab's registry stand-in (CNCF registry) on {settings.platform.name}:{PORT}: GitLab itself cannot be "
        "installed offline"
    )


def fill(address: str, log: Callable[[str], None]) -> None:
    """Push the lab's images (their OCI layouts from `tools.images build`) into the stand-in, by digest."""
    from tasks import images  # (the project's virtualenv: see _sandbox)
    from tools.images import LOCK_FILE, Destination, copy_catalog

    settings, state, _ = _sandbox()
    if not LOCK_FILE.exists() or not all(settings.images[n]["digest"] for n in settings.needed_images()):
        log(
            f"registry not filled: the lab's images are not built ({LOCK_FILE} is missing or incomplete; "
            "`make images` builds them)"
        )
        return
    destination = Destination(address, images.PULL_USER, images.pull_password(state), state.ca_cert)
    _wait_until_serving(destination)
    started = time.monotonic()
    try:
        copied = copy_catalog(settings, destination, from_layouts=True)
    except images.RegistryError as exc:
        raise StandInError(f"filling the registry stand-in failed: {exc}") from None
    log(
        f"registry stand-in holds the {len(settings.needed_images())} images the cluster pulls "
        f"({len(copied)} pushed in {time.monotonic() - started:.0f}s)"
    )


def _wait_until_serving(destination: Destination) -> None:
    import requests  # (the project's virtualenv: see _sandbox)

    deadline = time.monotonic() + WAIT_SECONDS
    last = ""
    while time.monotonic() < deadline:
        try:
            status = requests.get(f"https://{destination.address}/v2/", verify=str(destination.ca_file), timeout=2)
            if status.status_code == 401:  # up, and asking for credentials
                return
            last = f"HTTP {status.status_code}"
        except requests.RequestException as exc:
            last = str(exc)[:200]
        time.sleep(0.5)
    raise StandInError(
        f"the registry stand-in on {destination.address}:{PORT} did not answer within {WAIT_SECONDS}s "
        f"(last: {last or 'no answer'}); see `journalctl -u {UNIT}` on the platform host"
    )
