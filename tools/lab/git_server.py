"""The lab's stand-in for GitLab's SSH endpoint: gitops-repo served over SSH from the platform host.

GitLab cannot be installed offline, so nothing in the lab answers `git@gitlab.local:<group>/gitops-repo.git`
the way GitLab's SSH endpoint would. This stand-in does, with the platform host's own sshd (which is what
Omnibus GitLab uses too, so the host keys phase 1 records for Argo CD are the ones it meets): a `git` user
whose home holds the bare repository at the same path, and two keys in its authorized_keys, each held to
git by a forced command:

- Argo CD's deploy key from the state folder, read-only (fetch only), as GitLab's read-only deploy keys are;
- the lab's own SSH key, read-write, for tests that commit to gitops-repo as a maintainer would.

At `lab up` the repository is seeded with `render_gitops_repo`, the function the deploy's GitLab bootstrap
seeds with (tasks/gitlab_api.py), rendered from the sandbox inventory's settings. Differences from GitLab,
named: the lab tool seeds it (the deploy's seeding goes through GitLab's API, which cannot run here), no
projects or permissions beyond the two keys, and the repository lives and dies with the platform host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from tools.lab.constants import SSH_KEY

USER = "git"
HOME = "srv/git"
SHELL_WRAPPER = "usr/local/bin/lab-git-shell"
SEED_MESSAGE = "Seed the gitops repository (lab: GitLab's SSH endpoint stand-in)"
BRANCH = "main"  # the branch the root Application tracks (tasks/gitlab_api.py GITOPS_BRANCH)
IDENTITY = ("gitops-lab (lab tool)", "lab@gitops-lab.invalid")

# sshd runs the forced command with the original one in SSH_ORIGINAL_COMMAND; git-shell then serves only
# git's own commands.
WRAPPER = """#!/bin/sh
# Lab only: GitLab's SSH endpoint stand-in (tools/lab/git_server.py). $1: read-only or read-write.
case "$SSH_ORIGINAL_COMMAND" in
  "git-upload-pack "*) ;;
  "git-receive-pack "*)
    if [ "$1" != read-write ]; then
      echo "GitLab stand-in: this is a read-only deploy key; pushing is refused" >&2
      exit 1
    fi ;;
  *) echo "GitLab stand-in: only git fetch and push are served" >&2; exit 1 ;;
esac
exec git-shell -c "$SSH_ORIGINAL_COMMAND"
"""


class GitStandInError(RuntimeError):
    pass


def repository_path(group: str) -> str:
    """Where `git@<gitlab_domain>:<group>/gitops-repo.git` lands: relative to the git user's home."""
    return f"{HOME}/{group}/gitops-repo.git"


def authorized_keys(deploy_key_public: str, lab_key_public: str) -> str:
    def line(mode: str, key: str) -> str:
        return f'restrict,command="/{SHELL_WRAPPER} {mode}" {key.strip()}\n'

    return line("read-only", deploy_key_public) + line("read-write", lab_key_public)


def seed(bare: Path, content: Path) -> None:
    """A bare repository at `bare` whose one commit on `BRANCH` holds `content`'s files."""
    from tasks.seeding import SeedError, push_first_commit  # (the project's virtualenv: see registry._sandbox)

    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    init = subprocess.run(["git", "init", "-q", "--bare", "-b", BRANCH, str(bare)], capture_output=True, text=True)
    if init.returncode != 0:
        raise GitStandInError(f"seeding the gitops-repo stand-in: git init failed: {init.stderr.strip()}")
    try:
        push_first_commit(str(bare), content, SEED_MESSAGE, BRANCH, env, identity=IDENTITY)
    except SeedError as exc:
        raise GitStandInError(f"seeding the gitops-repo stand-in: {exc}") from None


def _owner(root: Path, user: str) -> tuple[int, int] | None:
    for entry in (root / "etc/passwd").read_text().splitlines():
        fields = entry.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    return None


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for item in [path, *path.rglob("*")]:
        shutil.chown(item, uid, gid)


def install(root: Path, role: str, log: Callable[[str], None]) -> None:
    """Put the stand-in into the platform host's root filesystem (before it boots); nothing for other hosts."""
    if role != "platform":
        return
    from tasks.gitops_repo import render_gitops_repo  # (the project's virtualenv: see registry._sandbox)
    from tools.lab.registry import _sandbox

    settings, state, _ = _sandbox()
    if not (root / "usr/bin/git-shell").exists():
        raise GitStandInError(f"{root} has no git: the lab's base image lists git (tools/lab/lab.py BASE_PACKAGES)")
    if _owner(root, USER) is None:
        # '*': no password, and not locked (sshd refuses a locked account's keys too)
        subprocess.run(
            ["useradd", "--root", str(root), "--system", "--home-dir", f"/{HOME}", "--shell", "/bin/sh", USER],
            check=True,
            capture_output=True,
        )
        subprocess.run(["usermod", "--root", str(root), "-p", "*", USER], check=True, capture_output=True)
    owner = _owner(root, USER)
    if owner is None:
        raise GitStandInError(f"useradd made no {USER} user in {root}/etc/passwd")
    uid, gid = owner
    wrapper = root / SHELL_WRAPPER
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    ssh = root / HOME / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(
        authorized_keys(state.deploy_key_pair(), SSH_KEY.with_suffix(".pub").read_text())
    )
    ssh.chmod(0o700)
    (ssh / "authorized_keys").chmod(0o600)
    bare = root / repository_path(settings.gitlab_group)
    if not (bare / "HEAD").exists():
        with tempfile.TemporaryDirectory(prefix="lab-gitops-render-") as tmp:
            # The image tag the overlays start from: the pinned release (no app-repo pipeline runs in the lab).
            content = render_gitops_repo(settings, Path(tmp) / "gitops-repo", settings.online_boutique_version)
            seed(bare, content)
    _chown_tree(root / HOME, uid, gid)
    log(
        f"GitLab's SSH endpoint stand-in on {settings.platform.name}: git@{settings.gitlab_domain}:"
        f"{settings.gitlab_group}/gitops-repo.git, seeded by the lab tool (GitLab cannot be installed offline)"
    )


def lab_repo_url(settings_group: str, address: str) -> str:
    """The repository's URL from this machine (the lab's SSH key may push)."""
    return f"{USER}@{address}:{settings_group}/gitops-repo.git"
