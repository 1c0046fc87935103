#!/usr/bin/env python3
"""Pin every download of group_data/all.py to the sha256 its release publishes.

    .venv/bin/python tools/pin_artifacts.py                  read the checksums from upstream, write them
    .venv/bin/python tools/pin_artifacts.py --mirror URL     read them from an artifact mirror instead
    .venv/bin/python tools/pin_artifacts.py --check          only compare; exit 1 when a pin is missing or differs

Run it on a machine that reaches github.com and dl.k8s.io (or your mirror), after a fresh clone and
after each version bump, then commit group_data/all.py. Each artifact names its checksum file
(`checksums`); both release formats are read: `<sha256>  <file>` lines and a bare `<sha256>`. Where a
release publishes no checksum (`checksums` empty: Argo CD's install.yaml, the Helm charts) the file itself
is downloaded and hashed; review those pins in the diff like any other.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import runpy
import sys
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tasks.artifacts import mirror_path  # noqa: E402
from tasks.settings import CHOSEN_ARTIFACTS, unused_artifacts  # noqa: E402

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


def fetch_pins(artifacts: dict, mirror: str, session: requests.Session) -> dict[str, str]:
    pins = {}
    for name, spec in artifacts.items():
        url, file_name = checksum_url(spec, mirror)
        # No published checksum: hash the file itself (trust on first download, reviewed in the diff).
        url = url or via_mirror(spec["url"].format(version=spec["version"]), mirror)
        try:
            response = session.get(url, timeout=120)
            response.raise_for_status()
        except requests.RequestException as exc:
            raise PinError(f"{name} {spec['version']}: cannot read {url}: {exc}") from None
        if spec["checksums"]:
            pins[name] = parse_checksum(response.text, file_name)
        else:
            pins[name] = hashlib.sha256(response.content).hexdigest()
    return pins


def write_pins(group_data: Path, pins: dict[str, str]) -> None:
    """Replace the sha256 of each entry in place (one `"name": {"version": ..., "sha256": "..."` per entry)."""
    text = group_data.read_text()
    for name, digest in pins.items():
        pattern = re.compile(rf'("{re.escape(name)}": \{{"version": "[^"]+", "sha256": ")[0-9a-f]*(")')
        text, count = pattern.subn(rf"\g<1>{digest}\g<2>", text)
        if count != 1:
            raise PinError(f'{group_data}: expected one entry starting `"{name}": {{"version": ..., "sha256": ...`')
    group_data.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", default="", help="artifact mirror base URL (default: upstream)")
    parser.add_argument("--group-data", type=Path, default=REPO / "group_data" / "all.py")
    parser.add_argument("--check", action="store_true", help="compare only, change nothing")
    args = parser.parse_args(argv)
    data = runpy.run_path(str(args.group_data))
    # Artifacts of options not chosen (the other CNI's chart, the other storage) are never downloaded.
    unused = unused_artifacts({key: data[key] for key in CHOSEN_ARTIFACTS})
    artifacts = {name: spec for name, spec in data["artifacts"].items() if name not in unused}
    try:
        pins = fetch_pins(artifacts, args.mirror, requests.Session())
    except PinError as exc:
        print(f"pin_artifacts: {exc}", file=sys.stderr)
        return 2
    stale = {name: digest for name, digest in pins.items() if artifacts[name]["sha256"] != digest}
    for name, digest in pins.items():
        state = "changed" if name in stale else "ok"
        print(f"{name:<12} {artifacts[name]['version']:<8} {digest}  {state}")
    if args.check:
        return 1 if stale else 0
    if stale:
        write_pins(args.group_data, stale)
        print(f"wrote {len(stale)} sha256 into {args.group_data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
