#!/usr/bin/env python3
"""Pin every download of group_data/all.py to the sha256 its release publishes, in the artifacts lock file;
with --images, every image of the catalog to the digest its registry serves, in the images lock file.

    .venv/bin/python tools/pin_artifacts.py                  read the checksums from upstream, write the lock
    .venv/bin/python tools/pin_artifacts.py --mirror URL     read them from an artifact mirror instead
    .venv/bin/python tools/pin_artifacts.py --check          only compare; exit 1 when a pin is missing or differs
    .venv/bin/python tools/pin_artifacts.py --images         the image digests from registry.k8s.io, quay.io,
                                                             docker.io, ghcr.io (anonymous pulls)
    .venv/bin/python tools/pin_artifacts.py --images --registry URL --prefix PATH [--user U --password-file F]
                                                             ... from a private registry holding copies below
                                                             PATH/<upstream registry>/ (image_mirror_project)
    .venv/bin/python tools/pin_artifacts.py --images --inventory inventories/lab.py
                                                             only the images that inventory's deploy pulls,
                                                             with its image_overrides in place of the originals

Run it on a machine that reaches github.com and dl.k8s.io (or your mirror), after a fresh clone and
after each version bump, then commit group_data/artifacts.lock.json. Each artifact names its checksum file
(`checksums`); both release formats are read: `<sha256>  <file>` lines and a bare `<sha256>`. Where a
release publishes no checksum (`checksums` empty: Argo CD's install.yaml, the Helm charts) the file itself
is downloaded and hashed; review those pins in the diff like any other. The lock pins each file for
exactly one version and URL: a version bump leaves that entry unpinned until this tool runs again.
"""

from __future__ import annotations

import argparse
import json
import re
import runpy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tasks import downloads, inventory  # noqa: E402  (run as a script from any folder)
from tasks.artifacts import mirror_path  # noqa: E402
from tasks.images import Reference, RegistryClient, RegistryError  # noqa: E402
from tasks.settings import CHOSEN_ARTIFACTS, SettingsError, load_settings, lock_entry, unused_artifacts  # noqa: E402

SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PinError(RuntimeError):
    pass


def via_mirror(url: str, mirror: str) -> str:
    return f"{mirror.rstrip('/')}/{mirror_path(url)}" if mirror else url


def checksum_url(spec: dict, mirror: str) -> tuple[str, str]:
    """(URL of the checksum file or "" when the release publishes none, name of the artifact's file)."""
    url = spec["url"].format(version=spec["version"])
    checksums = spec["checksums"].format(url=url, version=spec["version"])
    return (via_mirror(checksums, mirror) if checksums else ""), url.rsplit("/", 1)[1]


def parse_checksum(text: str, file_name: str) -> str:
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 1 and SHA256.match(fields[0].lower()):
            return fields[0].lower()
        if len(fields) == 2 and fields[1].lstrip("*") == file_name and SHA256.match(fields[0].lower()):
            return fields[0].lower()
    raise PinError(f"no sha256 for {file_name} in the checksum file")


def fetch_pins(artifacts: dict, mirror: str) -> dict[str, str]:
    pins = {}
    for name, spec in artifacts.items():
        url, file_name = checksum_url(spec, mirror)
        what = f"{name} {spec['version']}"
        try:
            if url:
                pins[name] = parse_checksum(downloads.download(url, f"the checksum file of {what}").decode(), file_name)
            else:  # no published checksum: hash the file itself (trust on first download, reviewed in the diff)
                file_url = via_mirror(spec["url"].format(version=spec["version"]), mirror)
                pins[name] = downloads.sha256(downloads.download(file_url, what))
        except downloads.DownloadError as exc:
            raise PinError(str(exc)) from None
    return pins


def read_lock(lock_file: Path) -> dict[str, dict[str, str]]:
    return json.loads(lock_file.read_text()) if lock_file.exists() else {}


def write_lock(lock_file: Path, artifacts: dict, pins: dict[str, str]) -> None:
    """The lock with these pins (other entries kept), sorted, one JSON object per artifact."""
    lock = read_lock(lock_file)
    lock.update({name: lock_entry(artifacts[name], digest) for name, digest in pins.items()})
    lock_file.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")


# Where each public registry's API answers (Docker Hub's is not at its name).
REGISTRY_APIS = {"docker.io": "https://registry-1.docker.io"}


