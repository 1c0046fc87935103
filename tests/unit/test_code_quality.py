"""The code's own rules: lint, formatting and types clean (ruff and mypy, pinned in requirements-dev.txt,
configured in pyproject.toml); the rooms kept apart (a component never imports another component's module,
project modules are imported at the top); each state file named in one module only."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent
TASKS = REPO / "tasks"
# Modules that install or configure one component each. They may use the shared helpers (settings, state,
# templating, phases, packages, facts, artifacts, downloads, kube_client, helm_charts, gitlab_api, gitops_repo,
# seeding, inventory), never each other, except for what a module takes as its input, listed here.
COMPONENTS = {"foundation", "certificates", "gitlab", "gitlab_runner", "containerd", "kubeadm", "storage", "cni",
              "argocd", "sealed_secrets", "post_bootstrap"}
ALLOWED = {
    ("gitlab", "certificates"),  # takes the lab's PKI (LabPki) as its input
    # post_bootstrap is the sequence of phases 3-4: it calls the components in order.
    ("post_bootstrap", "cni"), ("post_bootstrap", "storage"), ("post_bootstrap", "argocd"),
    ("post_bootstrap", "sealed_secrets"), ("post_bootstrap", "certificates"),
}


@pytest.mark.parametrize("command", [["ruff", "check"], ["ruff", "format", "--check"], ["mypy"]],
                         ids=lambda c: " ".join(c))
def test_the_deploy_code_is_clean(command):
    proc = subprocess.run([str(BIN / command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def imported_modules(path: Path) -> list[tuple[str, int, bool]]:
    """(tasks module, line, inside a function?) for every import of a tasks module in `path`."""
    tree = ast.parse(path.read_text())
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] if node.module != "tasks" else [f"tasks.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("tasks."):
                found.append((name.split(".")[1], node.lineno, id(node) in nested))
    return found


def test_no_component_imports_another_components_module():
    offences = []
    for path in sorted(TASKS.glob("*.py")):
        for module, line, _ in imported_modules(path):
            if path.stem in COMPONENTS and module in COMPONENTS and (path.stem, module) not in ALLOWED:
                offences.append(f"tasks/{path.name}:{line} imports tasks.{module}")
    assert offences == []


def test_project_modules_are_imported_at_the_top_unless_a_comment_says_why():
    """A comment on the import or just above it says why it is imported late."""
    offences = []
    for path in [*sorted(TASKS.glob("*.py")), REPO / "deploy.py", *sorted((REPO / "tools").rglob("*.py"))]:
        lines = path.read_text().splitlines()
        for module, line, inside in imported_modules(path):
            if inside and not any("#" in text for text in lines[max(0, line - 4):line]):
                offences.append(f"{path.relative_to(REPO)}:{line} imports tasks.{module} inside a function")
    assert offences == []


def test_each_state_file_is_named_in_one_module():
    """tasks/state.py owns the state folder: no other code spells a file name of it."""
    source = (TASKS / "state.py").read_text()
    names = set(re.findall(r'self\.(?:root|pki) / "([^"]+)"', source)) | set(re.findall(r'": "([a-z-]+-token)"', source))
    assert {"kubeconfig", "runner-token", "argocd-deploy-key", "pki", "downloads"} <= names
    code = [p for p in [*TASKS.glob("*.py"), REPO / "deploy.py", *(REPO / "tools").rglob("*.py")] if p.name != "state.py"]
    for name in names - {"bin"}:  # "bin" is a common folder name elsewhere (the build cache has one too)
        quoted = re.compile(rf'"{re.escape(name)}"')
        users = [str(p.relative_to(REPO)) for p in code if quoted.search(p.read_text())]
        assert users == [], f"{name} is spelled out in {users}: ask LocalState for it"
