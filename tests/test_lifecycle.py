"""The whole cycle as a user runs it, against the sandbox daemon: deploy, status,
destroy; a failed create rolled back and retried; a failed delete and a second
destroy; a busy deployment refused; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import psycopg
import pytest
from harness import app_copy, fast_example, run_cli
from sandbox_harness import Clients, leftovers

from hivemind.sandbox import control

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def hivemind(sandbox_env: dict[str, str]) -> dict[str, str]:
    return sandbox_env


def aws(home: Path) -> Clients:
    info = control.status(home)
    assert info is not None
    return Clients.of(info, "us-east-1")


def left_behind(home: Path) -> dict[str, list[str]]:
    """What deployments left in the sandbox. The CDK bootstrap (CDKToolkit and its roles)
    belongs to the account and region, not to a deployment, and stays."""
    found = {
        kind: [i for i in ids if not i.startswith(("CDKToolkit", "cdk-hnb659fds-"))]
        for kind, ids in leftovers(aws(home)).items()
    }
    return {kind: ids for kind, ids in found.items() if ids}


def deploy(env: dict[str, str], example: str = "express-hello") -> subprocess.CompletedProcess[str]:
    return run_cli(
        "deploy", str(fast_example(example)), "--stage-1", "--yes", "--region", "us-east-1", env=env
    )


def deployment_id(result: subprocess.CompletedProcess[str]) -> str:
    line = next(x for x in result.stderr.splitlines() if x.startswith("Deployment "))
    return line.split()[1]


def test_deploy_status_destroy_leaves_nothing(
    hivemind: dict[str, str], sandbox_home: Path, tmp_path: Path
) -> None:
    # `hivemind deploy .` in the app's folder, which holds a cdk.json whose build command
    # the CDK CLI would run with the operator's credentials if it ran there.
    app = app_copy("flask-notes", tmp_path / "app")
    marker = tmp_path / "cdk-build-ran"
    (app / "cdk.json").write_text(json.dumps({"app": "true", "build": f"touch {marker}"}))
    deployed = run_cli(
        "deploy", ".", "--stage-1", "--yes", "--region", "us-east-1", cwd=app, env=hivemind
    )
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert not marker.exists()
    ident = deployment_id(deployed)
    assert f"{ident} is deployed\n  url:  http://" in deployed.stdout
    assert "Estimated monthly cost" in deployed.stdout  # the plan was shown first

    status = run_cli("status", ident, "--json", env=hivemind)
    assert status.returncode == 0, status.stderr
    state = json.loads(status.stdout)
    assert (state["status"], state["stack_status"]) == ("deployed", "CREATE_COMPLETE")
    assert {"LoadBalancerDns", "DatabaseEndpoint", "DatabaseSecretArn"} <= set(state["outputs"])
    assert [s["name"] for s in state["stages"]] == ["synth", "provision", "deploy", "verify"]
    assert all(s["status"] == "ok" for s in state["stages"])
    # The database password lives in Secrets Manager only: no file of the record has it.
    secret = aws(sandbox_home).secretsmanager.get_secret_value(
        SecretId=state["outputs"]["DatabaseSecretArn"]
    )["SecretString"]
    password = json.loads(secret)["password"]
    username = json.loads(secret)["username"]
    assert len(password) >= 16
    note = urllib.request.Request(
        state["url"] + "/notes",
        data=json.dumps({"text": "kept in the final snapshot"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with _NO_PROXY.open(note, timeout=10) as answer:
        assert answer.status == 201
    for path in (sandbox_home / "deployments" / ident).rglob("*"):
        if path.is_file():
            assert password not in path.read_text(errors="replace"), path

    destroyed = run_cli("destroy", ident, "--yes", env=hivemind)
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]
    assert f"{ident} is destroyed; saving $" in destroyed.stdout
    # Stage-1 too: the data is kept in a final snapshot unless --skip-snapshot.
    assert "kept: final snapshot" in destroyed.stdout
    (snapshot,) = aws(sandbox_home).rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"]
    report = (sandbox_home / "deployments" / ident / "destroy-report.md").read_text()
    assert snapshot["DBSnapshotIdentifier"] in report
    assert left_behind(sandbox_home) == {}
    # The snapshot holds the data: restored, it answers with the note written through
    # the app, with the master user and password it had.
    rds, ec2 = aws(sandbox_home).rds, aws(sandbox_home).ec2
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{n}.0/24", AvailabilityZone=zone)["Subnet"][
            "SubnetId"
        ]
        for n, zone in enumerate(("us-east-1a", "us-east-1b"))
    ]
    rds.create_db_subnet_group(
        DBSubnetGroupName="restore", DBSubnetGroupDescription="restore", SubnetIds=subnets
    )
    restored = rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="restored",
        DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"],
        DBSubnetGroupName="restore",
    )["DBInstance"]
    endpoint = rds.describe_db_instances(DBInstanceIdentifier="restored")["DBInstances"][0][
        "Endpoint"
    ]
    with psycopg.connect(
        host=endpoint["Address"], port=endpoint["Port"], user=username, password=password,
        dbname="app", connect_timeout=10,
    ) as connection:  # fmt: skip
        texts = [row[0] for row in connection.execute("SELECT text FROM notes")]
    assert texts == ["kept in the final snapshot"] and restored["Engine"] == "postgres"
    # A manual snapshot of a running instance is metadata only in the sandbox: restoring
    # it is refused rather than giving an empty database.
    rds.create_db_snapshot(DBInstanceIdentifier="restored", DBSnapshotIdentifier="manual-one")
    with pytest.raises(rds.exceptions.ClientError, match="final snapshots only"):
        rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier="from-manual",
            DBSnapshotIdentifier="manual-one",
            DBSubnetGroupName="restore",
        )
    rds.delete_db_snapshot(DBSnapshotIdentifier="manual-one")
    rds.delete_db_instance(DBInstanceIdentifier="restored", SkipFinalSnapshot=True)
    rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"])
    rds.delete_db_subnet_group(DBSubnetGroupName="restore")
    for subnet in subnets:
        ec2.delete_subnet(SubnetId=subnet)
    ec2.delete_vpc(VpcId=vpc)
    assert not any((sandbox_home / "sandbox").rglob(snapshot["DBSnapshotIdentifier"]))
    again = run_cli("destroy", ident, "--yes", env=hivemind)
    assert again.returncode == 2 and "already destroyed" in again.stderr
    forced = run_cli("destroy", ident, "--force", env=hivemind)  # stragglers: none left
    assert forced.returncode == 0, forced.stderr[-2000:]


def test_a_failed_create_rolls_back_and_retry_succeeds(
    hivemind: dict[str, str], sandbox_home: Path
) -> None:
    assert (
        run_cli(
            "sandbox",
            "fault",
            "--resource-type",
            "AWS::RDS::DBInstance",
            "--on",
            "create",
            env=hivemind,
        ).returncode
        == 0
    )
    failed = deploy(hivemind, "flask-notes")
    assert failed.returncode == 1
    ident = deployment_id(failed)
    assert "CloudFormation could not create the stack" in failed.stderr
    assert "Fault injected by the HiveMind sandbox" in failed.stderr
    assert "AWS::RDS::DBInstance" in failed.stderr  # the failed resource, with its reason
    assert f"hivemind retry {ident}" in failed.stderr
    status = json.loads(run_cli("status", ident, "--json", env=hivemind).stdout)
    assert (status["status"], status["failed_stage"]) == ("failed", "provision")
    assert status["stack_status"] == "ROLLBACK_COMPLETE"

    declined = run_cli("retry", ident, env=hivemind)  # no terminal to answer: nothing done
    assert declined.returncode == 3
    retried = run_cli("retry", ident, "--yes", env=hivemind)  # deletes the rolled-back stack
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert "Estimated monthly cost" in retried.stdout  # the plan, shown again
    assert f"{ident} is deployed" in retried.stdout
    assert run_cli("destroy", ident, "--yes", env=hivemind).returncode == 0


def test_a_failed_delete_is_reported_and_a_second_destroy_completes(
    hivemind: dict[str, str], sandbox_home: Path
) -> None:
    deployed = deploy(hivemind)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    ident = deployment_id(deployed)
    run_cli(
        "sandbox",
        "fault",
        "--resource-type",
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        "--on",
        "delete",
        "--times",
        "2",
        "--code",
        "OperationNotPermitted",
        "--message",
        "Load balancer cannot be deleted because deletion protection is enabled",
        env=hivemind,
    )
    first = run_cli("destroy", ident, "--yes", env=hivemind)
    assert first.returncode == 1
    assert "is not fully destroyed" in first.stderr
    assert "remove with:" in first.stderr
    # Janitor reads why it stayed, and what turns the protection off.
    assert "janitor (HiveMind's rules)" in first.stderr
    assert "Deletion protection is on" in first.stderr
    assert "deletion_protection.enabled,Value=false" in first.stderr
    second = run_cli("destroy", ident, "--yes", env=hivemind)
    assert second.returncode == 0, second.stderr[-3000:]
    assert left_behind(sandbox_home) == {}


def test_a_busy_deployment_refuses_a_second_command(
    hivemind: dict[str, str], sandbox_home: Path
) -> None:
    deployed = deploy(hivemind)
    ident = deployment_id(deployed)
    folder = sandbox_home / "deployments" / ident
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import time
            from pathlib import Path
            from hivemind.records import DeploymentRecord
            with DeploymentRecord(Path({str(folder)!r})).lock("deploy"):
                print("locked", flush=True)
                time.sleep(60)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **hivemind},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        refused = run_cli("destroy", ident, "--yes", env=hivemind)
        assert refused.returncode == 3
        assert f"deployment {ident} is busy" in refused.stderr
        assert f"pid {holder.pid}" in refused.stderr
    finally:
        holder.kill()
        holder.wait()
    assert run_cli("destroy", ident, "--yes", env=hivemind).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "shop-zzzzzzzzzz"], "no deployment shop-zzzzzzzzzz"),
        (["destroy", "shop-zzzzzzzzzz", "--yes"], "no deployment shop-zzzzzzzzzz"),
        (["retry", "not-an-id"], "is not a deployment id"),
    ],
)
def test_unknown_deployments_are_bad_input(
    args: list[str], message: str, hivemind: dict[str, str]
) -> None:
    result = run_cli(*args, env=hivemind)
    assert result.returncode == 2
    assert message in result.stderr


def test_no_credentials_outside_the_sandbox_is_bad_input(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HIVEMIND_"))}
    env |= {
        "HIVEMIND_HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hivemind",
            "deploy",
            str(fast_example("express-hello")),
            "--stage-1",
            "--yes",
            "--region",
            "us-east-1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no AWS credentials found" in result.stderr
    assert "--sandbox" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_template_too_large_to_send_inline_goes_through_a_bootstrap(
    hivemind: dict[str, str], sandbox_home: Path
) -> None:
    deployed = run_cli(
        "deploy",
        str(fast_example("flask-notes")),
        "--count",
        "6",  # 53 KB with --xray: over the inline limit (5 instances: 51.8 KB)
        "--xray",
        "--yes",
        "--region",
        "us-east-1",
        env=hivemind,
    )
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    assert "over CloudFormation's 51,200-byte inline limit" in deployed.stdout
    assert "Bootstrapping the account and region for the CDK" in deployed.stdout
    ident = deployment_id(deployed)
    stages = json.loads(run_cli("status", ident, "--json", env=hivemind).stdout)["stages"]
    assert [s["name"] for s in stages] == ["synth", "bootstrap", "provision", "deploy", "verify"]
    assert run_cli("destroy", ident, "--yes", env=hivemind).returncode == 0


def test_rollback_of_a_failed_deployment_leaves_nothing(
    hivemind: dict[str, str], sandbox_home: Path
) -> None:
    run_cli(
        "sandbox", "fault", "--resource-type", "AWS::ElasticLoadBalancingV2::Listener", env=hivemind
    )
    failed = deploy(hivemind)
    assert failed.returncode == 1
    ident = deployment_id(failed)
    rolled = run_cli("rollback", ident, "--yes", env=hivemind)
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    assert f"{ident} is rolled back" in rolled.stdout
    status = json.loads(run_cli("status", ident, "--json", env=hivemind).stdout)
    assert status["status"] == "rolled_back"
    assert left_behind(sandbox_home) == {}


def test_find_orphans_lists_and_removes_what_no_deployment_owns(
    hivemind: dict[str, str], sandbox_home: Path
) -> None:
    deployed = deploy(hivemind)
    ident = deployment_id(deployed)
    # Forget the deployment on this machine, as if its record were lost.
    folder = sandbox_home / "deployments" / ident
    (folder / "state.json").rename(folder / "state.json.lost")
    found = run_cli("find-orphans", "--region", "us-east-1", "--json", env=hivemind)
    assert found.returncode == 0, found.stderr
    orphans = json.loads(found.stdout)
    assert orphans and {o["deployment_id"] for o in orphans} == {ident}
    assert {o["why"] for o in orphans} == {"unknown"}
    removed = run_cli("find-orphans", "--region", "us-east-1", "--delete", "--yes", env=hivemind)
    assert removed.returncode == 0, removed.stderr[-3000:]
    again = json.loads(
        run_cli("find-orphans", "--region", "us-east-1", "--json", env=hivemind).stdout
    )
    assert [o for o in again if o["deployment_id"] == ident] == []
    assert left_behind(sandbox_home) == {}
