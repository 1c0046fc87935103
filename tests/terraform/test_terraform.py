"""terraform/: static checks of the HCL and the inventory contract; then, with OpenTofu and the libvirt
provider built from the Go module proxy, `tofu init` from a local mirror, `validate`, and `plan` against a
libvirt daemon started by the test with its built-in test driver."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import hcl2
import pytest

from tasks.inventory import InventoryError, hosts_from_terraform
from tasks.settings import load_settings
from tests.conftest import REPO, load_inventory, unavailable
from tests.processes import stop_process
from tools.gobuild import ToolUnavailable, go_tool

TF = REPO / "terraform"
SAMPLE_OUTPUT = REPO / "tests" / "fixtures" / "terraform-output.json"
# Variables that can be wrong in ways a type cannot catch must have a validation block.
MUST_VALIDATE = {"network", "ssh_user", "ssh_public_key", "platform", "control_plane", "workers"}


def load(path: Path) -> dict:
    with open(path) as f:
        return hcl2.load(f)


def tf_files() -> list[Path]:
    return sorted(TF.rglob("*.tf"))


def test_every_file_parses():
    assert len(tf_files()) >= 7
    for path in tf_files():
        load(path)


def test_every_variable_has_type_description_and_needed_validation():
    for path in [TF / "variables.tf", TF / "modules/libvirt/variables.tf"]:
        for block in load(path)["variable"]:
            (name, spec), = block.items()
            name = name.strip('"')
            assert "type" in spec and spec.get("description"), f"{path.name}: variable {name}"
            if path.parent == TF and name in MUST_VALIDATE:
                assert spec.get("validation"), f"variable {name} needs a validation block"
                for v in spec["validation"]:
                    message = v["error_message"].strip('"')
                    assert message.endswith(".") and len(message) > 20


def test_provider_is_pinned_exactly():
    providers = load(TF / "versions.tf")["terraform"][0]["required_providers"][0]
    assert providers["libvirt"]["version"].strip('"') == "= 0.8.3"


def test_the_output_is_the_inventory_contract():
    outputs = {k.strip('"'): v for block in load(TF / "outputs.tf")["output"] for k, v in block.items()}
    value = outputs["inventory"]["value"]
    text = json.dumps(value)
    for field in ("platform", "control_plane", "worker", "name", "address", "ssh_user"):
        assert field in text


def test_lab_inventory_reads_a_terraform_output_file():
    settings = load_settings(load_inventory(REPO / "inventories" / "lab.py",
                                            {"LAB_TERRAFORM_OUTPUT": str(SAMPLE_OUTPUT), "PYTHONDONTWRITEBYTECODE": "1"}))
    assert [n.name for n in settings.workers] == ["k8s-worker1", "k8s-worker2", "k8s-worker3"]
    assert str(settings.platform.address) == "192.168.10.20"


def test_lab_inventory_without_the_variable_keeps_its_own_addresses():
    settings = load_settings(load_inventory(REPO / "inventories" / "lab.py"))
    assert str(settings.platform.address) == "192.168.10.10"


def test_terraform_hosts_get_their_ssh_user_and_sudo():
    groups = hosts_from_terraform(str(SAMPLE_OUTPUT))
    name, data = groups["worker"][2]
    assert name == "k8s-worker3" and data == {"address": "192.168.10.24", "ssh_hostname": "192.168.10.24",
                                              "ssh_user": "debian", "_sudo": True}


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("{not json", "is not JSON"),
    ('{"other": {"value": {}}}', "has no `inventory` output"),
    ('{"platform": [], "control_plane": [{"name": "x"}], "worker": []}', "a control_plane entry lacks name or address"),
])
def test_a_bad_output_file_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "out.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InventoryError) as err:
        hosts_from_terraform(str(path))
    assert message in str(err.value)


def test_the_pyinfra_cli_reports_a_bad_output_file_in_one_line(tmp_path):
    from tests.conftest import PYINFRA

    proc = subprocess.run([PYINFRA, "-y", "inventories/lab.py", "deploy.py"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, LAB_TERRAFORM_OUTPUT=str(tmp_path / "missing.json")), timeout=60)
    assert proc.returncode != 0 and "LAB_TERRAFORM_OUTPUT" in proc.stderr and "does not exist" in proc.stderr


CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"


def test_checkov_terraform_checks_pass_or_are_explained():
    if not CHECKOV.exists():
        unavailable("checkov is not installed (make checkov)")
    proc = subprocess.run([str(CHECKOV), "--skip-download", "--quiet", "--framework", "terraform", "-o", "json",
                           "-d", str(TF)], capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    # checkov has no policies for the libvirt provider's resources: it then prints only a summary. Either
    # way nothing may fail or fail to parse.
    failed = [f"{f['check_id']}: {f['resource']}" for r in reports if "results" in r for f in r["results"]["failed_checks"]]
    summary_failures = [r.get("failed", 0) + r.get("parsing_errors", 0) for r in reports if "results" not in r]
    assert failed == [] and not any(summary_failures), proc.stdout[-2000:]


# ----------------------------------------------------------------------------------------- real OpenTofu


@pytest.fixture(scope="module")
def tofu_env(tmp_path_factory):
    try:
        tofu = go_tool("tofu")
        provider = go_tool("terraform-provider-libvirt")
    except ToolUnavailable as exc:
        unavailable(str(exc))
    work = tmp_path_factory.mktemp("tofu")
    mirror = work / "mirror" / "registry.opentofu.org" / "dmacvicar" / "libvirt" / "0.8.3" / "linux_amd64"
    mirror.mkdir(parents=True)
    shutil.copy(provider, mirror / "terraform-provider-libvirt_v0.8.3")
    (work / "tofurc").write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{work / "mirror"}"\n  }}\n'
        '  direct {\n    exclude = ["*/*/*"]\n  }\n}\n')
    shutil.copytree(TF, work / "terraform")
    env = dict(os.environ, TF_CLI_CONFIG_FILE=str(work / "tofurc"), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1",
               TF_DATA_DIR=str(work / ".terraform"))
    return tofu, work / "terraform", env


def run_tofu(tofu_env, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    tofu, cwd, env = tofu_env
    return subprocess.run([str(tofu), *args], cwd=cwd, env={**env, **(extra_env or {})}, capture_output=True,
                          text=True, timeout=600)


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxTestKeyOnly lab@test"


def test_tofu_init_offline_and_validate(tofu_env):
    init = run_tofu(tofu_env, "init", "-input=false", "-no-color")
    assert init.returncode == 0, init.stdout + init.stderr
    assert "dmacvicar/libvirt v0.8.3" in init.stdout
    validate = run_tofu(tofu_env, "validate", "-no-color")
    assert validate.returncode == 0 and "Success" in validate.stdout, validate.stdout + validate.stderr


_NET = 'network={mode="%s",bridge="br0",cidr="%s",gateway="192.168.10.1",dns=[]}'
_VM = '{name="%s",address="%s",vcpu=%d,memory_mb=%d,disk_gb=40}'
# One plan per validation block of terraform/variables.tf that its block must refuse, with the message it
# must give: deleting (or loosening) any validation turns its case red.
VALIDATION_CASES = {
    "network.mode must be": [_NET % ("nat", "192.168.10.0/24")],
    "network.cidr must be a CIDR": [_NET % ("bridge", "192.168.10.0")],
    "ssh_user must be a valid Linux user name": ["ssh_user=Lab User"],
    "ssh_public_key must be an OpenSSH public key": ["ssh_public_key=not-a-key"],
    "platform.address must be an IPv4 address": ["platform=" + _VM % ("mini-pc", "mini-pc.lab", 4, 8192)],
    "The platform VM needs at least 2 vCPUs and 4096 MB": ["platform=" + _VM % ("mini-pc", "192.168.10.10", 4, 2048)],
    "control_plane.address must be an IPv4 address": ["control_plane=" + _VM % ("k8s-master", "master", 2, 4096)],
    "The control plane needs at least 2 vCPUs and 2048 MB": ["control_plane=" + _VM % ("k8s-master", "192.168.10.11", 1, 4096)],
    "The control plane needs at least 2 vCPUs and 2048 MB of memory": [
        "control_plane=" + _VM % ("k8s-master", "192.168.10.11", 2, 1024)],
    "At least one worker is needed.": ["workers=[]"],
    "Every worker needs at least 4096 MB of memory": ["workers=[" + _VM % ("w1", "192.168.10.12", 2, 1024) + "]"],
    "Every worker address must be an IPv4 address": ["workers=[" + _VM % ("w1", "w1.lab", 2, 8192) + "]"],
    "Worker names must be unique.": ["workers=[" + _VM % ("w1", "192.168.10.12", 2, 8192) + ","
                                     + _VM % ("w1", "192.168.10.13", 2, 8192) + "]"],
}


def test_every_validation_block_has_a_case():
    messages = [m for m in re.findall(r'error_message\s*=\s*"(.*)"', (TF / "variables.tf").read_text())]
    for message in messages:
        plain = message.replace('\\"', '"')
        assert any(plain.startswith(case) for case in VALIDATION_CASES), f"no refused plan tests: {plain}"


@pytest.mark.parametrize("expected", VALIDATION_CASES, ids=lambda m: m[:40])
def test_a_plan_breaking_a_rule_is_refused_with_its_message(tofu_env, expected):
    run_tofu(tofu_env, "init", "-input=false", "-no-color")
    variables = ["-var", f"ssh_public_key={KEY}"]
    for assignment in VALIDATION_CASES[expected]:
        variables += ["-var", assignment]
    proc = run_tofu(tofu_env, "plan", "-input=false", "-no-color", *variables)
    output = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0 and expected in output, output[-1500:]


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    daemon = shutil.which("libvirtd") or "/usr/sbin/libvirtd"
    if not Path(daemon).exists():
        unavailable("libvirtd is not installed (apt-get install libvirt-daemon)")
    run = tmp_path_factory.mktemp("libvirt")
    conf = run / "libvirtd.conf"
    conf.write_text(f'unix_sock_dir = "{run}"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\n'
                    'listen_tls = 0\nlisten_tcp = 0\n')
    # An empty driver directory: only libvirt's built-in test driver (no QEMU, no system users needed).
    (run / "no-drivers").mkdir()
    proc = subprocess.Popen([daemon, "--config", str(conf), "--pid-file", str(run / "libvirtd.pid")],
                            stdout=open(run / "libvirtd.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=dict(os.environ, LIBVIRT_DRIVER_DIR=str(run / "no-drivers")))
    socket = run / "libvirt-sock"
    deadline = time.monotonic() + 20
    while not socket.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    if not socket.exists():
        proc.kill()
        pytest.fail(f"libvirtd did not start:\n{(run / 'libvirtd.log').read_text()[-2000:]}")
    yield f"test+unix:///default?socket={socket}"
    stop_process(proc, wait_s=20)


def test_tofu_plan_against_libvirts_test_driver(tofu_env, libvirtd):
    run_tofu(tofu_env, "init", "-input=false", "-no-color")
    proc = run_tofu(tofu_env, "plan", "-input=false", "-no-color", "-var", f"libvirt_uri={libvirtd}",
                    "-var", f"ssh_public_key={KEY}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for resource in ('module.lab.libvirt_domain.vm["mini-pc"]', 'module.lab.libvirt_domain.vm["k8s-worker2"]',
                     'module.lab.libvirt_cloudinit_disk.init["k8s-master"]', "module.lab.libvirt_volume.base"):
        assert f"# {resource} will be created" in proc.stdout
    assert "Plan: 13 to add, 0 to change, 0 to destroy." in proc.stdout
