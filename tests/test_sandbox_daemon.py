"""`hivemind sandbox up|status|down` underneath: the daemon runs detached on 127.0.0.1,
records its pid and port in the HiveMind home, serves AWS and fault control, and is
found, reused and stopped through those files; stale files are cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from harness import run_cli
from sandbox_harness import Clients

from hivemind.sandbox import control

pytestmark = pytest.mark.sandbox


def test_up_status_and_down_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert control.status(home) is None

    info = control.up(home)
    try:
        files = control.state_dir(home)
        assert info.url == f"http://127.0.0.1:{info.port}"
        assert (files / "pid").read_text() == str(info.pid)
        assert (files / "port").read_text() == str(info.port)
        assert "sandbox serving at" in (files / "sandbox.log").read_text()
        assert control.status(home) == info
        assert control.up(home) == info  # already up: the same daemon

        env = control.environment(info, "eu-west-1")
        sts = boto3.client(
            "sts",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name=env["AWS_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        assert sts.get_caller_identity()["Account"] == "123456789012"
        control.add_fault(info, "AWS::EC2::NatGateway", on="delete", times=3)
        assert [f["remaining"] for f in control.faults(info)] == [3]
        control.clear_faults(info)
        assert control.faults(info) == []
    finally:
        stopped = control.down(home)

    assert stopped
    assert control.status(home) is None
    assert not (control.state_dir(home) / "pid").exists()
    assert not (control.state_dir(home) / "port").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(info.pid, 0)
    assert control.down(home) is False


def test_a_stale_pid_file_is_cleaned_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = control.state_dir(home)
    files.mkdir(parents=True)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    (files / "pid").write_text(finished.stdout.strip())  # a process that is gone
    (files / "port").write_text("1")

    assert control.status(home) is None
    assert not (files / "pid").exists()
    assert not (files / "port").exists()


def test_a_pid_file_naming_another_process_is_not_the_sandbox(tmp_path: Path) -> None:
    home = tmp_path / "home"
    files = control.state_dir(home)
    files.mkdir(parents=True)
    (files / "pid").write_text(str(os.getpid()))  # alive, but not a sandbox daemon
    (files / "port").write_text("1")

    assert control.status(home) is None
    assert control.down(home) is False  # and it is not signalled
    assert not (files / "pid").exists()


def test_the_environment_points_aws_clients_at_the_sandbox_only() -> None:
    info = control.SandboxInfo("http://127.0.0.1:4566", 1234, 4566)
    base = {"PATH": "/bin", "AWS_PROFILE": "prod", "AWS_SESSION_TOKEN": "x", "NO_PROXY": "corp"}

    env = control.child_environment(info, "eu-west-1", base=base)

    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("testing", "testing")
    assert (env["AWS_REGION"], env["AWS_DEFAULT_REGION"]) == ("eu-west-1", "eu-west-1")
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"
    assert env["NO_PROXY"] == "corp,127.0.0.1,localhost"
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env
    assert env["PATH"] == "/bin"


def test_importing_the_control_module_does_not_import_moto() -> None:
    code = "import sys, hivemind.sandbox.control; print('moto' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_reset_empties_the_running_sandbox_and_keeps_the_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HIVEMIND_HOME": str(home)}
    info = control.up(home)
    try:
        clients = Clients(info.url, region="eu-west-1")
        clients.ssm.put_parameter(Name="/kept/nowhere", Value="x", Type="String")
        clients.xray.create_group(GroupName="gone", FilterExpression='service("a")')
        control.add_fault(info, "AWS::RDS::DBInstance")

        declined = run_cli("sandbox", "reset", env=env)
        assert declined.returncode != 0
        assert clients.ssm.describe_parameters()["Parameters"]  # nothing was deleted

        reset = run_cli("sandbox", "reset", "--yes", env=env)
        assert reset.returncode == 0, reset.stderr
        assert "a new, empty account" in reset.stdout
        assert control.status(home) == info  # the same daemon, still serving
        assert clients.ssm.describe_parameters()["Parameters"] == []
        groups = clients.xray.get_groups()["Groups"]
        assert [g["GroupName"] for g in groups] == ["Default"]
        assert control.faults(info) == []
    finally:
        control.down(home)
    stopped = run_cli("sandbox", "reset", "--yes", env=env)
    assert stopped.returncode == 0 and "not running" in stopped.stdout