def image_pins(
    catalog: dict[str, str], registry: str, prefix: str, user: str, password: str, ca_file: str | bool
) -> dict[str, str]:
    """ref -> the digest its registry (or the private registry's copy below `prefix`) serves for the tag."""
    clients: dict[str, RegistryClient] = {}
    pins = {}
    for ref in catalog.values():
        image = Reference.parse(ref)
        base = registry or REGISTRY_APIS.get(image.registry, f"https://{image.registry}")
        client = clients.setdefault(base, RegistryClient(base, user, password, ca_file=ca_file))
        repository = f"{prefix.strip('/')}/{image.registry}/{image.repository}" if prefix else image.repository
        try:
            digest = client.manifest_digest(repository, image.tag)
        except RegistryError as exc:
            raise PinError(f"{ref}: {exc}") from None
        if digest is None:
            raise PinError(f"{ref}: {base} has no {repository}:{image.tag}")
        pins[ref] = digest
    return pins


def inventory_images(inventory_file: Path) -> dict[str, str]:
    """name -> ref of the images an inventory's deploy pulls (its choices; its image_overrides applied)."""
    try:
        settings = load_settings(inventory.load(inventory_file), str(inventory_file))
    except SettingsError as exc:
        raise PinError(str(exc)) from None
    return {name: settings.images[name]["ref"] for name in settings.needed_images()}


def pin_images(args: argparse.Namespace, data: dict) -> int:
    lock_file = args.lock or REPO / data["images_lock"]
    password = args.password_file.read_text().strip() if args.password_file else ""
    try:
        pins = image_pins(
            inventory_images(args.inventory) if args.inventory else data["images"],
            args.registry,
            args.prefix,
            args.user,
            password,
            str(args.ca_file) if args.ca_file else True,
        )
    except PinError as exc:
        print(f"pin_artifacts: {exc}", file=sys.stderr)
        return 2
    current = read_lock(lock_file)
    stale = {ref: digest for ref, digest in pins.items() if current.get(ref) != digest}
    for ref, digest in pins.items():
        print(f"{ref:<55} {digest}  {'changed' if ref in stale else 'ok'}")
    if args.check:
        return 1 if stale else 0
    if stale:
        lock_file.write_text(json.dumps({**current, **stale}, indent=2, sort_keys=True) + "\n")
        print(f"wrote {len(stale)} digests into {lock_file}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", default="", help="artifact mirror base URL (default: upstream)")
    parser.add_argument("--group-data", type=Path, default=REPO / "group_data" / "all.py")
    parser.add_argument(
        "--lock",
        type=Path,
        help="lock file to write (default: the group data's artifacts_lock, or images_lock with --images)",
    )
    parser.add_argument("--check", action="store_true", help="compare only, change nothing")
    parser.add_argument("--images", action="store_true", help="pin the image catalog's digests instead")
    parser.add_argument(
        "--inventory",
        type=Path,
        help="with --images: only the images this inventory's deploy pulls, its image_overrides applied",
    )
    parser.add_argument("--registry", default="", help="with --images: read from this registry (https://host)")
    parser.add_argument("--prefix", default="", help="with --registry: the copies' path, e.g. boutique/mirror")
    parser.add_argument("--user", default="", help="with --registry: the account")
    parser.add_argument("--password-file", type=Path, help="with --registry: a file holding the account's password")
    parser.add_argument("--ca-file", type=Path, help="with --registry: the CA that signed its certificate")
    args = parser.parse_args(argv)
    data = runpy.run_path(str(args.group_data))
    if args.images:
        return pin_images(args, data)
    # Never downloaded: the other CNI's chart, the other storage's; GitLab's apt keys without its packages.
    unused = unused_artifacts({key: data[key] for key in CHOSEN_ARTIFACTS}, data["gitlab_package_source"])
    artifacts = {name: spec for name, spec in data["artifacts"].items() if name not in unused}
    lock_file = args.lock or REPO / data["artifacts_lock"]
    try:
        pins = fetch_pins(artifacts, args.mirror)
    except PinError as exc:
        print(f"pin_artifacts: {exc}", file=sys.stderr)
        return 2
    current = read_lock(lock_file)
    stale = {name: digest for name, digest in pins.items() if current.get(name) != lock_entry(artifacts[name], digest)}
    for name, digest in pins.items():
        state = "changed" if name in stale else "ok"
        print(f"{name:<22} {artifacts[name]['version']:<8} {digest}  {state}")
    if args.check:
        return 1 if stale else 0
    if stale:
        write_lock(lock_file, artifacts, stale)
        print(f"wrote {len(stale)} sha256 into {lock_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
