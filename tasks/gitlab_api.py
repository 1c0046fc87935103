"""A small GitLab REST client (requests), and the platform phase's bootstrap of GitLab through it.

`bootstrap_gitlab` makes everything the platform needs in GitLab. Everything is find-or-create: a rerun finds the group, projects, runner, token, variable and deploy key it
made before and changes nothing. Errors name the call, the status and what to check; tokens never appear
in messages or logs.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from tasks import images
from tasks.gitops_repo import render_gitops_repo
from tasks.seeding import seed_repository
from tasks.settings import Settings
from tasks.state import LocalState

log = logging.getLogger("gitops_lab.gitlab")

RETRY_STATUSES = {500, 502, 503, 504}
REPORTER = 20  # GitLab's access level that reads a group's repositories and registries
HINTS = {
    401: "the token is missing, expired or revoked: check the root password / personal access token in the state folder",
    403: "the token lacks a scope or role for this call (api scope and Owner/Maintainer role are needed)",
    404: "the object or the GitLab URL does not exist (check gitlab_domain and that GitLab finished starting)",
}


class GitLabError(RuntimeError):
    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        hint = HINTS.get(status or 0, "")
        where = f"HTTP {status}" if status else "no answer"
        super().__init__(
            f"GitLab API {method} {path} failed ({where}): {detail}" + (f". Check: {hint}" if hint else "")
        )
        self.status = status


@dataclass
class GitLab:
    url: str
    token: str
    ca_file: str | bool = True
    retries: int = 4
    backoff: float = 1.0
    session: requests.Session = field(default_factory=requests.Session)

    def _mask(self, text: str) -> str:
        return text.replace(self.token, "****") if self.token else text

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = f"{self.url.rstrip('/')}/api/v4{path}"
        for attempt in range(1, self.retries + 1):
            try:
                response = self.session.request(
                    method, url, headers={"PRIVATE-TOKEN": self.token}, verify=self.ca_file, timeout=30, **kwargs
                )
            except requests.RequestException as exc:
                if attempt == self.retries:
                    raise GitLabError(method, path, None, self._mask(str(exc))) from None
                log.warning("GitLab %s %s: %s; retry %d/%d", method, path, type(exc).__name__, attempt, self.retries)
            else:
                if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                    break
                log.warning(
                    "GitLab %s %s: HTTP %d; retry %d/%d", method, path, response.status_code, attempt, self.retries
                )
            time.sleep(self.backoff * attempt)
        if response.status_code >= 400:
            try:
                detail = response.json().get("message") or response.json().get("error") or response.text
            except ValueError:
                detail = response.text
            raise GitLabError(method, path, response.status_code, self._mask(str(detail))[:300])
        return response

    def get(self, path: str, /, **params: Any) -> Any:
        return self.request("GET", path, params=params).json()

    def post(self, path: str, /, **data: Any) -> Any:
        return self.request("POST", path, json=data).json()

    def put(self, path: str, /, **data: Any) -> Any:
        return self.request("PUT", path, json=data).json()

    def paginate(self, path: str, /, **params: Any) -> Iterator[dict]:
        """Every item of a list endpoint, following GitLab's X-Next-Page header."""
        page = "1"
        while page:
            response = self.request("GET", path, params={**params, "per_page": 100, "page": page})
            yield from response.json()
            page = response.headers.get("X-Next-Page", "")

    def find(self, path: str, match: Callable[[dict], bool], /, **params: Any) -> dict | None:
        return next((item for item in self.paginate(path, **params) if match(item)), None)


