"""The app-repo pipeline: the file validates; change detection schedules only what changed; the bump and
promotion scripts work for real against git repositories served over HTTP with token authentication,
including two bumps racing; gitlab-ci-local runs the bump job with the shell executor."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from tasks.gitops_repo import gitops_repo_url, registry_path, render_gitops_repo
from tests.conftest import REPO, unavailable
from tests.pipeline.git_http import GitHttpServer
from tests.validation import gitops

APP_REPO = REPO / "files" / "app-repo"
CI_DIR = APP_REPO / "ci"
GCL = REPO / "tests" / "pipeline" / "node_modules" / ".bin" / "gitlab-ci-local"
TOKEN = "glpat-test-token-0123456789"
FIRST_TAG = "1" * 40
NEW_TAG = "2" * 40
OVERLAY_DEV = "apps/online-boutique/overlays/dev/kustomization.yaml"
OVERLAY_PROD = "apps/online-boutique/overlays/prod/kustomization.yaml"


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def settings(sandbox_settings):
    return sandbox_settings


@pytest.fixture
def gitops_server(tmp_path, settings):
    """gitops-repo, rendered as the platform phase seeds it, as a bare repository behind the HTTP double."""
    root = tmp_path / "srv"
    root.mkdir()
    work = render_gitops_repo(settings, tmp_path / "seed", FIRST_TAG)
    git("init", "-q", "-b", "main", cwd=work)
    git("-c", "user.name=seed", "-c", "user.email=seed@invalid", "add", "-A", cwd=work)
    git("-c", "user.name=seed", "-c", "user.email=seed@invalid", "commit", "-qm", "seed", cwd=work)
    git("clone", "-q", "--bare", str(work), str(root / "gitops.git"), cwd=tmp_path)
    server = GitHttpServer(root, TOKEN)
    yield server
    server.close()


def script_env(server: GitHttpServer, settings, token: str = TOKEN, **extra: str) -> dict:
    env = dict(os.environ, GITOPS_REPO_URL=server.url("gitops.git"), GITOPS_TOKEN=token,
               CI_REGISTRY_IMAGE=registry_path(settings), CI_PIPELINE_URL="https://gitlab.local/boutique/app-repo/-/pipelines/42")
    env.update(extra)
    return env


def run_script(name: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CI_DIR / name), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def head_of(server: GitHttpServer, tmp_path: Path, name: str = "check") -> Path:
    dest = tmp_path / name
    if dest.exists():
        shutil.rmtree(dest)
    git("clone", "-q", str(server.root / "gitops.git"), str(dest), cwd=tmp_path)
    return dest


# ----------------------------------------------------------------------------------------- the file


def test_pipeline_validates_against_gitlabs_schema():
    proc = subprocess.run([str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema",
                           "vendor.gitlab-ci", str(APP_REPO / ".gitlab-ci.yml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_pipeline_shape():
    ci = yaml.safe_load((APP_REPO / ".gitlab-ci.yml").read_text())
    assert ci["stages"] == ["test", "build", "bump", "promote"]
    builds = {k for k in ci if k.startswith("build:")}
    assert len(builds) == 11
    assert "latest" not in (APP_REPO / ".gitlab-ci.yml").read_text()
    assert ci["bump:dev"]["resource_group"] and ci["promote:prod"]["rules"][0]["when"] == "manual"
    assert "rootless" in ci[".build"]["image"]["name"]


def test_ci_scripts_unit_tests_pass():
    proc = subprocess.run([sys.executable, "-m", "unittest", "-v"], cwd=CI_DIR, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Ran " in proc.stderr and " 0 tests" not in proc.stderr


def test_build_script_is_shellcheck_clean():
    if not shutil.which("shellcheck"):
        unavailable("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", str(CI_DIR / "build.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# ----------------------------------------------------------------------------------------- gitlab-ci-local


@pytest.fixture
def app_checkout(tmp_path):
    """app-repo as a developer's clone: origin/main has the base commit, HEAD has one more."""
    if not GCL.exists():
        unavailable("gitlab-ci-local is not installed (make pipeline-tools: npm ci in tests/pipeline)")
    if not shutil.which("rsync"):
        unavailable("gitlab-ci-local needs rsync (apt-get install rsync)")
    work = tmp_path / "app-repo"
    shutil.copytree(APP_REPO, work)
    for service in ("cartservice/src", "frontend", "adservice"):
        (work / "src" / service).mkdir(parents=True)
        (work / "src" / service / "main.txt").write_text("v1\n")
    git("init", "-q", "-b", "main", cwd=work)
    git("-c", "user.name=dev", "-c", "user.email=dev@invalid", "add", "-A", cwd=work)
    git("-c", "user.name=dev", "-c", "user.email=dev@invalid", "commit", "-qm", "base", cwd=work)
    git("init", "-q", "--bare", str(tmp_path / "app-origin.git"), cwd=tmp_path)
    git("remote", "add", "origin", str(tmp_path / "app-origin.git"), cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
    git("remote", "set-head", "origin", "main", cwd=work)
    return work


def gcl(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(GCL), *args], cwd=work, capture_output=True, text=True, timeout=600)


