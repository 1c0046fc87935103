"""Change gitops-repo from a CI job: clone with the project access token, apply an edit, commit, push; on a
rejected push (another pipeline pushed first) start again from the new remote head, a bounded number of
times. The token never appears in output."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlsplit, urlunsplit

MAX_ATTEMPTS = 5


class GitopsError(RuntimeError):
    pass


def authenticated_url(url: str, token: str) -> str:
    """https://host/path.git -> https://oauth2:TOKEN@host/path.git (GitLab's form for access tokens)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not token:
        return url
    return urlunsplit(parts._replace(netloc=f"oauth2:{quote(token, safe='')}@{parts.hostname}"
                                     + (f":{parts.port}" if parts.port else "")))


class Repo:
    def __init__(self, url: str, token: str, branch: str) -> None:
        self.url, self.token, self.branch = url, token, branch
        self.dir = Path(tempfile.mkdtemp(prefix="gitops-"))

    def _mask(self, text: str) -> str:
        return text.replace(quote(self.token, safe=""), "****").replace(self.token, "****") if self.token else text

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        proc = subprocess.run(["git", *args], cwd=self.dir, capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise GitopsError(f"git {args[0]} failed: {self._mask(proc.stderr.strip())}")
        return proc

    def clone(self) -> None:
        proc = subprocess.run(["git", "clone", "--quiet", "--branch", self.branch,
                               authenticated_url(self.url, self.token), str(self.dir)],
                              capture_output=True, text=True, env=dict(os.environ, GIT_TERMINAL_PROMPT="0"))
        if proc.returncode != 0:
            err = self._mask(proc.stderr.strip())
            hint = ""
            if any(s in err for s in ("401", "403", "Authentication failed", "could not read Username", "HTTP Basic")):
                hint = (" Authentication failed: check the CI/CD variable GITOPS_TOKEN (a project access token of "
                        "gitops-repo with the write_repository scope and at least the Developer role).")
            raise GitopsError(f"cannot clone {self.url} (branch {self.branch}).{hint} git said: {err}")
        self.git("config", "user.name", os.environ.get("GITOPS_COMMIT_NAME", "gitops-bump"))
        self.git("config", "user.email", os.environ.get("GITOPS_COMMIT_EMAIL", "gitops-bump@invalid"))


def change(url: str, token: str, branch: str, edit: Callable[[Path], list[str]], message: Callable[[list[str]], str]) -> bool:
    """Apply `edit` (returns what it changed, [] for nothing) and push it. True when a commit was pushed."""
    repo = Repo(url, token, branch)
    repo.clone()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        changed = edit(repo.dir)
        if not changed:
            print("gitops-repo already has this state: nothing to commit")
            return False
        repo.git("commit", "--quiet", "-am", message(changed))
        push = repo.git("push", "--quiet", "origin", f"HEAD:{branch}", check=False)
        if push.returncode == 0:
            print(f"pushed to {repo.url} ({branch}) on attempt {attempt}: {', '.join(changed)}")
            return True
        err = repo._mask(push.stderr.strip())
        if "rejected" not in err and "fetch first" not in err and "non-fast-forward" not in err:
            raise GitopsError(f"push to {repo.url} failed: {err}")
        print(f"push rejected (another pipeline pushed first), attempt {attempt}/{MAX_ATTEMPTS}: rebasing onto the new head")
        repo.git("fetch", "--quiet", "origin", branch)
        repo.git("reset", "--quiet", "--hard", f"origin/{branch}")  # then re-apply the edit on top
        time.sleep(attempt * 0.5)
    raise GitopsError(f"gave up after {MAX_ATTEMPTS} rejected pushes to {repo.url}")


def main_wrapper(run: Callable[[], int]) -> None:
    try:
        sys.exit(run())
    except (GitopsError, ValueError, FileNotFoundError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        sys.exit(1)
