"""Phase 2, container runtime: containerd 2.3, runc and the CNI plugins on every Kubernetes node.

Stages: `install` (release archives, sha256 pinned, from upstream or the artifact mirror), `configure`
(config.toml version 3 with the systemd cgroup driver, the pause image and the private registry's pull
account; the private registry trusted through certs.d with the lab CA; the upstream registries mirrored
through it with `image_mirror_project`, or through `image_registry_mirrors`), `activate` (the systemd unit;
restarted only when a binary, the unit or the configuration changed; certs.d is read on every pull).
"""

from __future__ import annotations

from io import StringIO
from urllib.parse import urlsplit

from pyinfra.operations import files, systemd

from tasks import artifacts, follow_up, images
from tasks.phases import stage
from tasks.settings import Settings
from tasks.templating import render

CONFIG = "/etc/containerd/config.toml"
CERTS_D = "/etc/containerd/certs.d"
UNIT = "/etc/systemd/system/containerd.service"
RUNC = "/usr/local/sbin/runc"
CNI_BIN = "/opt/cni/bin"


def config_toml(settings: Settings, pull_password: str) -> str:
    return render(
        "containerd-config.toml.j2",
        containerd_version=settings.artifacts["containerd"]["version"],
        pause_image=settings.images["pause"]["ref"],
        registry=settings.registry_domain,
        pull_user=images.PULL_USER,
        pull_password=pull_password,
    )


def lab_ca_file(settings: Settings) -> str:
    return f"{CERTS_D}/{settings.registry_domain}/ca.crt"


def registry_hosts(settings: Settings) -> dict[str, str]:
    """certs.d/<registry>/hosts.toml contents: the private registry (trusted with the lab CA), the upstream
    registries mirrored through it, then other mirrors (a mirror on https is trusted with the lab CA)."""
    private = settings.registry_domain
    hosts = {private: render("containerd-hosts.toml.j2", registry=private, ca_file=lab_ca_file(settings))}
    mirrors = {registry: images.mirror_endpoint(settings, registry) for registry in settings.mirrored_registries()}
    mirrors.update(settings.image_registry_mirrors)
    for registry, mirror in sorted(mirrors.items()):
        hosts[registry] = render(
            "containerd-mirror-hosts.toml.j2",
            registry=registry,
            mirror=mirror,
            override_path=bool(urlsplit(mirror).path.strip("/")),
            ca_file=lab_ca_file(settings) if urlsplit(mirror).scheme == "https" else "",
        )
    return hosts


@stage("Phase 2: containerd, runc and CNI plugins installed")
def install(settings: Settings) -> list:
    """Returns the operations whose change needs a containerd restart."""
    binaries = artifacts.unpack(settings, "containerd", "/usr/local")
    runc = artifacts.fetch(settings, "runc", RUNC, mode="755")
    artifacts.unpack(settings, "cni-plugins", CNI_BIN)
    return [binaries, runc]


@stage("Phase 2: containerd configured")
def configure(settings: Settings, ca_pem: bytes, pull_password: str) -> list:
    changes = [
        files.put(name="containerd unit (systemd)", src=StringIO(render("containerd.service")), dest=UNIT, mode="644"),
        files.put(
            name=f"containerd config.toml (version 3, SystemdCgroup, pause {settings.images['pause']['ref']}, "
            f"{settings.registry_domain} pull account; root only)",
            src=StringIO(config_toml(settings, pull_password)),
            dest=CONFIG,
            mode="600",
            create_remote_dir=True,
        ),
    ]
    # One copy of the lab CA, named by every hosts.toml that needs it (containerd trusts it for those only).
    files.put(
        name=f"certs.d/{settings.registry_domain}/ca.crt (lab CA)",
        src=StringIO(ca_pem.decode()),
        dest=lab_ca_file(settings),
        mode="644",
        create_remote_dir=True,
    )
    # certs.d is read on every pull: trust and mirror changes need no restart.
    for registry, content in registry_hosts(settings).items():
        files.put(
            name=f"certs.d/{registry}/hosts.toml",
            src=StringIO(content),
            dest=f"{CERTS_D}/{registry}/hosts.toml",
            mode="644",
            create_remote_dir=True,
        )
    return changes


@stage("Phase 2: containerd running")
def activate(changed: list) -> None:
    # A changed binary, unit or config takes effect on restart (also when a cut-off run left it due).
    follow_up.restart("containerd", changed, "its binary, unit or config changed", daemon_reload=True)
    systemd.service(name="containerd running and enabled", service="containerd", running=True, enabled=True)


@stage("Phase 2: container runtime")
def deploy_runtime(settings: Settings, ca_pem: bytes, pull_password: str) -> None:
    installed = install(settings)
    configured = configure(settings, ca_pem, pull_password)
    activate(installed + configured)
