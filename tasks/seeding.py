"""Seed a new, empty GitLab repository with files, over HTTPS with an access token.

A repository that already has commits is left alone: after seeding, Git (and whoever commits to it) is
the source of truth, never this deploy. The token is masked in every message.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class SeedError(RuntimeError):
    pass


def git_env(token: str, ca_file: str | None = None) -> dict[str, str]:
    """Environment that makes git send the token as HTTP Basic auth (user oauth2, as GitLab expects),
    without putting it in a URL, on a command line, or into git's messages."""

    basic = base64.b64encode(f"oauth2:{token}".encode()).decode()
    env = dict(
        os.environ,
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_COUNT="1",
        GIT_CONFIG_KEY_0="http.extraHeader",
        GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
    )
    if ca_file:
        env["GIT_SSL_CAINFO"] = ca_file
    return env


IDENTITY = ("gitops-lab deploy", "deploy@gitops-lab.invalid")


def _git(args: list[str], cwd: Path, env: dict, token: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        message = proc.stderr.strip().replace(token, "****") if token else proc.stderr.strip()
        raise SeedError(f"git {args[0]} failed: {message}")
    return proc


def push_first_commit(
    url: str,
    source: Path,
    message: str,
    branch: str,
    env: dict,
    token: str = "",
    identity: tuple[str, str] = IDENTITY,
) -> None:
    """`source`'s files as one commit on `branch` by `identity` (name, email), pushed to `url` (an empty
    repository); `token` is masked in every message."""
    name, email = identity
    env = dict(env, GIT_AUTHOR_NAME=name, GIT_AUTHOR_EMAIL=email, GIT_COMMITTER_NAME=name, GIT_COMMITTER_EMAIL=email)
    work = Path(tempfile.mkdtemp(prefix="seed-"))
    try:
        shutil.copytree(source, work, dirs_exist_ok=True)
        _git(["init", "-q", "-b", branch], work, env, token)
        _git(["add", "-A"], work, env, token)
        _git(["commit", "-qm", message], work, env, token)
        _git(["push", "-q", url, f"HEAD:{branch}"], work, env, token)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def seed_repository(
    url: str, token: str, source: Path, message: str, branch: str = "main", ca_file: str | None = None
) -> bool:
    """Push `source`'s files as the first commit of the repository at `url`. False if it already has commits."""
    env = git_env(token, ca_file)
    heads = subprocess.run(["git", "ls-remote", "--heads", url], env=env, capture_output=True, text=True)
    if heads.returncode != 0:
        raise SeedError(f"cannot reach {url}: {heads.stderr.strip().replace(token, '****')}")
    if heads.stdout.strip():
        return False
    push_first_commit(url, source, message, branch, env, token)
    return True
