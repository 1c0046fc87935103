"""Phase 2, container runtime: containerd 2.3, runc and the CNI plugins on every Kubernetes node.

Stages: `install` (release archives, sha256 pinned, from upstream or the artifact mirror), `configure`
(config.toml version 3 with the systemd cgroup driver and the pause image; the private registry trusted
through certs.d with the lab CA; optional registry mirrors), `activate` (the systemd unit; restarted only
when a binary, the unit or the configuration changed).
"""

from __future__ import annotations

from io import StringIO
from urllib.parse import urlsplit

from pyinfra.api import deploy
from pyinfra.operations import files, systemd

from tasks import artifacts
from tasks.platform import PlatformSecrets, render
from tasks.settings import Settings

CONFIG = "/etc/containerd/config.toml"
CERTS_D = "/etc/containerd/certs.d"
UNIT = "/etc/systemd/system/containerd.service"
RUNC = "/usr/local/sbin/runc"
CNI_BIN = "/opt/cni/bin"


def config_toml(settings: Settings) -> str:
    return render("containerd-config.toml.j2", containerd_version=settings.artifacts["containerd"]["version"],
                   pause_image=settings.pause_image)


def registry_hosts(settings: Settings) -> dict[str, str]:
    """certs.d/<registry>/hosts.toml contents: the lab registry (trusted with the lab CA), then mirrors."""
    ca_file = f"{CERTS_D}/{settings.registry_domain}/ca.crt"
    hosts = {settings.registry_domain: render("containerd-hosts.toml.j2", registry=settings.registry_domain,
                                               ca_file=ca_file)}
    for registry, mirror in sorted(settings.image_registry_mirrors.items()):
        hosts[registry] = render("containerd-mirror-hosts.toml.j2", registry=registry, mirror=mirror,
                                  ca_file=f"{CERTS_D}/{registry}/ca.crt")
    return hosts


def mirror_needs_ca(mirror: str) -> bool:
    return urlsplit(mirror).scheme == "https"


@deploy("Phase 2: containerd, runc and CNI plugins installed")
def install(settings: Settings) -> list:
    """Returns the operations whose change needs a containerd restart."""
    binaries = artifacts.unpack(settings, "containerd", "/usr/local")
    runc = artifacts.fetch(settings, "runc", RUNC, mode="755")
    artifacts.unpack(settings, "cni-plugins", CNI_BIN)
    return [binaries, runc]


@deploy("Phase 2: containerd configured")
def configure(settings: Settings, lab_secrets: PlatformSecrets) -> list:
    changes = [
        files.put(name="containerd unit (systemd)", src=StringIO(render("containerd.service")), dest=UNIT,
                  mode="644"),
        files.put(name=f"containerd config.toml (version 3, SystemdCgroup, pause {settings.pause_image})",
                  src=StringIO(config_toml(settings)), dest=CONFIG, mode="644", create_remote_dir=True),
    ]
    # certs.d is read on every pull: trust changes need no restart.
    for registry, content in registry_hosts(settings).items():
        directory = f"{CERTS_D}/{registry}"
        files.put(name=f"certs.d/{registry}/hosts.toml", src=StringIO(content), dest=f"{directory}/hosts.toml",
                  mode="644", create_remote_dir=True)
        if registry == settings.registry_domain or mirror_needs_ca(settings.image_registry_mirrors.get(registry, "")):
            # A copy of the lab CA next to hosts.toml: containerd reads `ca` relative to nothing else.
            files.put(name=f"certs.d/{registry}/ca.crt (lab CA)", src=StringIO(lab_secrets.ca.cert_pem.decode()),
                      dest=f"{directory}/ca.crt", mode="644")
    return changes


@deploy("Phase 2: containerd running")
def activate(changed: list) -> None:
    restart = any(op is not None and op.will_change for op in changed)
    systemd.service(name="containerd running and enabled", service="containerd", running=True, enabled=True,
                    restarted=restart, daemon_reload=restart)


@deploy("Phase 2: container runtime")
def deploy_runtime(settings: Settings, lab_secrets: PlatformSecrets) -> None:
    installed = install(settings)
    configured = configure(settings, lab_secrets)
    activate(installed + configured)
