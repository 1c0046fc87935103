"""tools/lab/git_server.py, GitLab's SSH endpoint stand-in, without the lab: its seed and its forced command,
driven by real git through a fake `ssh` that does what sshd does with a forced command (runs it in the git
user's home with SSH_ORIGINAL_COMMAND set). The lab layer (tests/lab, tests/live) uses the real sshd."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tools.lab import git_server

pytestmark = pytest.mark.skipif(not Path("/usr/bin/git-shell").exists(), reason="git-shell (Debian's git) is needed")


@pytest.fixture
def served(tmp_path):
    """A seeded repository in a home folder, and a git environment whose ssh runs the wrapper in `mode`."""
    home = tmp_path / "home"
    content = tmp_path / "content"
    (content / "argocd").mkdir(parents=True)
    (content / "argocd" / "root.yaml").write_text("kind: Application\n")
    git_server.seed(home / "lab" / "gitops-repo.git", content)
    wrapper = tmp_path / "lab-git-shell"
    wrapper.write_text(git_server.WRAPPER)
    wrapper.chmod(0o755)

    def env(mode: str) -> dict[str, str]:
        fake_ssh = tmp_path / f"ssh-{mode}"
        # git calls: ssh [options] git@host "git-upload-pack 'lab/gitops-repo.git'"
        fake_ssh.write_text(f'#!/bin/sh\nfor last; do :; done\ncd {home} && SSH_ORIGINAL_COMMAND="$last" '
                            f'exec {wrapper} {mode}\n')
        fake_ssh.chmod(0o755)
        return dict(os.environ, GIT_SSH_COMMAND=str(fake_ssh), GIT_TERMINAL_PROMPT="0")

    return home, env


def git(*args: str, env: dict, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], env=env, cwd=cwd, capture_output=True, text=True)


def test_the_deploy_key_fetches_the_seeded_commit_and_may_not_push(served, tmp_path):
    _, env = served
    clone = git("clone", "-q", "git@gitlab.local:lab/gitops-repo.git", str(tmp_path / "clone"), env=env("read-only"))
    assert clone.returncode == 0, clone.stderr
    work = tmp_path / "clone"
    assert (work / "argocd" / "root.yaml").read_text() == "kind: Application\n"
    log = git("log", "--format=%s", env=env("read-only"), cwd=work).stdout.strip()
    assert log == git_server.SEED_MESSAGE
    (work / "drift.yaml").write_text("x: 1\n")
    identity = ["-c", "user.name=t", "-c", "user.email=t@invalid"]
    assert git(*identity, "add", "-A", env=env("read-only"), cwd=work).returncode == 0
    assert git(*identity, "commit", "-qm", "change", env=env("read-only"), cwd=work).returncode == 0
    refused = git("push", "-q", "origin", "HEAD:main", env=env("read-only"), cwd=work)
    assert refused.returncode != 0 and "read-only deploy key; pushing is refused" in refused.stderr
    pushed = git("push", "-q", "origin", "HEAD:main", env=env("read-write"), cwd=work)
    assert pushed.returncode == 0, pushed.stderr


def test_nothing_but_git_is_served(served, tmp_path):
    home, env = served
    proc = subprocess.run([env("read-write")["GIT_SSH_COMMAND"], "git@gitlab.local", "cat /etc/passwd"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "only git fetch and push are served" in proc.stderr


def test_each_key_is_held_to_git_by_a_forced_command():
    keys = git_server.authorized_keys("ssh-ed25519 AAAAdeploy argocd@gitops-lab\n", "ssh-ed25519 AAAAlab lab\n")
    assert keys.splitlines() == [
        'restrict,command="/usr/local/bin/lab-git-shell read-only" ssh-ed25519 AAAAdeploy argocd@gitops-lab',
        'restrict,command="/usr/local/bin/lab-git-shell read-write" ssh-ed25519 AAAAlab lab',
    ]
    assert git_server.repository_path("lab") == "srv/git/lab/gitops-repo.git"
