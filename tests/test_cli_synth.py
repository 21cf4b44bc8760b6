"""`hivemind synth` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import EXAMPLES, make_spec, run_cli


@pytest.fixture
def cache(tmp_path: Path) -> dict[str, str]:
    return {"HIVEMIND_CACHE_DIR": str(tmp_path / "cache")}


def test_synth_writes_spec_assembly_and_report(tmp_path: Path, cache: dict[str, str]) -> None:
    out = tmp_path / "review"
    result = run_cli(
        "synth",
        str(EXAMPLES / "express-hello"),
        "--stage-1",
        "--out",
        str(out),
        "--json",
        env=cache,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["blocked"] is False and report["findings"] == []
    assert report["stack_name"] == "hivemind-express-hello-preview"
    assert report["cost"]["total_usd"] > 0
    assert report["provisioning_seconds"] > 0
    assert (out / "spec.json").is_file() and (out / "synth.json").is_file()
    assert (out / report["template_file"]).is_file()

    again = run_cli(
        "synth", str(EXAMPLES / "express-hello"), "--stage-1", "--out", str(out), env=cache
    )
    assert again.returncode == 0, again.stderr
    assert "(from the synth cache)" in again.stdout
    for heading in (
        "Resources (",
        "Estimated monthly cost: $",
        "Estimated provisioning time:",
        "critical path:",
        "Gates: cdk-nag AwsSolutions and cfn-lint passed",
    ):
        assert heading in again.stdout


def test_a_gate_finding_fails_unless_allowed(tmp_path: Path, cache: dict[str, str]) -> None:
    spec = make_spec("stage-1", "none", False, compute={"instance_type": "t3.enormous", "count": 1})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    blocked = run_cli("synth", "--spec", str(spec_file), "--out", str(tmp_path / "o"), env=cache)
    assert blocked.returncode == 1
    assert "cfn-lint" in blocked.stdout and "t3.enormous" in blocked.stdout
    assert "--allow-findings" in blocked.stderr
    allowed = run_cli(
        "synth",
        "--spec",
        str(spec_file),
        "--out",
        str(tmp_path / "o"),
        "--allow-findings",
        env=cache,
    )
    assert allowed.returncode == 0
    assert "from the synth cache" in allowed.stdout + allowed.stderr  # same spec: no re-synth
    assert "cfn-lint" in allowed.stdout and "t3.enormous" in allowed.stdout  # still reported


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a repository or --spec FILE"),
        ([str(EXAMPLES / "express-hello"), "--spec", "pyproject.toml"], "exactly one"),
        (["--spec", "pyproject.toml"], "is not a valid deployment spec"),
        ([str(EXAMPLES / "express-hello"), "--deployment-id", "nope"], "is not a deployment id"),
    ],
)
def test_bad_synth_input_exits_2(args: list[str], message: str) -> None:
    result = run_cli("synth", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_flags_cannot_edit_a_given_spec(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(make_spec("stage-1", "none", False).to_json())
    result = run_cli("synth", "--spec", str(spec_file), "--port", "9000")
    assert result.returncode == 2
    assert "--port cannot change a spec given with --spec" in result.stderr