def scheduled_jobs(listing: str) -> set[str]:
    return {line.split()[0] for line in listing.splitlines()[1:] if line.strip() and ":" in line.split()[0]}


def commit_change(work: Path, path: str) -> None:
    with open(work / path, "a") as f:
        f.write("change\n")
    git("-c", "user.name=dev", "-c", "user.email=dev@invalid", "commit", "-qam", f"change {path}", cwd=work)


def test_a_change_in_cartservice_schedules_only_its_build(app_checkout):
    commit_change(app_checkout, "src/cartservice/src/main.txt")
    proc = gcl(app_checkout, "--list")
    assert proc.returncode == 0, proc.stderr
    jobs = scheduled_jobs(proc.stdout)
    assert {j for j in jobs if j.startswith(("build:", "mirror:", "test:"))} == {"build:cartservice"}
    assert {"bump:dev", "promote:prod"} <= jobs


def test_a_change_in_the_ci_scripts_runs_their_tests_and_builds_nothing(app_checkout):
    commit_change(app_checkout, "ci/bump.py")
    jobs = scheduled_jobs(gcl(app_checkout, "--list").stdout)
    assert "test:ci-scripts" in jobs and not any(j.startswith("build:") for j in jobs)


def test_build_all_schedules_every_service(app_checkout):
    jobs = scheduled_jobs(gcl(app_checkout, "--list", "--variable", "BUILD_ALL=true").stdout)
    assert len([j for j in jobs if j.startswith("build:")]) == 11 and "mirror:redis-cart" in jobs


def test_preview_expands_the_build_template(app_checkout):
    proc = gcl(app_checkout, "--preview")
    assert proc.returncode == 0, proc.stderr
    preview = yaml.safe_load(proc.stdout)
    assert preview["build:frontend"]["script"] == ['sh ci/build.sh "$SERVICE" "$CONTEXT" "$DOCKERFILE_DIR"']


def test_gitlab_ci_local_runs_the_bump_job_for_real(app_checkout, gitops_server, settings, tmp_path):
    proc = gcl(app_checkout, "--force-shell-executor", "--variable", f"GITOPS_REPO_URL={gitops_server.url('gitops.git')}",
               "--variable", f"GITOPS_TOKEN={TOKEN}", "--variable", f"CI_REGISTRY_IMAGE={registry_path(settings)}",
               "--variable", "BUMP_SERVICES=frontend", "bump:dev")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert TOKEN not in proc.stdout + proc.stderr
    head_sha = git("rev-parse", "HEAD", cwd=app_checkout).strip()
    checkout = head_of(gitops_server, tmp_path)
    rendered = gitops.kustomize(checkout / "apps/online-boutique/overlays/dev")
    images = {c["image"] for d in gitops.workloads(rendered) for c in gitops.containers(d)}
    assert f"{registry_path(settings)}/frontend:{head_sha}" in images
    assert f"{registry_path(settings)}/cartservice:{FIRST_TAG}" in images


# ----------------------------------------------------------------------------------------- bump, for real