def wait_until_ready(
    gl: GitLab, timeout: float = 900, interval: float = 5, sleep: Callable[[float], None] = time.sleep
) -> str:
    """Poll GitLab's API until it answers (a fresh install takes minutes); returns its version."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        try:
            return gl.request("GET", "/version").json()["version"]
        except GitLabError as exc:
            if exc.status in (401, 403):
                raise
            last = str(exc)
        if time.monotonic() >= deadline:
            raise GitLabError(
                "GET",
                "/version",
                None,
                f"GitLab at {gl.url} did not become ready within {timeout:.0f}s (last: {last}). Check on "
                "the platform host: `gitlab-ctl status`, `gitlab-ctl tail`, free memory (`free -m`)",
            )
        sleep(interval)


# ------------------------------------------------------------------------------------------ bootstrap


@dataclass
class Bootstrap:
    group: dict
    app_project_id: int
    gitops_project_id: int
    created: list[str]


def ensure_group(gl: GitLab, path: str, created: list[str]) -> dict:
    group = gl.find("/groups", lambda g: g["full_path"] == path, search=path)
    if group is None:
        group = gl.post("/groups", name=path, path=path, visibility="private")
        created.append(f"group {path}")
    return group


def ensure_project(gl: GitLab, group: dict, name: str, created: list[str], **extra: Any) -> dict:
    full = f"{group['full_path']}/{name}"
    project = gl.find(f"/groups/{group['id']}/projects", lambda p: p["path_with_namespace"] == full, search=name)
    if project is None:
        project = gl.post(
            "/projects",
            name=name,
            path=name,
            namespace_id=group["id"],
            visibility="private",
            initialize_with_readme=False,
            **extra,
        )
        created.append(f"project {full}")
    return project


def ensure_variable(gl: GitLab, project_id: int, key: str, value: str, created: list[str]) -> None:
    """A masked, protected CI/CD variable; updated in place when the value changed."""
    existing = gl.find(f"/projects/{project_id}/variables", lambda v: v["key"] == key)
    if existing is None:
        gl.post(f"/projects/{project_id}/variables", key=key, value=value, masked=True, protected=True)
        created.append(f"variable {key}")
    elif existing.get("value") != value:
        gl.put(f"/projects/{project_id}/variables/{key}", value=value, masked=True, protected=True)
        created.append(f"variable {key} (updated)")


def ensure_deploy_key(gl: GitLab, project_id: int, title: str, public_key: str, created: list[str]) -> None:
    existing = gl.find(f"/projects/{project_id}/deploy_keys", lambda k: k["key"].split()[:2] == public_key.split()[:2])
    if existing is None:
        gl.post(f"/projects/{project_id}/deploy_keys", title=title, key=public_key, can_push=False)
        created.append(f"deploy key {title}")


def ensure_project_token(
    gl: GitLab,
    project_id: int,
    name: str,
    expires_at: str,
    stored: Callable[[], str | None],
    store: Callable[[str], None],
    created: list[str],
) -> str:
    """A project access token: GitLab shows the value only once, so it is kept in the state folder; a token
    that is gone from GitLab (revoked, expired) is replaced."""
    active = gl.find(
        f"/projects/{project_id}/access_tokens",
        lambda t: t["name"] == name and t.get("active", True) and not t.get("revoked", False),
    )
    current = stored()
    if active is not None and current:
        return current
    token = gl.post(
        f"/projects/{project_id}/access_tokens",
        name=name,
        scopes=["write_repository"],
        access_level=30,
        expires_at=expires_at,
    )["token"]
    store(token)
    created.append(f"project access token {name}")
    return token


def ensure_runner(
    gl: GitLab,
    description: str,
    tags: list[str],
    stored: Callable[[], str | None],
    store: Callable[[str], None],
    created: list[str],
) -> str:
    """An instance runner created through POST /user/runners (registration tokens are deprecated); its
    glrt- token is shown once and kept in the state folder. A rerun never registers a second runner."""
    existing = gl.find("/runners/all", lambda r: r.get("description") == description, type="instance_type")
    current = stored()
    if existing is not None and current:
        return current
    answer = gl.post(
        "/user/runners",
        runner_type="instance_type",
        description=description,
        tag_list=",".join(tags),
        run_untagged=True,
    )
    token = answer["token"]
    if not token.startswith("glrt-"):
        raise GitLabError("POST", "/user/runners", 201, "the answer's token does not start with glrt-")
    store(token)
    created.append(f"runner {description}")
    return token


def ensure_branch_from_tag(gl: GitLab, project_id: int, branch: str, tag: str, created: list[str]) -> None:
    """Make `branch` (created from `tag`) the project's default branch: an imported project then builds
    exactly the pinned release, whatever upstream's main has moved on to."""
    existing = gl.find(f"/projects/{project_id}/repository/branches", lambda b: b["name"] == branch, search=branch)
    if existing is None:
        gl.post(f"/projects/{project_id}/repository/branches", branch=branch, ref=tag)
        created.append(f"branch {branch} from {tag}")
    project = gl.get(f"/projects/{project_id}")
    if project.get("default_branch") != branch:
        gl.put(f"/projects/{project_id}", default_branch=branch)
        created.append(f"default branch {branch}")


