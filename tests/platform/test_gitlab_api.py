"""The GitLab client and the bootstrap against the GitLab API test double over real HTTP on loopback."""

from __future__ import annotations

import logging

import pytest

from tasks.gitlab_api import GitLab, GitLabError, bootstrap_projects, ensure_group, ensure_runner
from tests.platform.gitlab_double import GitLabDouble

TOKEN = "glpat-root-secret-123"
DEPLOY_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx argocd@lab"


@pytest.fixture
def double():
    server = GitLabDouble(TOKEN)
    yield server
    server.close()


def client(double: GitLabDouble, token: str = TOKEN) -> GitLab:
    return GitLab(double.url, token, backoff=0.01)


def run_bootstrap(double, stored_tokens):
    def gitops_token(project_id: int) -> str:
        from tasks.gitlab_api import ensure_project_token
        return ensure_project_token(client(double), project_id, "gitops-bump", "2027-11-01",
                                    lambda: stored_tokens.get("gitops"), lambda t: stored_tokens.update(gitops=t), [])
    return bootstrap_projects(client(double), "boutique", gitops_token, DEPLOY_KEY)


def test_bootstrap_creates_everything_once(double):
    stored = {}
    first = run_bootstrap(double, stored)
    assert first.created == ["group boutique", "project boutique/app-repo", "project boutique/gitops-repo",
                             "variable GITOPS_TOKEN", "variable GITOPS_REPO_URL", "deploy key argocd (read-only)"]
    variable = double.variables[first.app_project_id]["GITOPS_TOKEN"]
    assert variable["masked"] is True and variable["protected"] is True and variable["value"] == stored["gitops"]
    assert double.deploy_keys[first.gitops_project_id][0]["can_push"] is False


def test_a_rerun_finds_everything_and_creates_nothing(double):
    stored = {}
    run_bootstrap(double, stored)
    posts_before = [c for c in double.calls if c.startswith(("POST", "PUT"))]
    again = run_bootstrap(double, stored)
    assert again.created == []
    assert [c for c in double.calls if c.startswith(("POST", "PUT"))] == posts_before
    assert len(double.projects) == 2 and len(double.access_tokens[again.gitops_project_id]) == 1


def test_find_follows_pagination(double):
    for i in range(250):
        double.groups.append({"id": 1000 + i, "name": f"boutique-old{i}", "path": f"boutique-old{i}", "full_path": f"boutique-old{i}"})
    double.groups.append({"id": 5, "name": "boutique", "path": "boutique", "full_path": "boutique"})
    created = []
    group = ensure_group(client(double), "boutique", created)
    assert group["id"] == 5 and created == []
    assert sum(1 for c in double.calls if c == "GET /groups") == 3  # 251 items at 100 per page


def test_unauthorized_gives_one_clear_line_without_the_token(double):
    with pytest.raises(GitLabError) as err:
        client(double, "glpat-wrong").get("/groups")
    message = str(err.value)
    assert message.startswith("GitLab API GET /groups failed (HTTP 401): 401 Unauthorized. Check: the token is missing")
    assert "glpat-wrong" not in message and "\n" not in message


def test_forbidden_names_scope_and_role(double):
    with pytest.raises(GitLabError) as err:
        ensure_group(client(double, "glpat-readonly"), "boutique", [])
    assert "HTTP 403" in str(err.value) and "scope" in str(err.value)


def test_server_errors_are_retried(double, caplog):
    double.fail_next["/groups"] = [503, 502]
    caplog.set_level(logging.WARNING)
    created = []
    ensure_group(client(double), "boutique", created)
    assert created == ["group boutique"]
    assert "HTTP 503; retry 1/4" in caplog.text and TOKEN not in caplog.text


def test_persistent_server_errors_give_up_with_the_status(double):
    double.fail_next["/groups"] = [500] * 10
    with pytest.raises(GitLabError) as err:
        client(double).get("/groups")
    assert "HTTP 500" in str(err.value)


def test_an_unreachable_gitlab_is_a_clear_error():
    gl = GitLab("http://127.0.0.1:9", TOKEN, retries=2, backoff=0.01)
    with pytest.raises(GitLabError) as err:
        gl.get("/version")
    assert "no answer" in str(err.value) and TOKEN not in str(err.value)


def test_runner_is_created_once_and_its_token_kept(double):
    stored = {}
    kw = dict(description="mini-pc docker", tags=["docker", "lab"], stored=lambda: stored.get("runner"),
              store=lambda t: stored.update(runner=t))
    created = []
    token = ensure_runner(client(double), created=created, **kw)
    assert token.startswith("glrt-") and created == ["runner mini-pc docker"]
    again = []
    assert ensure_runner(client(double), created=again, **kw) == token and again == []
    assert len(double.runners) == 1


def test_a_revoked_project_token_is_replaced(double):
    stored = {}
    first = run_bootstrap(double, stored)
    old = stored["gitops"]
    double.access_tokens[first.gitops_project_id][0]["revoked"] = True
    second = run_bootstrap(double, stored)
    assert stored["gitops"] != old and "variable GITOPS_TOKEN (updated)" in second.created


def test_app_repo_imported_at_the_pinned_tag_with_ci_files_committed_once(double):
    from tasks.gitlab_api import ensure_branch_from_tag, ensure_files_committed

    result = bootstrap_projects(client(double), "boutique", lambda pid: "glpat-x", DEPLOY_KEY,
                                import_url="https://github.com/GoogleCloudPlatform/microservices-demo.git")
    app = next(p for p in double.projects if p["id"] == result.app_project_id)
    assert app["import_url"].endswith("microservices-demo.git")
    created = []
    ensure_branch_from_tag(client(double), app["id"], "lab", "v0.10.6", created)
    assert double.branches[app["id"]]["lab"] == "v0.10.6" and app["default_branch"] == "lab"
    files = {".gitlab-ci.yml": "stages: [test]\n", "ci/bump.py": "print()\n"}
    ensure_files_committed(client(double), app["id"], "lab", files, "Add the lab pipeline", created)
    assert created == ["branch lab from v0.10.6", "default branch lab", "commit 2 files to lab"]
    again = []
    ensure_branch_from_tag(client(double), app["id"], "lab", "v0.10.6", again)
    ensure_files_committed(client(double), app["id"], "lab", files, "Add the lab pipeline", again)
    assert again == [] and len(double.commits) == 1
    ensure_files_committed(client(double), app["id"], "lab", {**files, "ci/bump.py": "print(1)\n"}, "update", again)
    assert double.commits[-1]["actions"] == [{"action": "update", "file_path": "ci/bump.py", "content": "print(1)\n"}]