def test_bump_sets_the_tag_and_the_overlay_renders_it(gitops_server, settings, tmp_path):
    proc = run_script("bump.py", "--tag", NEW_TAG, "--services", "cartservice,frontend", env=script_env(gitops_server, settings))
    assert proc.returncode == 0, proc.stderr
    checkout = head_of(gitops_server, tmp_path)
    message = git("log", "-1", "--format=%B", cwd=checkout)
    assert message.startswith(f"[skip ci] bump cartservice, frontend to {NEW_TAG[:12]} in dev")
    assert "pipelines/42" in message
    rendered = gitops.kustomize(checkout / "apps/online-boutique/overlays/dev")
    images = {d["metadata"]["name"]: c["image"] for d in gitops.workloads(rendered) for c in gitops.containers(d)}
    assert images["cartservice"] == f"{registry_path(settings)}/cartservice:{NEW_TAG}"
    assert images["adservice"].endswith(f":{FIRST_TAG}")
    changed = git("diff", "--stat", "HEAD~1", cwd=checkout)
    assert OVERLAY_DEV in changed and "2 insertions(+), 2 deletions(-)" in changed


def test_an_identical_bump_makes_no_commit(gitops_server, settings, tmp_path):
    env = script_env(gitops_server, settings)
    assert run_script("bump.py", "--tag", NEW_TAG, "--services", "frontend", env=env).returncode == 0
    before = git("rev-parse", "HEAD", cwd=head_of(gitops_server, tmp_path))
    again = run_script("bump.py", "--tag", NEW_TAG, "--services", "frontend", env=env)
    assert again.returncode == 0 and "nothing to commit" in again.stdout
    assert git("rev-parse", "HEAD", cwd=head_of(gitops_server, tmp_path, "check2")) == before


def test_two_racing_bumps_both_land(gitops_server, settings, tmp_path):
    """Two pipelines clone the same head; whichever pushes second is rejected, rebases and retries."""
    env = script_env(gitops_server, settings)
    barrier = threading.Barrier(2)
    results = {}

    def bump(service: str, tag: str) -> None:
        barrier.wait()
        results[service] = run_script("bump.py", "--tag", tag, "--services", service, env=env)

    threads = [threading.Thread(target=bump, args=("cartservice", "3" * 40)),
               threading.Thread(target=bump, args=("currencyservice", "4" * 40))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}
    checkout = head_of(gitops_server, tmp_path)
    tags = {d["metadata"]["name"]: c["image"].rsplit(":", 1)[1]
            for d in gitops.workloads(gitops.kustomize(checkout / "apps/online-boutique/overlays/dev"))
            for c in gitops.containers(d)}
    assert tags["cartservice"] == "3" * 40 and tags["currencyservice"] == "4" * 40
    assert len(git("log", "--format=%H", cwd=checkout).split()) == 3  # seed + two bumps


def test_a_rejected_push_is_retried_after_a_rebase(gitops_server, settings, tmp_path, monkeypatch):
    """Deterministic version of the race: another commit lands between our clone and our push."""
    sys.path.insert(0, str(CI_DIR))
    import gitops_git  # noqa: E402

    other = head_of(gitops_server, tmp_path, "other")
    original_commit = gitops_git.Repo.git
    pushed_first = {}

    def git_with_interference(self, *args, check=True):
        if args[0] == "push" and not pushed_first:
            (other / "NOTES.md").write_text("someone else was faster\n")
            git("-c", "user.name=o", "-c", "user.email=o@invalid", "add", "NOTES.md", cwd=other)
            git("-c", "user.name=o", "-c", "user.email=o@invalid", "commit", "-qm", "other", cwd=other)
            git("push", "-q", "origin", "main", cwd=other)
            pushed_first["done"] = True
        return original_commit(self, *args, check=check)

    monkeypatch.setattr(gitops_git.Repo, "git", git_with_interference)
    for key, value in script_env(gitops_server, settings).items():
        monkeypatch.setenv(key, value)
    from kustomize_images import set_image  # noqa: E402

    def edit(d: Path) -> list[str]:
        path = d / OVERLAY_DEV
        text = path.read_text()
        new = set_image(text, "frontend", f"{registry_path(settings)}/frontend", NEW_TAG)
        path.write_text(new)
        return ["frontend"] if new != text else []

    assert gitops_git.change(gitops_server.url("gitops.git"), TOKEN, "main", edit, lambda c: "[skip ci] test") is True
    checkout = head_of(gitops_server, tmp_path)
    assert (checkout / "NOTES.md").exists() and NEW_TAG in (checkout / OVERLAY_DEV).read_text()