def ensure_files_committed(
    gl: GitLab, project_id: int, branch: str, files: dict[str, str], message: str, created: list[str]
) -> None:
    """One commit that creates or updates exactly the files whose content differs; none if all match."""
    actions = []
    for path, content in sorted(files.items()):
        try:
            current = gl.get(f"/projects/{project_id}/repository/files/{quote(path, safe='')}", ref=branch)
            same = base64.b64decode(current["content"]).decode() == content
            if not same:
                actions.append({"action": "update", "file_path": path, "content": content})
        except GitLabError as exc:
            if exc.status != 404:
                raise
            actions.append({"action": "create", "file_path": path, "content": content})
    if actions:
        gl.post(f"/projects/{project_id}/repository/commits", branch=branch, commit_message=message, actions=actions)
        created.append(f"commit {len(actions)} files to {branch}")


def ensure_pull_account(gl: GitLab, group: dict, username: str, password: str, created: list[str]) -> None:
    """The nodes' read-only registry account: a user with the deploy's generated password, Reporter in the group
    (which may pull every project's images there). Its password is set once, when it is created."""
    user = gl.find("/users", lambda u: u["username"] == username, username=username)
    if user is None:
        user = gl.post(
            "/users",
            username=username,
            name="Cluster image pulls",
            email=f"{username}@gitops-lab.invalid",
            password=password,
            skip_confirmation=True,
        )
        created.append(f"user {username}")
    if gl.find(f"/groups/{group['id']}/members", lambda m: m["id"] == user["id"]) is None:
        gl.post(f"/groups/{group['id']}/members", user_id=user["id"], access_level=REPORTER)
        created.append(f"{username} reporter in {group['full_path']}")


def bootstrap_projects(
    gl: GitLab,
    group_path: str,
    gitops_token: Callable[[int], str],
    deploy_public_key: str,
    import_url: str | None = None,
) -> Bootstrap:
    created: list[str] = []
    group = ensure_group(gl, group_path, created)
    app = ensure_project(gl, group, "app-repo", created, **({"import_url": import_url} if import_url else {}))
    gitops = ensure_project(gl, group, "gitops-repo", created)
    ensure_variable(gl, app["id"], "GITOPS_TOKEN", gitops_token(gitops["id"]), created)
    ensure_variable(gl, app["id"], "GITOPS_REPO_URL", gitops["http_url_to_repo"], created)
    ensure_deploy_key(gl, gitops["id"], "argocd (read-only)", deploy_public_key, created)
    return Bootstrap(group, app["id"], gitops["id"], created)


def file_content(gl: GitLab, project_id: int, path: str, ref: str) -> str:
    current = gl.get(f"/projects/{project_id}/repository/files/{quote(path, safe='')}", ref=ref)
    return base64.b64decode(current["content"]).decode()


# ------------------------------------------------------------------------------------------ the platform's GitLab

OB_UPSTREAM = "https://github.com/GoogleCloudPlatform/microservices-demo.git"
APP_REPO_FILES = Path(__file__).resolve().parent.parent / "files" / "app-repo"
APP_BRANCH = "lab"
GITOPS_BRANCH = "main"


