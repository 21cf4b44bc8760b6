"""Our constructs/ folder never shadows PyPI's `constructs`, from the repo root or
after a wheel install, and the CDK CLI can run the app that cdk.json names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from harness import EXAMPLES, REPO_ROOT, run_cli

from hivemind import toolchain

PROBE = """
import constructs, hivemind, hivemind_constructs.stack, hivemind_templates
import hivemind.ops.detect, hivemind_agents.medic
print(constructs.__file__); print(constructs.Construct.__module__)
print(hivemind.__file__); print(hivemind_constructs.stack.__file__)
print(hivemind_agents.medic.__file__)
"""


def _probe(cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_constructs_is_pypis_from_the_repo_root() -> None:
    constructs_file, module, _hivemind, ours, _agents = _probe(REPO_ROOT)
    assert "site-packages" in constructs_file
    assert module.startswith("constructs")
    assert Path(ours).parent == REPO_ROOT / "constructs"


def test_python_m_hivemind_runs_from_the_repo_root() -> None:
    result = run_cli("--version", cwd=REPO_ROOT)
    assert result.returncode == 0
    assert "hivemind" in result.stdout


def test_a_wheel_install_works_from_any_directory(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(REPO_ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("hivemind_deploy-*.whl"))
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    assert not (target / "constructs").exists()  # we ship no top-level `constructs`
    # The sandbox hosts' start-up hooks are a folder of data files, not a package.
    hooks = "hivemind/sandbox/host_tools/one_address"
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {f"{hooks}/sitecustomize.py", f"{hooks}/node_listen.cjs"} <= shipped

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    constructs_file, _module, hivemind_file, ours, agents = _probe(
        elsewhere, {"PYTHONPATH": str(target)}
    )
    assert "site-packages" in constructs_file and str(target) not in constructs_file
    assert hivemind_file.startswith(str(target))
    assert ours.startswith(str(target / "hivemind_constructs"))
    assert agents.startswith(str(target / "hivemind_agents"))
    hooks_run = subprocess.run(
        [
            sys.executable,
            "-c",
            "from hivemind.sandbox.host_tools import units\n"
            "print(units.START_UP_HOOKS / 'sitecustomize.py', units.NODE_HOOK)",
        ],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert hooks_run.returncode == 0, hooks_run.stderr
    for hook in hooks_run.stdout.split():
        assert hook.startswith(str(target)) and Path(hook).is_file()
    help_run = subprocess.run(
        [sys.executable, "-m", "hivemind", "--help"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert help_run.returncode == 0 and "analyze" in help_run.stdout


def test_the_cdk_cli_synthesizes_the_app_cdk_json_names(tmp_path: Path) -> None:
    node = toolchain.find_node()
    assert node is not None, "no Node 20+: run ./scripts/bootstrap"
    assert toolchain.cdk_installed_version(node) == toolchain.CDK_CLI_VERSION, (
        "the pinned CDK CLI is missing: run ./scripts/bootstrap"
    )
    spec_file = tmp_path / "spec.json"
    made = run_cli("spec", "show", str(EXAMPLES / "flask-notes"), "-o", str(spec_file))
    assert made.returncode == 0, made.stderr
    env = toolchain.node_env(node)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(
        toolchain.cdk_command(
            node,
            "synth",
            "--quiet",
            "-c",
            f"spec={spec_file}",
            "-c",
            "deployment_id=flask-notes-test000000",
            "-o",
            str(tmp_path / "cdk.out"),
        ),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads(
        (tmp_path / "cdk.out" / "hivemind-flask-notes-test000000.template.json").read_text()
    )
    types = {r["Type"] for r in template["Resources"].values()}
    assert {"AWS::EC2::VPC", "AWS::EC2::NatGateway", "AWS::EC2::FlowLog"} <= types
    manifest = json.loads((tmp_path / "cdk.out" / "manifest.json").read_text())
    tags = manifest["artifacts"]["hivemind-flask-notes-test000000"]["properties"]["tags"]
    assert tags["hivemind:deployment-id"] == "flask-notes-test000000"
    assert tags["hivemind:app"] == "flask-notes"
    assert not (REPO_ROOT / "cdk.out").exists()