def test_a_bad_token_fails_clearly_and_changes_nothing(gitops_server, settings, tmp_path):
    before = git("rev-parse", "HEAD", cwd=head_of(gitops_server, tmp_path))
    proc = run_script("bump.py", "--tag", NEW_TAG, "--services", "frontend",
                      env=script_env(gitops_server, settings, token="glpat-wrong"))
    assert proc.returncode == 1
    assert "Authentication failed: check the CI/CD variable GITOPS_TOKEN" in proc.stderr
    assert "glpat-wrong" not in proc.stdout + proc.stderr
    assert git("rev-parse", "HEAD", cwd=head_of(gitops_server, tmp_path, "check2")) == before


def test_a_missing_overlay_fails_clearly_and_changes_nothing(gitops_server, settings, tmp_path):
    before = git("rev-parse", "HEAD", cwd=head_of(gitops_server, tmp_path))
    proc = run_script("bump.py", "--tag", NEW_TAG, "--environment", "staging", "--services", "frontend",
                      env=script_env(gitops_server, settings))
    assert proc.returncode == 1
    assert "apps/online-boutique/overlays/staging/kustomization.yaml is not in gitops-repo" in proc.stderr
    assert git("rev-parse", "HEAD", cwd=head_of(gitops_server, tmp_path, "check2")) == before


def test_no_built_services_means_nothing_to_do(gitops_server, settings, tmp_path):
    (tmp_path / "built").mkdir()
    proc = run_script("bump.py", "--tag", NEW_TAG, "--services-from", str(tmp_path / "built"),
                      env=script_env(gitops_server, settings))
    assert proc.returncode == 0 and "nothing to bump" in proc.stdout
    assert gitops_server.requests == []  # did not even clone


# ----------------------------------------------------------------------------------------- promotion


def test_promote_copies_dev_tags_of_chosen_services_to_prod(gitops_server, settings, tmp_path):
    env = script_env(gitops_server, settings)
    assert run_script("bump.py", "--tag", NEW_TAG, "--services", "frontend,cartservice", env=env).returncode == 0
    proc = run_script("promote.py", "--services", "frontend", env=env)
    assert proc.returncode == 0, proc.stderr
    checkout = head_of(gitops_server, tmp_path)
    prod = {d["metadata"]["name"]: c["image"].rsplit(":", 1)[1]
            for d in gitops.workloads(gitops.kustomize(checkout / "apps/online-boutique/overlays/prod"))
            for c in gitops.containers(d)}
    assert prod["frontend"] == NEW_TAG and prod["cartservice"] == FIRST_TAG
    assert git("log", "-1", "--format=%s", cwd=checkout).startswith("[skip ci] promote frontend=")
    everything = run_script("promote.py", "--services", "all", env=env)
    assert everything.returncode == 0
    prod_images = {i["name"]: i["newTag"] for i in
                   yaml.safe_load((head_of(gitops_server, tmp_path, "check2") / OVERLAY_PROD).read_text())["images"]}
    assert "loadgenerator" not in prod_images  # dev-only: stays out of prod
    assert [s for s, tag in prod_images.items() if tag == NEW_TAG] == ["cartservice", "frontend"]


def test_promoting_an_unknown_service_fails(gitops_server, settings):
    proc = run_script("promote.py", "--services", "nosuchservice", env=script_env(gitops_server, settings))
    assert proc.returncode == 1 and "not in the dev overlay: nosuchservice" in proc.stderr


def test_the_gitops_url_the_platform_phase_sets_is_the_repo_argo_cd_reads(settings):
    assert gitops_repo_url(settings) == "git@gitlab.local:boutique/gitops-repo.git"
