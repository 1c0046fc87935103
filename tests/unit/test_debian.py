"""Supported Debian releases: what preflight accepts and refuses, and what each release changes in the plan."""

from __future__ import annotations

import pytest

from tasks import debian


def distribution(codename: str, version: str | None, distro_id: str = "debian", name: str = "Debian") -> dict:
    meta = {"ID": distro_id, "VERSION_CODENAME": codename, "PRETTY_NAME": f"{name} {version} ({codename})"}
    if version is not None:
        meta["VERSION_ID"] = version
    major = int(version.split(".")[0]) if version else None
    return {"name": name, "major": major, "minor": None, "release_meta": meta}


@pytest.mark.parametrize("codename, version", [("bookworm", "12"), ("trixie", "13")])
def test_both_supported_releases_are_recognised(codename, version):
    release = debian.find_release(distribution(codename, version))
    assert release is not None and release.codename == codename and release.version == int(version)
    assert debian.release_problem(distribution(codename, version)) is None


@pytest.mark.parametrize("facts, shown", [
    (distribution("bullseye", "11"), "Debian 11 (bullseye)"),
    (distribution("forky", None), "Debian (forky)"),  # testing: the next codename, no VERSION_ID yet
    (distribution("noble", "24.04", distro_id="ubuntu", name="Ubuntu"), "Ubuntu 24.04 (noble)"),
    ({"name": None, "major": None, "minor": None, "release_meta": {}}, "an unknown system"),
])
def test_other_releases_are_refused_in_one_line_naming_them_and_the_supported_ones(facts, shown):
    problem = debian.release_problem(facts)
    assert problem == (f"{shown} is not a supported release (supported: Debian 12 (bookworm), Debian 13 (trixie)). "
                       "Fix: install Debian 13 (trixie) on it")
    assert "\n" not in problem


def test_a_codename_with_the_wrong_version_is_not_taken_for_the_release():
    # e.g. a host upgraded half-way, whose os-release names trixie with bookworm's version
    assert debian.find_release(distribution("trixie", "12")) is None


@pytest.mark.parametrize("codename, version, packages", [
    ("bookworm", "12", "docker.io"),
    ("trixie", "13", "docker.io docker-cli"),  # Debian 13 split the command line out, as a mere Recommends
])
def test_the_platform_host_gets_dockers_engine_and_command_line_on_either_release(codename, version, packages):
    from tasks import gitlab_runner
    from tests.unit.plan import plan

    p = plan(gitlab_runner.install_docker, host_name="mini-pc",
             facts={"LinuxDistribution": distribution(codename, version), "DebPackages": {},
                    "SystemdStatus": {}, "SystemdEnabled": {}})
    assert any(c.endswith(f"install --no-install-recommends {packages}") for c in p.commands()), p.commands()