def deploy_api_token(state: LocalState) -> str:
    """The personal access token the deploy uses for GitLab's API; set on root by `gitlab-rails runner`."""
    return state.generated(state.token_path("gitlab_api"), prefix="glpat-")


def gitlab_client(settings: Settings, state: LocalState) -> GitLab:
    """GitLab's API on the platform host with the deploy's own token, trusting the lab CA."""
    return GitLab(f"https://{settings.platform.address}", deploy_api_token(state), ca_file=str(state.ca_cert))


def gitops_project(gl: GitLab, settings: Settings) -> dict:
    return gl.get(f"/projects/{quote(f'{settings.gitlab_group}/gitops-repo', safe='')}")


def wait_for_import(
    gl: GitLab, project_id: int, timeout: float = 900, sleep: Callable[[float], None] = time.sleep
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = gl.get(f"/projects/{project_id}").get("import_status") or "none"
        if status in ("finished", "none"):
            return
        if status == "failed" or time.monotonic() >= deadline:
            raise GitLabError(
                "GET",
                f"/projects/{project_id}",
                None,
                f"importing Online Boutique from {OB_UPSTREAM} ended as {status!r}: the platform host "
                "needs internet access for the import (or import it by hand and rerun)",
            )
        sleep(5)


def pipeline_files() -> dict[str, str]:
    """This repository's CI pipeline for app-repo (files/app-repo/), by path."""
    return {
        p.relative_to(APP_REPO_FILES).as_posix(): p.read_text()
        for p in sorted(APP_REPO_FILES.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def bootstrap_gitlab(
    gl: GitLab,
    settings: Settings,
    state: LocalState,
    seed_token: str,
    ca_file: str | None,
    import_url: str | None = OB_UPSTREAM,
) -> list[str]:
    """Everything in GitLab the platform needs, find-or-create: group, app-repo (Online Boutique at the pinned
    tag plus this repo's pipeline), gitops-repo (seeded), the gitops token as app-repo's CI variable, Argo CD's
    deploy key and the runner. Returns what it created or changed."""
    wait_until_ready(gl)
    created: list[str] = []
    expires = (dt.date.today() + dt.timedelta(days=360)).isoformat()

    def gitops_token(project_id: int) -> str:
        return ensure_project_token(
            gl,
            project_id,
            "gitops-bump",
            expires,
            lambda: state.token("gitops"),
            lambda token: state.store_token("gitops", token),
            created,
        )

    result = bootstrap_projects(gl, settings.gitlab_group, gitops_token, state.deploy_key_pair(), import_url)
    created += result.created
    ensure_pull_account(gl, result.group, images.PULL_USER, images.pull_password(state), created)
    if settings.image_mirror_project:  # its registry holds the upstream images the nodes pull
        ensure_project(gl, result.group, settings.image_mirror_project, created)
    if import_url:
        wait_for_import(gl, result.app_project_id)
        ensure_branch_from_tag(gl, result.app_project_id, APP_BRANCH, settings.online_boutique_version, created)
    ensure_files_committed(
        gl, result.app_project_id, APP_BRANCH, pipeline_files(), "Add the lab's CI pipeline [skip ci]", created
    )
    head = gl.get(f"/projects/{result.app_project_id}/repository/branches/{APP_BRANCH}")["commit"]["id"]
    gitops = gl.get(f"/projects/{result.gitops_project_id}")
    with tempfile.TemporaryDirectory() as tmp:
        content = render_gitops_repo(settings, Path(tmp) / "gitops-repo", image_tag=head)
        if seed_repository(
            gitops["http_url_to_repo"],
            seed_token,
            content,
            "Seed the gitops repository",
            branch=GITOPS_BRANCH,
            ca_file=ca_file,
        ):
            created.append("gitops-repo seeded")
    ensure_runner(
        gl,
        f"{settings.platform.hostname} docker",
        ["docker", "lab"],
        lambda: state.token("runner"),
        lambda token: state.store_token("runner", token),
        created,
    )
    return created
