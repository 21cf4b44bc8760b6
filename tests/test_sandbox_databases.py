"""Each sandbox RDS DB instance is a real database server: a stack with HiveMind's
database (a password generated into a secret, a Multi-AZ PostgreSQL instance and its
read replica) serves at the endpoint the stack reports, with the secret's password;
the replica streams the primary's data; updates in place keep the server and its data,
a replacement gets a new server, and deleting the stack (or stopping the sandbox)
stops every server and removes its files. Engine mysql runs MariaDB (its replica
replaying the primary's binary log) when the machine has it, and otherwise fails with
what to install."""

from __future__ import annotations

import copy
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from sandbox_harness import (
    Clients,
    Synthesized,
    destroy,
    events,
    in_process_sandbox,
    outputs,
    stack,
    synthesize_profile,
)

from hivemind import toolchain
from hivemind.sandbox import control, databases
from hivemind.sandbox.cloudformation import dependencies
from hivemind.sandbox.server import SandboxServer

pytestmark = pytest.mark.sandbox

PRIMARY = "DatabaseInstanceAA8A5FDE"
REPLICA = "DatabaseReadReplicaFA1999F7"
ATTACHMENT = "DatabaseInstanceSecretAttachmentFCA06D38"


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
def aws(sandbox: SandboxServer) -> Iterator[Clients]:
    """Clients on the sandbox; afterwards no stack stays behind."""
    clients = Clients(sandbox.url)
    yield clients
    for summary in clients.cloudformation.list_stacks()["StackSummaries"]:
        if summary["StackStatus"] != "DELETE_COMPLETE":
            destroy(clients, summary["StackId"])


def database_template(
    template: dict[str, Any], *, replica: bool = True, engine: str = "postgres"
) -> dict[str, Any]:
    """The database part of a HiveMind template: the DB instance (and its replica), its
    generated secret and the secret's attachment, with what they refer to (VPC, subnets,
    security group, subnet groups); outputs say where each instance serves."""
    resources = template["Resources"]
    wanted = [PRIMARY, ATTACHMENT] + ([REPLICA] if replica else [])
    graph = dependencies(resources)
    keep: set[str] = set()
    while wanted:
        logical_id = wanted.pop()
        if logical_id not in keep:
            keep.add(logical_id)
            wanted += graph[logical_id]
    part = copy.deepcopy({k: v for k, v in resources.items() if k in keep})
    if engine == "mysql":
        # What HiveMind writes for MySQL 8.0, on the same resources.
        for logical_id in (PRIMARY, REPLICA):
            if logical_id in part:
                part[logical_id]["Properties"]["EnableCloudwatchLogsExports"] = ["error"]
        part[PRIMARY]["Properties"].update({"Engine": "mysql", "EngineVersion": "8.0.46"})
    secret = next(k for k, v in part.items() if v["Type"] == "AWS::SecretsManager::Secret")
    served = {
        "Address": {"Fn::GetAtt": [PRIMARY, "Endpoint.Address"]},
        "Port": {"Fn::GetAtt": [PRIMARY, "Endpoint.Port"]},
        "SecretArn": {"Ref": secret},
    }
    if replica:
        served["ReplicaAddress"] = {"Fn::GetAtt": [REPLICA, "Endpoint.Address"]}
        served["ReplicaPort"] = {"Fn::GetAtt": [REPLICA, "Endpoint.Port"]}
    return {
        "Resources": part,
        "Outputs": {name: {"Value": value} for name, value in served.items()},
    }


@dataclass(frozen=True)
class Deployed:
    """A database stack as its user sees it: its outputs and the secret's contents."""

    stack_id: str
    values: dict[str, str]
    secret: dict[str, Any]

    @property
    def identifier(self) -> str:
        return str(self.secret["dbInstanceIdentifier"])

    @property
    def password(self) -> str:
        return str(self.secret["password"])


def deploy(clients: Clients, name: str, template: dict[str, Any]) -> Deployed:
    stack_id = clients.cloudformation.create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )["StackId"]
    assert stack(clients, stack_id)["StackStatus"] == "CREATE_COMPLETE", failures(clients, stack_id)
    return refreshed(clients, stack_id)


