"""Seeding GitLab's repositories over HTTPS with a token (git http-backend behind token auth), the deploy
key, and the wait for GitLab, against test doubles on loopback."""

from __future__ import annotations

import stat
import subprocess

import pytest

from tasks.gitlab_api import GitLab, GitLabError, bootstrap_gitlab, wait_until_ready
from tasks.seeding import SeedError, seed_repository
from tasks.state import LocalState
from tests.pipeline.git_http import GitHttpServer
from tests.platform.gitlab_double import GitLabDouble

TOKEN = "glpat-seed-0123456789"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(root / "gitops.git")], check=True)
    srv = GitHttpServer(root, TOKEN)
    yield srv
    srv.close()


def test_an_empty_repository_is_seeded_once(server, tmp_path):
    source = tmp_path / "content"
    (source / "apps").mkdir(parents=True)
    (source / "apps" / "a.yaml").write_text("kind: Namespace\n")
    assert seed_repository(server.url("gitops.git"), TOKEN, source, "Seed from the deploy") is True
    log = subprocess.run(["git", "--git-dir", str(server.root / "gitops.git"), "log", "--format=%s", "main"],
                         capture_output=True, text=True).stdout
    assert log.strip() == "Seed from the deploy"
    (source / "apps" / "a.yaml").write_text("changed\n")
    assert seed_repository(server.url("gitops.git"), TOKEN, source, "again") is False  # Git owns it now


def test_a_bad_token_fails_without_showing_it(server, tmp_path):
    (tmp_path / "c").mkdir()
    with pytest.raises(SeedError) as err:
        seed_repository(server.url("gitops.git"), "glpat-bad", tmp_path / "c", "x")
    assert "cannot reach" in str(err.value) and "glpat-bad" not in str(err.value)


def test_wait_until_ready_returns_the_version():
    double = GitLabDouble("t")
    try:
        assert wait_until_ready(GitLab(double.url, "t", backoff=0.01), timeout=5, interval=0.01) == "19.6.0"
    finally:
        double.close()


def test_wait_until_ready_gives_up_with_what_to_check():
    gl = GitLab("http://127.0.0.1:9", "t", retries=1, backoff=0.01)
    with pytest.raises(GitLabError) as err:
        wait_until_ready(gl, timeout=0.2, interval=0.05)
    assert "did not become ready within 0s" in str(err.value) and "gitlab-ctl status" in str(err.value)


def test_deploy_key_is_created_once_and_private(tmp_path):
    state = LocalState(tmp_path / "state")
    public = state.deploy_key_pair()
    assert public.startswith("ssh-ed25519 ") and public == LocalState(tmp_path / "state").deploy_key_pair()
    assert stat.S_IMODE(state.deploy_key.stat().st_mode) == 0o600
    assert b"OPENSSH PRIVATE KEY" in state.deploy_key.read_bytes()


def test_the_whole_gitlab_bootstrap_against_the_doubles_and_a_rerun_changes_nothing(server, tmp_path, sandbox_settings):
    """The GitLab API double plus git over HTTP: what the deploy does once GitLab answers."""
    from tests.validation import gitops

    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(server.root / "gitops-repo.git")], check=True)
    double = GitLabDouble(TOKEN, git_url=f"http://127.0.0.1:{server.port}")
    try:
        gl = GitLab(double.url, TOKEN, backoff=0.01)
        state = LocalState(tmp_path / "state")
        created = bootstrap_gitlab(gl, sandbox_settings, state, TOKEN, None)
        assert {"group boutique", "project boutique/app-repo", "project boutique/gitops-repo",
                "project access token gitops-bump", "variable GITOPS_TOKEN"} <= set(created)
        assert "gitops-repo seeded" in created and "runner mini-pc docker" in created
        assert "branch lab from v0.10.6" in created and any(c.startswith("commit ") for c in created)
        app_id = next(p["id"] for p in double.projects if p["path"] == "app-repo")
        assert ".gitlab-ci.yml" in double.files[app_id]["lab"] and "ci/bump.py" in double.files[app_id]["lab"]
        checkout = tmp_path / "check"
        subprocess.run(["git", "clone", "-q", str(server.root / "gitops-repo.git"), str(checkout)], check=True)
        dev = gitops.kustomize(checkout / "apps/online-boutique/overlays/dev")
        assert {c["image"].rsplit(":", 1)[1] for d in gitops.workloads(dev) for c in gitops.containers(d)
                if d["metadata"]["name"] != "redis-cart"} == {"c0ffee" + "0" * 34}
        for secret in (state.token_path("runner"), state.token_path("gitops"), state.deploy_key):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert bootstrap_gitlab(gl, sandbox_settings, state, TOKEN, None) == []
    finally:
        double.close()


def test_an_existing_deploy_key_is_never_replaced_and_a_lost_public_half_is_derived(tmp_path):
    state = LocalState(tmp_path / "state")
    public = state.deploy_key_pair()
    private = state.deploy_key.read_bytes()
    state.deploy_key_public.unlink()
    assert state.deploy_key_pair() == public and state.deploy_key.read_bytes() == private
    state.deploy_key_public.unlink()
    state.write_private(state.deploy_key, b"not a key\n")
    with pytest.raises(RuntimeError, match="is not an OpenSSH private key .* restore both"):
        state.deploy_key_pair()
    assert state.deploy_key.read_bytes() == b"not a key\n"
