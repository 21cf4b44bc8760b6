"""Nothing is deleted that cannot be brought back: `destroy` and `rollback` delete a
deployment's databases themselves, before its stack, each primary with a final snapshot
HiveMind names (whatever the profile and the template's DeletionPolicy), read replicas
without one (RDS keeps none of a replica), and only `--skip-snapshot` deletes without.
A database RDS cannot snapshot is refused before anything is deleted. The sandbox's RDS
refuses what RDS's DeleteDBInstance refuses, so these paths are checked as AWS runs them.
`rollback` of a deployment that is deployed and serving is refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from harness import make_spec, run_cli
from moto.rds.models import rds_backends
from sandbox_harness import Clients, Synthesized, in_process_sandbox, synthesize_profile
from test_sandbox_databases import Deployed, database_template, deploy, postgres

from hivemind import toolchain
from hivemind.destroy import Destroyer, KeptSnapshot, final_snapshot_name
from hivemind.errors import RefusedError
from hivemind.progress import ProgressDisplay
from hivemind.records import DeploymentRecord, RecordStore, Status
from hivemind.sandbox.server import SandboxServer

pytestmark = pytest.mark.sandbox

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with in_process_sandbox() as server:
        yield server


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    toolchain.prepare_jsii()
    return synthesize_profile(
        tmp_path_factory.mktemp("production"), "production", "postgres", False
    )


@pytest.fixture
def aws(sandbox: SandboxServer) -> Clients:
    return Clients(sandbox.url)


def record_of(home: Path, stack_name: str) -> DeploymentRecord:
    """A deployed deployment whose stack is `stack_name`."""
    ident = stack_name.removeprefix("hivemind-")
    record = RecordStore(home / "deployments").create(
        make_spec("production", "postgres", False), ident, stack_name
    )
    record.update(status=Status.DEPLOYED)
    return record


def destroyer(aws: Clients, said: list[str]) -> Destroyer:
    return Destroyer(
        lambda service: getattr(aws, service),
        ProgressDisplay(lambda _text: None, terminal=False),
        say=said.append,
    )


def with_a_note(deployed: Deployed) -> None:
    """Data written to the primary, as the app writes it."""
    with postgres(deployed.values["Address"], deployed.values["Port"], deployed.password) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('kept')")
        db.commit()


def manual_snapshots(aws: Clients) -> list[dict[str, Any]]:
    return list(aws.rds.describe_db_snapshots(SnapshotType="manual")["DBSnapshots"])


def database_ids(aws: Clients) -> set[str]:
    return {d["DBInstanceIdentifier"] for d in aws.rds.describe_db_instances()["DBInstances"]}


def forget_snapshots(aws: Clients) -> None:
    for snapshot in manual_snapshots(aws):
        aws.rds.delete_db_snapshot(DBSnapshotIdentifier=snapshot["DBSnapshotIdentifier"])


@pytest.mark.parametrize("rollback", [False, True], ids=["destroy", "rollback"])
def test_a_teardown_keeps_a_named_final_snapshot_of_the_primary_and_says_what_it_costs(
    aws: Clients, production: Synthesized, tmp_path: Path, rollback: bool
) -> None:
    deployed = deploy(aws, "hivemind-keep-abcdefghij", database_template(production.template))
    with_a_note(deployed)
    primary = deployed.identifier
    assert len(database_ids(aws)) == 2  # the primary and its replica
    record = record_of(tmp_path, "hivemind-keep-abcdefghij")
    if rollback:  # an update that failed: what `hivemind rollback` is for
        record.update(status=Status.FAILED, failed_stage="update")
    said: list[str] = []
    tearing = destroyer(aws, said)

    result = tearing.destroy(record, tearing.plan(record), skip_snapshot=False, rollback=rollback)

    assert database_ids(aws) == set()
    (kept,) = result.snapshots
    assert isinstance(kept, KeptSnapshot) and kept.database == primary
    assert kept.identifier.startswith(f"{primary}-final-")
    assert kept.gib == 20 and kept.monthly_usd == pytest.approx(20 * 0.095, abs=0.01)
    (snapshot,) = manual_snapshots(aws)  # of the primary; none of the replica
    assert snapshot["DBSnapshotIdentifier"] == kept.identifier
    assert snapshot["DBInstanceIdentifier"] == primary
    assert any("read replica" in line and "its data is its primary's" in line for line in said)
    report = (record.folder / "destroy-report.md").read_text()
    assert kept.identifier in report and "1.90" in report
    assert f"aws rds delete-db-snapshot --db-snapshot-identifier {kept.identifier}" in report
    assert record.load().status == (Status.ROLLED_BACK if rollback else Status.DESTROYED)
    forget_snapshots(aws)


def test_only_skip_snapshot_deletes_the_data_without_a_snapshot(
    aws: Clients, production: Synthesized, tmp_path: Path
) -> None:
    deploy(aws, "hivemind-gone-abcdefghij", database_template(production.template))
    record = record_of(tmp_path, "hivemind-gone-abcdefghij")
    said: list[str] = []
    tearing = destroyer(aws, said)

    result = tearing.destroy(record, tearing.plan(record), skip_snapshot=True)

    assert database_ids(aws) == set()
    assert result.snapshots == [] and manual_snapshots(aws) == []
    assert any("without a final snapshot (--skip-snapshot)" in line for line in said)
    assert "No database snapshot was kept." in (record.folder / "destroy-report.md").read_text()


def test_a_database_rds_cannot_snapshot_is_refused_before_anything_is_deleted(
    aws: Clients, production: Synthesized, tmp_path: Path
) -> None:
    deployed = deploy(aws, "hivemind-fail-abcdefghij", database_template(production.template))
    before = database_ids(aws)
    database = rds_backends[ACCOUNT][aws.region].databases[deployed.identifier]
    database.status = "failed"
    record = record_of(tmp_path, "hivemind-fail-abcdefghij")
    tearing = destroyer(aws, [])
    try:
        with pytest.raises(RefusedError) as refused:
            tearing.destroy(record, tearing.plan(record), skip_snapshot=False)
        assert "cannot take its final snapshot" in refused.value.what
        assert "--skip-snapshot" in (refused.value.next_step or "")
        assert database_ids(aws) == before  # neither the replica nor the primary went
    finally:
        database.status = "available"
        tearing.destroy(record, tearing.plan(record), skip_snapshot=True)
    assert database_ids(aws) == set()


def test_the_sandbox_refuses_the_deletions_rds_refuses(
    aws: Clients, production: Synthesized, tmp_path: Path
) -> None:
    deployed = deploy(aws, "hivemind-rds-abcdefghij", database_template(production.template))
    primary = deployed.identifier
    replica = next(i for i in database_ids(aws) if i != primary)

    def refused(identifier: str, **arguments: Any) -> str:
        with pytest.raises(ClientError) as error:
            aws.rds.delete_db_instance(DBInstanceIdentifier=identifier, **arguments)
        return str(error.value.response["Error"]["Code"])

    # A replica has no final snapshot; a primary needs a name or SkipFinalSnapshot, not both.
    assert refused(replica, FinalDBSnapshotIdentifier="r-final") == "InvalidParameterCombination"
    assert refused(primary, SkipFinalSnapshot=False) == "InvalidParameterCombination"
    assert (
        refused(primary, SkipFinalSnapshot=True, FinalDBSnapshotIdentifier="p-final")
        == "InvalidParameterCombination"
    )
    database = rds_backends[ACCOUNT][aws.region].databases[primary]
    database.status = "failed"
    try:
        assert refused(primary, FinalDBSnapshotIdentifier="p-final") == "InvalidDBInstanceState"
    finally:
        database.status = "available"
    assert database_ids(aws) == {primary, replica} and manual_snapshots(aws) == []
    record = record_of(tmp_path, "hivemind-rds-abcdefghij")
    tearing = destroyer(aws, [])
    tearing.destroy(record, tearing.plan(record), skip_snapshot=True)


def test_a_final_snapshot_name_is_one_rds_accepts() -> None:
    when = time.gmtime(0)
    assert (
        final_snapshot_name("hivemind-shop-db-x1", when)
        == "hivemind-shop-db-x1-final-19700101000000"
    )
    assert final_snapshot_name("9--Odd__Name-", when) == "db-9-odd-name-final-19700101000000"
    long = final_snapshot_name("a" * 300, when)
    assert len(long) <= 255 and long[0].isalpha() and "--" not in long


def test_rollback_of_a_deployment_that_serves_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    record = record_of(home, "hivemind-shop-abcdefghij")
    result = run_cli("rollback", record.deployment_id, "--yes", env={"HIVEMIND_HOME": str(home)})
    assert result.returncode == 3, result.stderr
    assert "is deployed and serving: nothing was changed" in result.stderr
    assert f"hivemind destroy {record.deployment_id}" in result.stderr
    assert record.load().status == Status.DEPLOYED
