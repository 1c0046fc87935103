"""Writing a secret to a host at run time (inside a `python.call`, where pyinfra's planned `files.put`
cannot be used because the secret is only known then): never readable by others, not even briefly.

A fresh upload is created with the connection's umask (0644) before any chmod could run, so the file is
uploaded into a folder only root can enter, made 0600 there, and then moved into place.
"""

from __future__ import annotations

import posixpath
from io import StringIO
from typing import Any

from pyinfra import host


class RemoteWriteError(RuntimeError):
    pass


def put_private_file(content: str, dest: str, target: Any = None) -> None:
    """Write `content` to `dest` on the host (the current one by default), 0600 owned by root."""
    remote = target or host
    staging = posixpath.join(posixpath.dirname(dest), ".gitops-lab-private")
    staged = posixpath.join(staging, posixpath.basename(dest))
    ok, _ = remote.run_shell_command(f"install -d -m 700 {staging}", print_output=False, print_input=False)
    if not ok:
        raise RemoteWriteError(f"cannot create {staging} on {remote.name}")
    remote.put_file(StringIO(content), staged, print_output=False, print_input=False)
    ok, _ = remote.run_shell_command(
        f"chmod 600 {staged} && mv {staged} {dest} && rmdir {staging}", print_output=False, print_input=False
    )
    if not ok:
        raise RemoteWriteError(f"cannot move {staged} to {dest} on {remote.name}")
