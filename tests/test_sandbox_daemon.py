"""`hivemind sandbox up|status|down` underneath: the daemon runs detached on 127.0.0.1,
records its pid and port in the HiveMind home, serves AWS and fault control, and is
found, reused and stopped through those files; stale files are cleaned up."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from harness import run_cli
from sandbox_harness import Clients

from hivemind.sandbox import control

pytestmark = pytest.mark.sandbox
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


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


def test_only_the_homes_own_credentials_reach_the_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    info = control.up(home)
    try:
        keys = control.state_dir(home) / "credentials.json"
        assert keys.stat().st_mode & 0o777 == 0o600  # the home's owner's alone
        assert info.access_key_id.startswith("AKIA") and len(info.access_key_id) == 20
        assert len(info.secret_access_key) == 40
        assert info.access_key_id not in (control.state_dir(home) / "sandbox.log").read_text()

        def sts(key_id: str) -> object:
            return boto3.client(
                "sts", endpoint_url=info.url, region_name="us-east-1",
                aws_access_key_id=key_id, aws_secret_access_key="x" * 40,
            )  # fmt: skip

        assert sts(info.access_key_id).get_caller_identity()["Account"] == "123456789012"
        # Credentials the sandbox issues to the key's holder work too (the CDK CLI
        # assumes a bootstrapped account's deploy role, then deploys with the role's
        # credentials). The role must exist, as on AWS.
        boto3.client(
            "iam", endpoint_url=info.url, region_name="us-east-1",
            aws_access_key_id=info.access_key_id, aws_secret_access_key="x" * 40,
        ).create_role(
            RoleName="cdk-deploy",
            AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                               "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}],
            }),
        )  # fmt: skip
        issued = sts(info.access_key_id).assume_role(
            RoleArn="arn:aws:iam::123456789012:role/cdk-deploy", RoleSessionName="cli"
        )["Credentials"]
        assumed = boto3.client(
            "sts", endpoint_url=info.url, region_name="us-east-1",
            aws_access_key_id=issued["AccessKeyId"],
            aws_secret_access_key=issued["SecretAccessKey"],
            aws_session_token=issued["SessionToken"],
        )  # fmt: skip
        assert ":assumed-role/cdk-deploy/cli" in assumed.get_caller_identity()["Arn"]
        for other in ("testing", "AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE"):
            with pytest.raises(botocore.exceptions.ClientError) as refused:
                sts(other).get_caller_identity()  # type: ignore[attr-defined]
            error = refused.value.response
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
            assert error["Error"]["Code"] == "InvalidClientTokenId"
            assert error["Error"]["Message"] == (
                "The security token included in the request is invalid."
            )
        # A JSON-protocol service answers in its protocol.
        logs = boto3.client(
            "logs", endpoint_url=info.url, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )  # fmt: skip
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            logs.describe_log_groups()
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
        unsigned = urllib.request.Request(f"{info.url}/?Action=GetCallerIdentity")
        with pytest.raises(urllib.error.HTTPError) as no_signature:
            _NO_PROXY.open(unsigned, timeout=5)
        assert no_signature.value.code == 403

        # Control: ping answers anyone (whose daemon it is); faults and reset need the
        # secret, which `control` sends.
        with _NO_PROXY.open(f"{info.url}/moto-api/hivemind/ping", timeout=5) as ping:
            assert json.loads(ping.read())["pid"] == info.pid
        for path, method in (("faults", "GET"), ("reset", "POST"), ("../reset", "POST")):
            request = urllib.request.Request(
                f"{info.url}/moto-api/hivemind/{path}", data=b"{}", method=method
            )
            with pytest.raises(urllib.error.HTTPError) as forbidden:
                _NO_PROXY.open(request, timeout=5)
            assert forbidden.value.code == 403, path
        stranger = dataclasses.replace(info, secret_access_key="y" * 40)
        with pytest.raises(control.SandboxError, match="another HiveMind home"):
            control.faults(stranger)
        assert control.faults(info) == []
    finally:
        control.down(home)


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
        clients = Clients.of(info, "eu-west-1")
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