def refreshed(clients: Clients, stack_id: str) -> Deployed:
    values = outputs(clients, stack_id)
    secret = clients.secretsmanager.get_secret_value(SecretId=values["SecretArn"])["SecretString"]
    return Deployed(stack_id, values, json.loads(secret))


def failures(clients: Clients, stack_id: str) -> list[tuple[str, str]]:
    return [
        (e["LogicalResourceId"], e.get("ResourceStatusReason", ""))
        for e in events(clients, stack_id)
        if e["ResourceStatus"].endswith("_FAILED")
    ]


def postgres(address: str, port: int | str, password: str, dbname: str = "app") -> Any:
    return psycopg.connect(
        host=address,
        port=int(port),
        user="hivemind",
        password=password,
        dbname=dbname,
        connect_timeout=5,
        autocommit=True,
    )


def port_closed(address: str, port: int | str) -> bool:
    try:
        socket.create_connection((address, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def server(identifier: str) -> databases.DatabaseServer:
    found = databases.server_of(identifier)
    assert found is not None, f"no server for {identifier}"
    return found


def test_a_db_instance_serves_at_its_endpoint_with_the_secrets_password(
    aws: Clients, production: Synthesized
) -> None:
    db = deploy(aws, "database", database_template(production.template, replica=False))

    described = aws.rds.describe_db_instances(DBInstanceIdentifier=db.identifier)["DBInstances"]
    endpoint = described[0]["Endpoint"]
    assert (endpoint["Address"], endpoint["Port"]) == (db.values["Address"], 5432)
    assert (db.secret["host"], db.secret["port"]) == (db.values["Address"], 5432)
    assert db.values["Address"].startswith("127.") and db.values["Port"] == "5432"
    assert len(db.password) == 30  # generated by the stack's secret, never written by us

    with postgres(db.values["Address"], 5432, db.password) as connection:
        connection.execute("CREATE TABLE notes (body text)")
        connection.execute("INSERT INTO notes VALUES ('hello')")
        assert connection.execute("SELECT body FROM notes").fetchall() == [("hello",)]
        owner = connection.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'app'"
        ).fetchone()
        assert owner == ("hivemind",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        postgres(db.values["Address"], 5432, db.password + "x")

    pid = server(db.identifier).pid
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text()
    uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert uid == (65534 if os.geteuid() == 0 else os.geteuid())  # never root
    assert (databases.database_folder(db.identifier) / "data" / "PG_VERSION").is_file()


def test_a_read_replica_follows_its_source_and_deleting_the_stack_stops_both(
    aws: Clients, production: Synthesized
) -> None:
    db = deploy(aws, "database", database_template(production.template))
    replica_id = next(
        d["DBInstanceIdentifier"]
        for d in aws.rds.describe_db_instances()["DBInstances"]
        if d.get("ReadReplicaSourceDBInstanceIdentifier")
    )
    assert server(replica_id).address == db.values["ReplicaAddress"] != db.values["Address"]

    with postgres(db.values["Address"], 5432, db.password) as primary:
        primary.execute("CREATE TABLE notes (body text)")
        primary.execute("INSERT INTO notes VALUES ('replicated')")
    with postgres(db.values["ReplicaAddress"], db.values["ReplicaPort"], db.password) as standby:
        deadline = time.monotonic() + 10
        while True:
            try:
                rows = standby.execute("SELECT body FROM notes").fetchall()
                break
            except psycopg.errors.UndefinedTable:
                assert time.monotonic() < deadline, "the replica never received the table"
                time.sleep(0.05)
        assert rows == [("replicated",)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute("INSERT INTO notes VALUES ('refused')")

    running = [server(db.identifier), server(replica_id)]
    pids = [s.pid for s in running]
    folders = [databases.database_folder(s.identifier) for s in running]
    data = [folder.resolve() for folder in folders]

    assert destroy(aws, db.stack_id) == "DELETE_COMPLETE"

    assert all(pid is not None and gone(pid) for pid in pids)
    assert port_closed(db.values["Address"], 5432)
    assert port_closed(db.values["ReplicaAddress"], db.values["ReplicaPort"])
    assert not [f for f in folders + data if f.exists() or f.is_symlink()]
    # DeletionPolicy: Snapshot keeps a final snapshot, which in the sandbox is a record.
    snapshots = aws.rds.describe_db_snapshots(DBInstanceIdentifier=db.identifier)["DBSnapshots"]
    assert "manual" in [s["SnapshotType"] for s in snapshots]


def test_an_update_in_place_keeps_the_server_and_a_replacement_gets_a_new_one(
    aws: Clients, production: Synthesized
) -> None:
    template = database_template(production.template, replica=False)
    db = deploy(aws, "database", template)
    before = server(db.identifier)
    pid = before.pid
    with postgres(db.values["Address"], 5432, db.password) as connection:
        connection.execute("CREATE TABLE notes (body text)")
        connection.execute("INSERT INTO notes VALUES ('kept')")

    # What `hivemind upgrade` and resizes change: all applied in place by CloudFormation.
    changed = copy.deepcopy(template)
    changed["Resources"][PRIMARY]["Properties"].update(
        {
            "DBInstanceClass": "db.t3.small",
            "AllocatedStorage": "40",
            "BackupRetentionPeriod": 1,
            "MultiAZ": False,
            "DeletionProtection": False,
        }
    )
    aws.cloudformation.update_stack(StackName=db.stack_id, TemplateBody=json.dumps(changed))

    assert stack(aws, db.stack_id)["StackStatus"] == "UPDATE_COMPLETE", failures(aws, db.stack_id)
    updated = refreshed(aws, db.stack_id)
    assert updated.values == db.values
    assert server(db.identifier) is before and before.is_running() and before.pid == pid
    described = aws.rds.describe_db_instances(DBInstanceIdentifier=db.identifier)["DBInstances"][0]
    assert (described["DBInstanceClass"], described["MultiAZ"]) == ("db.t3.small", False)
    with postgres(db.values["Address"], 5432, db.password) as connection:
        assert connection.execute("SELECT body FROM notes").fetchall() == [("kept",)]

    # A new port is applied in place too: the same server and data, restarted there.
    moved = copy.deepcopy(changed)
    moved["Resources"][PRIMARY]["Properties"]["Port"] = "5433"
    aws.cloudformation.update_stack(StackName=db.stack_id, TemplateBody=json.dumps(moved))

    assert stack(aws, db.stack_id)["StackStatus"] == "UPDATE_COMPLETE", failures(aws, db.stack_id)
    assert refreshed(aws, db.stack_id).values == {**db.values, "Port": "5433"}
    assert server(db.identifier) is before and port_closed(db.values["Address"], 5432)
    with postgres(db.values["Address"], 5433, db.password) as connection:
        assert connection.execute("SELECT body FROM notes").fetchall() == [("kept",)]
    pid = before.pid  # restarted: a new process

    # A new database name replaces the instance: a new server, the old one goes.
    replaced = copy.deepcopy(moved)
    replaced["Resources"][PRIMARY]["Properties"]["DBName"] = "shop"
    aws.cloudformation.update_stack(StackName=db.stack_id, TemplateBody=json.dumps(replaced))

    assert stack(aws, db.stack_id)["StackStatus"] == "UPDATE_COMPLETE", failures(aws, db.stack_id)
    new = refreshed(aws, db.stack_id)
    resources = aws.cloudformation.list_stack_resources(StackName=db.stack_id)
    identifier = next(
        r["PhysicalResourceId"]
        for r in resources["StackResourceSummaries"]
        if r["LogicalResourceId"] == PRIMARY
    )
    assert identifier != db.identifier and new.values["Address"] != db.values["Address"]
    assert server(identifier).address == new.values["Address"]
    with postgres(new.values["Address"], 5433, new.password, dbname="shop") as connection:
        assert connection.execute("SELECT current_database()").fetchone() == ("shop",)
    assert pid is not None and gone(pid)
    assert port_closed(db.values["Address"], 5433)
    assert databases.server_of(db.identifier) is None


def test_engine_mysql_serves_mariadb_when_installed_and_says_what_to_install_otherwise(
    aws: Clients, production: Synthesized
) -> None:
    template = database_template(production.template, engine="mysql")
    stack_id = aws.cloudformation.create_stack(
        StackName="mysql", TemplateBody=json.dumps(template)
    )["StackId"]

    if databases.find_mysql() is None:
        assert stack(aws, stack_id)["StackStatus"] == "ROLLBACK_COMPLETE"
        assert (PRIMARY, databases.MYSQL_MISSING) in failures(aws, stack_id)
        return
    assert stack(aws, stack_id)["StackStatus"] == "CREATE_COMPLETE", failures(aws, stack_id)
    db = refreshed(aws, stack_id)
    assert (db.secret["engine"], db.secret["port"]) == ("mysql", 3306)
    assert db.values["Address"].startswith("127.") and db.values["Port"] == "3306"
    connection = pymysql.connect(
        host=db.values["Address"], port=3306, user="hivemind", password=db.password, database="app"
    )
    with connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE notes (body text)")
        cursor.execute("INSERT INTO notes VALUES ('hello')")
        connection.commit()
        cursor.execute("SELECT body FROM notes")
        assert cursor.fetchall() == (("hello",),)
    with pytest.raises(pymysql.err.OperationalError, match="Access denied"):
        pymysql.connect(
            host=db.values["Address"], port=3306, user="hivemind", password=db.password + "x"
        )
    # The read replica replays the primary's binary log, and refuses writes.
    assert db.values["ReplicaAddress"] not in ("", db.values["Address"])
    deadline = time.monotonic() + 10
    while True:
        try:
            replica = pymysql.connect(
                host=db.values["ReplicaAddress"],
                port=int(db.values["ReplicaPort"]),
                user="hivemind",
                password=db.password,
                database="app",
            )
            with replica, replica.cursor() as cursor:
                cursor.execute("SELECT body FROM notes")
                assert cursor.fetchall() == (("hello",),)
                with pytest.raises(pymysql.err.OperationalError, match="read-only"):
                    cursor.execute("INSERT INTO notes VALUES ('refused')")
            break
        except (pymysql.err.OperationalError, pymysql.err.ProgrammingError):
            assert time.monotonic() < deadline, "the replica never caught up"
            time.sleep(0.05)

    pid = server(db.identifier).pid
    assert destroy(aws, stack_id) == "DELETE_COMPLETE"
    assert pid is not None and gone(pid)
    assert port_closed(db.values["Address"], 3306)
    assert not databases.database_folder(db.identifier).exists()


def test_without_a_mysql_server_engine_mysql_fails_with_what_to_install(
    aws: Clients, production: Synthesized, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(databases, "find_mysql", lambda: None)  # a machine without one
    template = database_template(production.template, replica=False, engine="mysql")

    stack_id = aws.cloudformation.create_stack(
        StackName="mysql", TemplateBody=json.dumps(template)
    )["StackId"]

    assert stack(aws, stack_id)["StackStatus"] == "ROLLBACK_COMPLETE"
    assert failures(aws, stack_id) == [(PRIMARY, databases.MYSQL_MISSING)]
    assert "apt-get install mariadb-server" in databases.MYSQL_MISSING
    assert aws.rds.describe_db_instances()["DBInstances"] == []


def test_sandbox_down_stops_the_database_servers(tmp_path: Path, production: Synthesized) -> None:
    home = tmp_path / "home"
    info = control.up(home)
    try:
        clients = Clients.of(info)
        db = deploy(clients, "database", database_template(production.template, replica=False))
        folder = control.state_dir(home) / "run" / "databases" / db.identifier
        pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
        with postgres(db.values["Address"], 5432, db.password) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
        data = folder.resolve()
    finally:
        assert control.down(home)

    assert gone(pid)
    assert port_closed(db.values["Address"], 5432)
    assert not data.exists() and not folder.is_symlink()
