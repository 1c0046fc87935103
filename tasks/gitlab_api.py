"""A small GitLab REST client (requests) for the platform phase's bootstrap, and the bootstrap itself.

Everything is find-or-create: a rerun finds the group, projects, runner, token, variable and deploy key it
made before and changes nothing. Errors name the call, the status and what to check; tokens never appear
in messages or logs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import requests

log = logging.getLogger("gitops_lab.gitlab")

RETRY_STATUSES = {500, 502, 503, 504}
HINTS = {
    401: "the token is missing, expired or revoked: check the root password / personal access token in the state folder",
    403: "the token lacks a scope or role for this call (api scope and Owner/Maintainer role are needed)",
    404: "the object or the GitLab URL does not exist (check gitlab_domain and that GitLab finished starting)",
}


class GitLabError(RuntimeError):
    def __init__(self, method: str, path: str, status: int | None, detail: str) -> None:
        hint = HINTS.get(status or 0, "")
        where = f"HTTP {status}" if status else "no answer"
        super().__init__(f"GitLab API {method} {path} failed ({where}): {detail}" + (f". Check: {hint}" if hint else ""))
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
                response = self.session.request(method, url, headers={"PRIVATE-TOKEN": self.token},
                                                verify=self.ca_file, timeout=30, **kwargs)
            except requests.RequestException as exc:
                if attempt == self.retries:
                    raise GitLabError(method, path, None, self._mask(str(exc))) from None
                log.warning("GitLab %s %s: %s; retry %d/%d", method, path, type(exc).__name__, attempt, self.retries)
            else:
                if response.status_code not in RETRY_STATUSES or attempt == self.retries:
                    break
                log.warning("GitLab %s %s: HTTP %d; retry %d/%d", method, path, response.status_code, attempt,
                            self.retries)
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


def wait_until_ready(gl: GitLab, timeout: float = 900, interval: float = 5, sleep: Callable[[float], None] = time.sleep) -> str:
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
            raise GitLabError("GET", "/version", None,
                              f"GitLab at {gl.url} did not become ready within {timeout:.0f}s (last: {last}). Check on "
                              "the platform host: `gitlab-ctl status`, `gitlab-ctl tail`, free memory (`free -m`)")
        sleep(interval)


# ------------------------------------------------------------------------------------------ bootstrap


@dataclass
class Bootstrap:
    group_id: int
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
        project = gl.post("/projects", name=name, path=name, namespace_id=group["id"], visibility="private",
                          initialize_with_readme=False, **extra)
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


def ensure_project_token(gl: GitLab, project_id: int, name: str, expires_at: str,
                         stored: Callable[[], str | None], store: Callable[[str], None], created: list[str]) -> str:
    """A project access token: GitLab shows the value only once, so it is kept in the state folder; a token
    that is gone from GitLab (revoked, expired) is replaced."""
    active = gl.find(f"/projects/{project_id}/access_tokens", lambda t: t["name"] == name and t.get("active", True)
                     and not t.get("revoked", False))
    current = stored()
    if active is not None and current:
        return current
    token = gl.post(f"/projects/{project_id}/access_tokens", name=name, scopes=["write_repository"],
                    access_level=30, expires_at=expires_at)["token"]
    store(token)
    created.append(f"project access token {name}")
    return token


def ensure_runner(gl: GitLab, description: str, tags: list[str], stored: Callable[[], str | None],
                  store: Callable[[str], None], created: list[str]) -> str:
    """An instance runner created through POST /user/runners (registration tokens are deprecated); its
    glrt- token is shown once and kept in the state folder. A rerun never registers a second runner."""
    existing = gl.find("/runners/all", lambda r: r.get("description") == description, type="instance_type")
    current = stored()
    if existing is not None and current:
        return current
    answer = gl.post("/user/runners", runner_type="instance_type", description=description, tag_list=",".join(tags),
                     run_untagged=True)
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


def ensure_files_committed(gl: GitLab, project_id: int, branch: str, files: dict[str, str], message: str,
                           created: list[str]) -> None:
    """One commit that creates or updates exactly the files whose content differs; none if all match."""
    import base64
    from urllib.parse import quote

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


def bootstrap_projects(gl: GitLab, group_path: str, gitops_token: Callable[[int], str], deploy_public_key: str,
                       import_url: str | None = None) -> Bootstrap:
    created: list[str] = []
    group = ensure_group(gl, group_path, created)
    app = ensure_project(gl, group, "app-repo", created, **({"import_url": import_url} if import_url else {}))
    gitops = ensure_project(gl, group, "gitops-repo", created)
    ensure_variable(gl, app["id"], "GITOPS_TOKEN", gitops_token(gitops["id"]), created)
    ensure_variable(gl, app["id"], "GITOPS_REPO_URL", gitops["http_url_to_repo"], created)
    ensure_deploy_key(gl, gitops["id"], "argocd (read-only)", deploy_public_key, created)
    return Bootstrap(group["id"], app["id"], gitops["id"], created)
