"""Downloads on the operator's machine (the one that runs pyinfra): Helm charts, manifests and tools that the
post-bootstrap step uses, and the checksum files the pin tool reads. One place for timeouts, errors that
name the URL and what to check, and the sha256 check of pinned files (kept in a cache, verified on every use).
The hosts download their own files with pyinfra's `files.download` (tasks/artifacts.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests

TIMEOUT_S = 120


class DownloadError(RuntimeError):
    """One line: what could not be fetched or verified, and what to check."""


def download(url: str, what: str, timeout: float = TIMEOUT_S) -> bytes:
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise DownloadError(
            f"cannot download {what} from {url} ({exc}): check the address and artifact_mirror"
        ) from None
    return response.content


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch_verified(url: str, pinned_sha256: str, cache: Path, what: str) -> bytes:
    """The file at `url` with the pinned sha256: from `cache` when it holds exactly that file, else fetched,
    checked, and cached. A file with another sha256 is refused and never cached."""
    if cache.exists():
        data = cache.read_bytes()
        if sha256(data) == pinned_sha256:
            return data
    data = download(url, what)
    digest = sha256(data)
    if digest != pinned_sha256:
        raise DownloadError(
            f"{what} from {url} has sha256 {digest}, not the pinned {pinned_sha256}: refusing it "
            "(re-pin with tools/pin_artifacts.py if the release really changed)"
        )
    cache.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    cache.write_bytes(data)
    return data
