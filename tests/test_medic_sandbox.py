"""Medic against the sandbox, as a user meets it: each cause of failure reproduced (AWS's
own error wording replayed by sandbox faults, or a broken copy of an example app), the
diagnosis printed with its evidence and kept in the record, and the fix checked; where
the fix is a spec change, accepting it (--yes) resumes the deployment at the failed
stage and it ends deployed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from harness import fast_example, run_cli

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

REGION = "us-east-1"


@pytest.fixture
def home(sandbox_home: Path) -> Path:
    return sandbox_home


@pytest.fixture
def env(sandbox_env: dict[str, str]) -> dict[str, str]:
    return sandbox_env


def fault(env: dict[str, str], resource_type: str, code: str, message: str) -> None:
    armed = run_cli(
        "sandbox", "fault", "--resource-type", resource_type, "--on", "create",
        "--code", code, "--message", message, env=env,
    )  # fmt: skip
    assert armed.returncode == 0, armed.stderr


def deploy(env: dict[str, str], app: Path, *extra: str) -> tuple[Any, str]:
    result = run_cli("deploy", str(app), "--stage-1", "--region", REGION, *extra, env=env)
    line = next(x for x in result.stderr.splitlines() if x.startswith("Deployment "))
    return result, line.split()[1]


def status(env: dict[str, str], ident: str) -> dict[str, Any]:
    result = run_cli("status", ident, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def destroy(env: dict[str, str], ident: str) -> None:
    destroyed = run_cli("destroy", ident, "--yes", "--skip-snapshot", env=env)
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]


def broken_copy(tmp_path: Path, example: str, file: str, old: str, new: str) -> Path:
    """A copy of a bundled example with one bug put in: `old` replaced by `new` in `file`."""
    app = tmp_path / example
    shutil.copytree(fast_example(example), app, symlinks=True)
    code = app / file
    text = code.read_text()
    assert old in text, f"{example}/{file} no longer has {old!r}"
    code.write_text(text.replace(old, new))
    return app


def diagnosis(env: dict[str, str], ident: str) -> dict[str, Any]:
    state = status(env, ident)
    assert state["status"] == "failed", state["status"]
    found = state["diagnosis"]
    assert found is not None, "no diagnosis was recorded"
    assert found["by"] == "HiveMind's rules"  # no model configured: the fallback
    return dict(found)


PERMISSION = (
    "You are not authorized to perform this operation. User: "
    "arn:aws:iam::123456789012:user/deployer is not authorized to perform: "
    "ec2:RunInstances on resource: arn:aws:ec2:us-east-1:123456789012:instance/* "
    "because no identity-based policy allows the ec2:RunInstances action. Encoded "
    "authorization failure message: 4GIOHlTkIaWHQD0Q0m6XSnuUMCm-abc"
)
QUOTA = (
    "You have requested more vCPU capacity than your current vCPU limit of 0 allows for "
    "the instance bucket that the specified instance type belongs to. Please visit "
    "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
)
INVALID = "Health check interval must be greater than the timeout."
THROTTLED = "Rate exceeded"


def capacity(instance_type: str) -> str:
    return (
        f"We currently do not have sufficient {instance_type} capacity in the Availability "
        "Zone you requested (us-east-1a). Our system will be working on provisioning "
        f"additional capacity. You can currently get {instance_type} capacity by not "
        "specifying an Availability Zone in your request or choosing us-east-1b, us-east-1c."
    )


def test_provisioning_failures_are_diagnosed_and_a_capacity_fix_resumes_the_deployment(
    env: dict[str, str],
) -> None:
    app = fast_example("express-hello")
    fault(env, "AWS::EC2::Instance", "UnauthorizedOperation", PERMISSION)
    failed, ident = deploy(env, app, "--yes")
    assert failed.returncode == 1
    assert "CloudFormation could not create the stack" in failed.stderr
    found = diagnosis(env, ident)
    assert found["cause"] == "missing_permission"
    assert found["fix"]["permission"]["action"] == "ec2:RunInstances"
    assert found["fix"]["permission"]["statement"]["Effect"] == "Allow"
    assert "Medic:" in failed.stdout and "ec2:RunInstances" in failed.stdout
    assert '"Effect": "Allow"' in failed.stdout  # the statement to add, printed
    assert any("not authorized to perform: ec2:RunInstances" in e for e in found["evidence"])

    # The same deployment, retried into each other failure in turn.
    for resource_type, code, message, cause in [
        ("AWS::EC2::Instance", "VcpuLimitExceeded", QUOTA, "service_quota"),
        ("AWS::ElasticLoadBalancingV2::TargetGroup", "ValidationError", INVALID,
         "invalid_parameter"),
        ("AWS::EC2::Instance", "Throttling", THROTTLED, "throttling"),
    ]:  # fmt: skip
        fault(env, resource_type, code, message)
        retried = run_cli("retry", ident, "--yes", env=env)
        assert retried.returncode == 1, retried.stderr[-3000:]
        found = diagnosis(env, ident)
        assert found["cause"] == cause, (code, found)
        assert any(message[:40] in line for line in found["evidence"]), found["evidence"]

    # Capacity: the fix is another instance type; --yes applies it and resumes.
    before = run_cli("spec", "show", str(app), "--stage-1", "--json", env=env)
    instance_type = json.loads(before.stdout)["compute"]["instance_type"]
    fault(env, "AWS::EC2::Instance", "InsufficientInstanceCapacity", capacity(instance_type))
    # Its fourth retry: past the three `retry` allows, so --force.
    resumed = run_cli("retry", ident, "--yes", "--force", env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "Fix applied. Resuming" in resumed.stdout
    state = status(env, ident)
    assert state["status"] == "deployed" and state["diagnosis"] is None
    spec = json.loads(
        (Path(env["HIVEMIND_HOME"]) / "deployments" / ident / "spec.json").read_text()
    )
    assert spec["compute"]["instance_type"] != instance_type
    assert spec["provenance"]["compute.instance_type"]["evidence"] == "Medic's fix, accepted"
    destroy(env, ident)


def test_a_wrong_port_is_found_in_the_app_log_and_the_fix_resumes(
    env: dict[str, str], tmp_path: Path
) -> None:
    app = broken_copy(
        tmp_path, "express-hello", "server.js", "Number(process.env.PORT) || 3000", "3000"
    )  # the bug: PORT is ignored
    (app / "hivemind.yaml").write_text("app:\n  port: 8080\n")
    failed, ident = deploy(env, app, "--yes", "--no-input", "--health-timeout", "20")
    assert failed.returncode == 1
    found = diagnosis(env, ident)
    assert found["cause"] == "wrong_port", found
    assert found["fix"]["spec_changes"] == {"app.port": 3000}
    assert f"hivemind retry {ident} --set app.port=3000" in failed.stdout
    assert any("3000" in line for line in found["evidence"])

    resumed = run_cli("retry", ident, "--set", "app.port=3000", "--yes", env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    state = status(env, ident)
    assert state["status"] == "deployed"
    names = [s["name"] for s in state["stages"]]
    assert names.count("provision") == 2  # the port is in the stack: provisioned again
    destroy(env, ident)


def test_a_missing_environment_variable_is_named_and_given_on_retry(
    env: dict[str, str], tmp_path: Path
) -> None:
    app = broken_copy(
        tmp_path,
        "express-hello",
        "server.js",
        "const app = express();",
        "if (!process.env.SESSION_SECRET) {\n"
        '  throw new Error("Missing required environment variable SESSION_SECRET");\n'
        "}\nconst app = express();",
    )
    failed, ident = deploy(env, app, "--yes", "--no-input", "--health-timeout", "20")
    assert failed.returncode == 1
    found = diagnosis(env, ident)
    assert found["cause"] == "missing_env_var", found
    assert found["fix"]["env_needed"] == ["SESSION_SECRET"]
    assert f"hivemind retry {ident} --env SESSION_SECRET=VALUE" in failed.stdout

    resumed = run_cli("retry", ident, "--env", "SESSION_SECRET=not-a-real-secret", "--yes", env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    state = status(env, ident)
    assert state["status"] == "deployed"
    assert [s["name"] for s in state["stages"]].count("provision") == 1  # app.env: no stack change
    destroy(env, ident)


def test_an_unreachable_database_is_diagnosed_from_the_app_log(
    env: dict[str, str], tmp_path: Path
) -> None:
    app = broken_copy(
        tmp_path,
        "flask-notes",
        "app.py",
        'os.environ["DATABASE_URL"]',
        'os.environ.get("NOTES_DB", "postgresql://notes:notes@127.0.0.1:1/notes")',
    )  # the bug: another variable than the one HiveMind sets, and a local fallback
    failed, ident = deploy(env, app, "--yes", "--no-input", "--health-timeout", "20")
    assert failed.returncode == 1
    found = diagnosis(env, ident)
    assert found["cause"] == "database_unreachable", found
    assert any(
        "Connection refused" in line or "port 1 failed" in line for line in found["evidence"]
    )
    destroy(env, ident)


def test_an_app_that_runs_out_of_memory_is_given_a_larger_instance_type(
    env: dict[str, str], home: Path, tmp_path: Path
) -> None:
    app = broken_copy(
        tmp_path,
        "flask-notes",
        "app.py",
        "app = Flask(__name__)\n",
        "app = Flask(__name__)\nCACHE = bytearray(1 << 48)  # 256 TiB: no machine has it\n",
    )  # the bug: the app asks for more memory than the instance has, as it loads
    failed, ident = deploy(env, app, "--yes", "--no-input", "--health-timeout", "20")
    assert failed.returncode == 1
    found = diagnosis(env, ident)
    assert found["cause"] == "resources_exhausted", found
    assert "MemoryError" in found["evidence"], found["evidence"]
    assert found["fix"]["spec_changes"] == {"compute.instance_type": "t3.small"}
    assert f"hivemind retry {ident} --set compute.instance_type=t3.small" in failed.stdout
    # Medic read the deployment's telemetry (its log and the instance's metrics), not
    # only the error's own lines.
    events = (home / "deployments" / ident / "events.log").read_text()
    read = re.search(r"medic: read (\d+) log events and (\d+) metric series", events)
    assert read is not None, events[-2000:]
    assert int(read.group(2)) > 0
    destroy(env, ident)


def test_a_wrong_health_path_is_found_at_once_and_the_path_that_answers_resumes(
    env: dict[str, str], tmp_path: Path
) -> None:
    app = tmp_path / "flask-notes"
    shutil.copytree(fast_example("flask-notes"), app)
    (app / "hivemind.yaml").write_text("app:\n  health_path: /status\n")  # the app has /health
    failed, ident = deploy(env, app, "--yes", "--no-input")
    assert failed.returncode == 1
    found = diagnosis(env, ident)
    assert found["cause"] == "health_check_mismatch", found
    assert found["fix"]["spec_changes"] == {"app.health_path": "/health"}
    assert any(line.startswith("other paths: /health -> 200") for line in found["evidence"])
    assert f"hivemind retry {ident} --set app.health_path=/health" in failed.stdout
    state = status(env, ident)
    deploy_stage = next(s for s in state["stages"] if s["name"] == "deploy")
    assert deploy_stage["status"] == "failed"

    resumed = run_cli("retry", ident, "--set", "app.health_path=/health", "--yes", env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert status(env, ident)["status"] == "deployed"
    destroy(env, ident)


def test_an_app_bound_to_the_loopback_address_only_is_told_to_bind_every_address(
    env: dict[str, str], tmp_path: Path
) -> None:
    app = tmp_path / "flask-notes"
    shutil.copytree(fast_example("flask-notes"), app)
    (app / "hivemind.yaml").write_text(
        "app:\n  start_command: gunicorn --bind 127.0.0.1:$PORT app:app\n"
    )  # the bug: only the instance itself can reach the app
    failed, ident = deploy(env, app, "--yes", "--no-input")
    assert failed.returncode == 1
    assert "(this instance only)" in failed.stderr
    found = diagnosis(env, ident)
    assert found["cause"] == "wrong_port", found
    assert "0.0.0.0" in found["fix"]["explanation"]
    assert found["fix"]["spec_changes"] == {}
    destroy(env, ident)
