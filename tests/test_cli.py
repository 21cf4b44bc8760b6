"""The command line as a user meets it: output, exit codes, and errors without tracebacks."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import EXAMPLES, FIXTURES, REPO_ROOT, run_cli, write_tree

HEAVY_MODULES = ("aws_cdk", "boto3", "botocore", "langchain", "moto", "jsii")


def test_analyze_prints_facts_with_evidence() -> None:
    result = run_cli("analyze", str(EXAMPLES / "flask-notes"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "App folder: ." in out
    for expected in (
        "flask",
        "app.py:93",
        "/health",
        "postgres",
        "Procfile:1",
        "gunicorn app:app --bind 0.0.0.0:$PORT",
        "DATABASE_URL",
    ):
        assert expected in out, expected


def test_analyze_json_is_the_profile() -> None:
    result = run_cli("analyze", str(FIXTURES / "monorepo"), "--json")
    assert result.returncode == 0, result.stderr
    profile = json.loads(result.stdout)
    assert profile["app_dir"]["value"] == "services/api"
    assert profile["facts"]["framework"]["value"] == "fastify"
    assert profile["facts"]["framework"]["evidence"]["file"] == "services/api/package.json"


@pytest.mark.parametrize(
    ("make_target", "message"),
    [
        (lambda tmp: tmp / "missing", "repository not found"),
        (lambda tmp: write_tree(tmp, {"app.py": "x"}) / "app.py", "not a folder"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "the repository is empty"),
        (lambda tmp: write_tree(tmp / "docs", {"README.md": "# hi\n"}), "no recognisable app"),
        (lambda tmp: f"file://{tmp}/nothing-here.git", "could not clone"),
    ],
    ids=["nonexistent", "a-file", "empty", "no-app", "bad-git-url"],
)
def test_bad_input_exits_2_with_one_clear_message(
    tmp_path: Path, make_target: object, message: str
) -> None:
    target = make_target(tmp_path)  # type: ignore[operator]
    result = run_cli("analyze", str(target), env={"HIVEMIND_CACHE_DIR": str(tmp_path / "c")})
    assert result.returncode == 2
    assert message in result.stderr
    assert "next:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_no_app_says_what_was_looked_for_and_how_to_state_it(tmp_path: Path) -> None:
    write_tree(tmp_path, {"README.md": "# notes\n"})
    result = run_cli("analyze", str(tmp_path))
    assert "looked for:" in result.stderr
    assert "go.mod" in result.stderr and "Gemfile" in result.stderr
    assert "hivemind.yaml" in result.stderr and "start_command:" in result.stderr


def test_an_app_stated_in_hivemind_yaml_needs_no_detection(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "server.sh": "#!/bin/sh\nexec busybox httpd -f -p $PORT\n",
            "hivemind.yaml": "app:\n  language: go\n  start_command: ./server.sh\n  port: 8081\n",
        },
    )
    result = run_cli("spec", "show", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert spec["app"]["start_command"] == "./server.sh"
    assert spec["provenance"]["app.port"] == {
        "source": "user",
        "evidence": "hivemind.yaml:4",
        "note": "",
    }


def test_malformed_hivemind_yaml_gives_line_and_column(tmp_path: Path) -> None:
    write_tree(tmp_path, {"requirements.txt": "flask\n", "app.py": "x = 1\n"})
    (tmp_path / "hivemind.yaml").write_text("app:\n  port: [8080\n")
    result = run_cli("analyze", str(tmp_path))
    assert result.returncode == 2
    assert "hivemind.yaml is not valid YAML" in result.stderr
    assert "where: hivemind.yaml:3:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_yaml_key_suggests_the_right_one(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "requirements.txt": "flask\n",
            "app.py": "x = 1\n",
            "hivemind.yaml": "app:\n  helth_path: /up\n",
        },
    )
    result = run_cli("spec", "show", str(tmp_path))
    assert result.returncode == 2
    assert "unknown setting 'app.helth_path'" in result.stderr
    assert "did you mean 'health_path'?" in result.stderr
    assert "hivemind.yaml:2" in result.stderr


def test_spec_show_explains_each_field_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "spec.json"
    result = run_cli(
        "spec",
        "show",
        str(EXAMPLES / "fastapi-mysql"),
        "--stage-1",
        "--tag",
        "team=data",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^profile +stage-1 ", result.stdout, re.MULTILINE)
    assert re.search(r"^load_balancer\.health_check_interval +15 ", result.stdout, re.MULTILINE)
    assert "--stage-1" in result.stdout
    written = json.loads(out.read_text())
    assert written["tags"] == {"team": "data"}
    assert written["database"]["engine"] == "mysql"


def test_flags_have_environment_twins() -> None:
    result = run_cli(
        "spec",
        "show",
        str(EXAMPLES / "express-hello"),
        "--json",
        env={"HIVEMIND_REGION": "eu-west-2", "HIVEMIND_PROFILE": "stage-1"},
    )
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)
    assert (spec["region"], spec["profile"]) == ("eu-west-2", "stage-1")


def test_errors_are_json_too_when_json_is_asked_for(tmp_path: Path) -> None:
    result = run_cli("analyze", str(tmp_path / "nope"), "--json")
    assert result.returncode == 2
    error = json.loads(result.stdout)
    assert error["error"].startswith("repository not found")
    assert error["exit_code"] == 2


def test_a_bad_tag_is_a_usage_error() -> None:
    result = run_cli("spec", "show", str(EXAMPLES / "express-hello"), "--tag", "novalue")
    assert result.returncode == 2
    assert "KEY=VALUE" in result.stderr


def test_spec_schema_is_json_schema() -> None:
    result = run_cli("spec", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "DeploymentSpec"
    assert "app" in schema["properties"]


def test_unknown_command_is_a_usage_error() -> None:
    result = run_cli("deploi")
    assert result.returncode == 2
    assert "No such command" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["synth", "--help"],
        ["analyze", "--help"],
        ["spec", "show", "--help"],
        ["analyze", str(EXAMPLES / "express-hello")],
    ],
)
def test_the_hot_path_imports_no_aws_or_llm_library(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hivemind", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {
        line.split("|")[-1].strip().split(".")[0]
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert not imported.intersection(HEAVY_MODULES)


@pytest.mark.sandbox
def test_doctor_reports_each_piece_as_json(sandbox_env: dict[str, str]) -> None:
    result = run_cli("doctor", "--json", env=sandbox_env)
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    assert set(checks) == {
        "python",
        "node",
        "cdk-cli",
        "aws",
        "account",
        "cdk-bootstrap",
        "permissions",
    }
    assert checks["python"]["ok"] is True
    assert checks["aws"]["ok"] is True and "sandbox" in checks["aws"]["detail"]
    assert checks["account"]["detail"].startswith("account 123456789012")
    assert "not bootstrapped" in checks["cdk-bootstrap"]["detail"]
    assert result.returncode == (0 if all(c["ok"] for c in checks.values()) else 1)


def test_doctor_says_how_to_fix_missing_aws_region() -> None:
    result = run_cli("doctor", "--json")  # fake credentials, no region
    aws = next(c for c in json.loads(result.stdout) if c["name"] == "aws")
    assert aws["ok"] is False
    assert "no region" in aws["detail"]
    assert "AWS_REGION" in aws["fix"]
    assert result.returncode == 1


def test_cloning_a_git_url_shows_progress_on_stderr_only(tmp_path: Path) -> None:
    origin = write_tree(
        tmp_path / "origin",
        {
            "go.mod": "module example.com/svc\n\ngo 1.22\n",
            "main.go": "package main\nfunc main() {}\n",
        },
    )
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "go"]):
        subprocess.run(["git", *args], cwd=origin, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    cache = {"HIVEMIND_CACHE_DIR": str(tmp_path / "cache")}
    first = run_cli("analyze", f"file://{origin}", "--json", env=cache)
    assert first.returncode == 0, first.stderr
    assert f"Cloning file://{origin} (shallow)" in first.stderr
    assert json.loads(first.stdout)["facts"]["language"]["value"] == "go"
    second = run_cli("analyze", f"file://{origin}", "--json", env=cache)
    assert "Updating the cached clone" in second.stderr
