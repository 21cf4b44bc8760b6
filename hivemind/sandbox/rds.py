"""The sandbox's RDS resource types: DB subnet groups and DB instances, including read
replicas (`SourceDBInstanceIdentifier`).

Every DB instance is a real database server (`hivemind.sandbox.databases`): its
`Endpoint.Address` and `Endpoint.Port`, and what `DescribeDBInstances` and the
secret attachment report, are that server's loopback address and port, and the
master user logs in with `MasterUserPassword` (the secret's password, once the
engine has resolved `{{resolve:secretsmanager:...}}`). Read replicas are real
replicas of their source's server (a PostgreSQL streaming standby, a MariaDB replica);
Multi-AZ, storage, backups and manual snapshots are moto's metadata only (see
`databases` for the whole list); a final snapshot holds the data, and restoring it
(RestoreDBInstanceFromDBSnapshot) starts a server on it.

Updates CloudFormation applies in place (instance class, storage, backup retention,
Multi-AZ, deletion protection...) keep the server and its data; a new `Port`
restarts it there, a new `MasterUserPassword` changes the master user's password.
A replacement (what `provisioning.replacement_rules` and `DbInstance.replaces_when`
decide, as CloudFormation's RDS handler does) is a new instance with a new server,
and the old one goes after the update succeeds. Deleting the instance, through the
stack or the RDS API, stops its server and removes its data.

RDS rules CloudFormation runs into hold here too: a DB instance with deletion
protection refuses to be deleted (the stack ends DELETE_FAILED until it is turned
off), and `DeletionPolicy: Snapshot` keeps a final snapshot, as on AWS. Through the API,
DeleteDBInstance refuses what RDS refuses: a final snapshot of a read replica or of a
failed instance, and neither a snapshot name nor SkipFinalSnapshot.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from moto.ec2.models import ec2_backends
from moto.rds.exceptions import (
    DBInstanceNotFoundError,
    InvalidParameterCombination,
    RDSClientError,
)
from moto.rds.models import DBInstance, RDSBackend, rds_backends

from hivemind.sandbox import databases, patching
from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceFailed,
    ResourceType,
    as_bool,
    implements,
    name_from_arn,
    random_suffix,
    tag_list,
)


def _rds(ctx: Context) -> MotoBackend:
    return rds_backends[ctx.account_id][ctx.region]


def rds_name(ctx: Context, max_length: int = 63) -> str:
    """A generated RDS identifier: lower case letters, digits and single hyphens, starting
    with a letter (CloudFormation's `<stack>-<logical id>-<random>`, cut to fit)."""
    base = re.sub(r"[^a-z0-9]+", "-", f"{ctx.stack_name}-{ctx.logical_id}".lower()).strip("-")
    if not base[:1].isalpha():
        base = f"db-{base}"
    suffix = random_suffix(8, lower=True)
    return f"{base[: max_length - len(suffix) - 1].rstrip('-')}-{suffix}"


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# ---------------------------------------------------------------------------
# moto's DB instances, answering for their servers

_moto_address = DBInstance.address
_moto_delete_db_instance = RDSBackend.delete_db_instance


def _address(self: DBInstance) -> str:
    """The address of the instance's server (`sandbox_address`); moto's made-up host
    name for an instance made through the RDS API, which has no server."""
    served = getattr(self, "sandbox_address", None)
    return str(served) if served else str(_moto_address.fget(self))  # type: ignore[attr-defined]


# DB instance states from which RDS deletes only with SkipFinalSnapshot.
_NO_FINAL_SNAPSHOT_STATES = frozenset({"failed", "incompatible-restore", "incompatible-network"})


def _delete_db_instance(
    self: RDSBackend,
    db_instance_identifier: str,
    final_db_snapshot_identifier: str | None = None,
    skip_final_snapshot: bool | None = False,
    delete_automated_backups: bool | None = True,
) -> Any:
    """moto's DeleteDBInstance, refusing what RDS refuses and moto lets through, then
    stopping the instance's server once it is deleted (through the stack or the API).

    RDS's DeleteDBInstance (API reference, SkipFinalSnapshot and FinalDBSnapshotIdentifier):
    without SkipFinalSnapshot a FinalDBSnapshotIdentifier is required, and both together
    are an error; a read replica must be deleted with SkipFinalSnapshot (it has no final
    snapshot: "FinalDBSnapshotIdentifier can not be specified when deleting a replica
    instance"); an instance in the failed, incompatible-restore or incompatible-network
    state can be deleted only with SkipFinalSnapshot. Each is InvalidParameterCombination
    (the state, InvalidDBInstanceState) and deletes nothing."""
    database = self.databases.get(db_instance_identifier)
    if database is not None:
        if skip_final_snapshot and final_db_snapshot_identifier:
            raise InvalidParameterCombination(
                "FinalDBSnapshotIdentifier can not be specified when SkipFinalSnapshot is set"
            )
        if database.is_replica and not skip_final_snapshot:
            raise InvalidParameterCombination(
                "FinalDBSnapshotIdentifier can not be specified when deleting a replica instance"
            )
        if not skip_final_snapshot and not final_db_snapshot_identifier:
            raise InvalidParameterCombination(
                "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified."
            )
        if not skip_final_snapshot and database.status in _NO_FINAL_SNAPSHOT_STATES:
            raise RDSClientError(
                "InvalidDBInstanceState",  # the fault's code on the wire
                f"DB instance {db_instance_identifier} is {database.status}: it can be deleted "
                "only with SkipFinalSnapshot",
            )
    deleted = _moto_delete_db_instance(
        self,
        db_instance_identifier,
        final_db_snapshot_identifier,
        skip_final_snapshot,
        delete_automated_backups,
    )
    server = databases.server_of(db_instance_identifier)
    if server is not None:
        if final_db_snapshot_identifier and not skip_final_snapshot:
            databases.keep_final_snapshot(db_instance_identifier, final_db_snapshot_identifier)
        server.stop()
    return deleted


def _restore_db_instance_from_db_snapshot(
    self: RDSBackend, from_snapshot_id: str, overrides: dict[str, Any]
) -> Any:
    """moto's RestoreDBInstanceFromDBSnapshot, with a server on the snapshot's data (a
    final snapshot's: see `databases`); the instance is not created when it cannot run."""
    snapshot_id = (
        name_from_arn(from_snapshot_id)
        if from_snapshot_id.startswith("arn:")
        else (from_snapshot_id)
    )
    if snapshot_id in self.database_snapshots and not databases.snapshot_holds_data(snapshot_id):
        raise RDSClientError(
            "InvalidDBSnapshotState",
            f"the sandbox keeps the data of final snapshots only: {snapshot_id} has none",
        )
    database = _moto_restore_db_instance_from_db_snapshot(self, from_snapshot_id, overrides)
    identifier = str(database.db_instance_identifier)
    try:
        server = databases.restore_snapshot(snapshot_id, identifier, port=int(database.port or 0))
    except databases.DatabaseError as error:
        database.deletion_protection = False
        _moto_delete_db_instance(self, identifier, None, True, True)
        raise RDSClientError("InvalidRestoreFault", str(error)) from error
    _serve(database, server)
    return database


def _delete_db_snapshot(self: RDSBackend, db_snapshot_identifier: str) -> Any:
    """moto's DeleteDBSnapshot; the snapshot's data goes with it."""
    deleted = _moto_delete_db_snapshot(self, db_snapshot_identifier)
    databases.delete_snapshot_data(db_snapshot_identifier)
    return deleted


DBInstance.address = property(_address)  # type: ignore[assignment,method-assign]
RDSBackend.delete_db_instance = _delete_db_instance  # type: ignore[method-assign]
_moto_restore_db_instance_from_db_snapshot = RDSBackend.restore_db_instance_from_db_snapshot
_moto_delete_db_snapshot = RDSBackend.delete_db_snapshot
patching.replace(
    RDSBackend, "restore_db_instance_from_db_snapshot", _restore_db_instance_from_db_snapshot
)
patching.replace(RDSBackend, "delete_db_snapshot", _delete_db_snapshot)


def _serve(database: Any, server: databases.DatabaseServer) -> None:
    """Point moto's instance at its server."""
    database.sandbox_address = server.address
    database.port = server.port


@implements
class DbSubnetGroup(ResourceType):
    type_name = "AWS::RDS::DBSubnetGroup"
    attributes = frozenset()
    name_property = "DBSubnetGroupName"

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        rds = _rds(ctx)
        ec2 = ec2_backends[ctx.account_id][ctx.region]
        name = properties.get("DBSubnetGroupName") or rds_name(ctx, 255)
        group = rds.create_subnet_group(
            name,
            properties["DBSubnetGroupDescription"],
            [ec2.get_subnet(subnet_id) for subnet_id in properties["SubnetIds"]],
            tag_list(ctx.tags(properties)),
        )
        return Provisioned(group.name, delete=lambda: rds.delete_subnet_group(group.name))

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        ec2 = ec2_backends[ctx.account_id][ctx.region]
        rds = _rds(ctx)
        group = rds.modify_db_subnet_group(
            old.physical_resource_id,
            properties["DBSubnetGroupDescription"],
            [ec2.get_subnet(subnet_id) for subnet_id in properties["SubnetIds"]],
        )
        # moto's ModifyDBSubnetGroup takes the group out of its registry and never puts
        # it back.
        rds.subnet_groups[group.name] = group
        return old


@implements
class DbInstance(ResourceType):
    type_name = "AWS::RDS::DBInstance"
    attributes = frozenset(
        {"DBInstanceArn", "DbiResourceId", "Endpoint.Address", "Endpoint.HostedZoneId"}
        | {"Endpoint.Port"}
    )
    name_property = "DBInstanceIdentifier"
    # Engine changes RDS makes in place (CloudFormation's RDS handler,
    # ImmutabilityHelper.isEngineMutable): any other new engine is a new instance.
    _ENGINE_UPGRADES = frozenset(
        {
            ("aurora", "aurora-mysql"),
            ("oracle-se", "oracle-se2"),
            ("oracle-se1", "oracle-se2"),
            ("oracle-ee", "oracle-ee-cdb"),
            ("oracle-se2", "oracle-se2-cdb"),
        }
    )
    # Restore sources: dropping one (or keeping it) changes nothing; a new one is a
    # new instance restored from it.
    _RESTORED_FROM = frozenset(
        {
            "DBSnapshotIdentifier",
            "DBClusterSnapshotIdentifier",
            "RestoreTime",
            "SourceDBInstanceAutomatedBackupsArn",
            "SourceDbiResourceId",
        }
    )

    def replaces_when(self, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """When CloudFormation's RDS handler replaces a DB instance for the properties it
        replaces for under conditions (its ImmutabilityHelper); the rest of them
        (MultiAZ, BackupRetentionPeriod, DBParameterGroupName, AutoMinorVersionUpgrade,
        PreferredMaintenanceWindow) it modifies in place."""
        before, after = old.get(name), new.get(name)
        if name == "Engine":
            engines = (str(before or "").lower(), str(after or "").lower())
            return engines[0] != engines[1] and engines not in self._ENGINE_UPGRADES
        if name == "AvailabilityZone":  # a Multi-AZ instance may leave its zone to RDS
            return not (not after and as_bool(new.get("MultiAZ")))
        if name in ("SourceDBInstanceIdentifier", "SourceDBClusterIdentifier"):
            return bool(after)  # dropping the source promotes the replica in place
        if name == "PerformanceInsightsKMSKeyId":
            return bool(before)  # a first key is set in place
        if name in self._RESTORED_FROM:
            return bool(after)
        if name == "UseLatestRestorableTime":
            return as_bool(after)
        return False

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        rds = _rds(ctx)
        identifier = properties.get("DBInstanceIdentifier") or rds_name(ctx)
        source = properties.get("SourceDBInstanceIdentifier")
        if source:
            database = rds.create_db_instance_read_replica(
                self._replica_arguments(identifier, source, properties, ctx)
            )
        else:
            database = rds.create_db_instance(self._arguments(identifier, properties, ctx))
        try:
            server = self._start_server(database, properties)
        except databases.DatabaseError as error:
            database.deletion_protection = False
            rds.delete_db_instance(identifier, skip_final_snapshot=True)
            raise ResourceFailed(ctx.logical_id, str(error)) from error
        _serve(database, server)

        def delete(final_snapshot: str | None = None) -> None:
            # Deleted through the RDS API already: CloudFormation counts that as deleted.
            with contextlib.suppress(DBInstanceNotFoundError):
                rds.delete_db_instance(
                    identifier,
                    final_db_snapshot_identifier=final_snapshot,
                    skip_final_snapshot=final_snapshot is None,
                    delete_automated_backups=as_bool(
                        properties.get("DeleteAutomatedBackups"), default=True
                    ),
                )

        def delete_with_snapshot() -> None:
            if database.is_replica:
                delete()  # a read replica has no snapshot of its own
            else:
                delete(f"{identifier}-snapshot-{random_suffix(8, lower=True)}")

        return Provisioned(
            identifier,
            delete=delete,
            delete_with_snapshot=delete_with_snapshot,
            native=database,
            attributes={
                "Endpoint.Address": database.address,
                "Endpoint.Port": str(database.port),
                "Endpoint.HostedZoneId": "Z2R2ITUGPM61AM",
                "DBInstanceArn": database.db_instance_arn,
                "DbiResourceId": database.dbi_resource_id,
            },
        )

    @staticmethod
    def _start_server(database: Any, properties: dict[str, Any]) -> databases.DatabaseServer:
        """The server of a new DB instance: a replica of its source's server for a read
        replica, else a new server with the master user and `DBName`."""
        identifier = str(database.db_instance_identifier)
        if database.is_replica:
            source_id = name_from_arn(str(database.source_db_instance_identifier))
            source = databases.server_of(source_id)
            if source is None:
                raise databases.DatabaseError(
                    f"the source DB instance {source_id} has no sandbox database server "
                    "(it was not created by a stack)"
                )
            return databases.start_read_replica(identifier, source=source, port=int(database.port))
        username = properties.get("MasterUsername")
        password = properties.get("MasterUserPassword")
        if not username or not password:
            raise databases.DatabaseError(
                "the sandbox needs MasterUsername and MasterUserPassword to create the "
                "master user of its database server"
            )
        return databases.start_database(
            str(database.engine),
            identifier,
            port=int(database.port),
            master=databases.MasterUser(str(username), str(password)),
            database_name=properties.get("DBName") or None,
        )

    @staticmethod
    def _arguments(identifier: str, properties: dict[str, Any], ctx: Context) -> dict[str, Any]:
        arguments = {
            "db_instance_identifier": identifier,
            "db_instance_class": properties["DBInstanceClass"],
            "engine": properties["Engine"],
            "engine_version": properties.get("EngineVersion"),
            "allocated_storage": _optional_int(properties.get("AllocatedStorage")),
            "max_allocated_storage": _optional_int(properties.get("MaxAllocatedStorage")),
            "backup_retention_period": int(properties.get("BackupRetentionPeriod", 1)),
            "auto_minor_version_upgrade": as_bool(
                properties.get("AutoMinorVersionUpgrade"), default=True
            ),
            "db_name": properties.get("DBName"),
            "db_subnet_group_name": properties.get("DBSubnetGroupName"),
            "db_parameter_group_name": properties.get("DBParameterGroupName"),
            "port": _optional_int(properties.get("Port")),
            "master_username": properties.get("MasterUsername"),
            "master_user_password": properties.get("MasterUserPassword"),
            "multi_az": as_bool(properties.get("MultiAZ")),
            "publicly_accessible": as_bool(properties.get("PubliclyAccessible")),
            "copy_tags_to_snapshot": as_bool(properties.get("CopyTagsToSnapshot")),
            "storage_type": properties.get("StorageType"),
            "storage_encrypted": as_bool(properties.get("StorageEncrypted")),
            "kms_key_id": properties.get("KmsKeyId"),
            "iops": properties.get("Iops"),
            "vpc_security_group_ids": list(properties.get("VPCSecurityGroups") or []),
            "deletion_protection": as_bool(properties.get("DeletionProtection")),
            "enable_cloudwatch_logs_exports": properties.get("EnableCloudwatchLogsExports"),
            "enable_iam_database_authentication": as_bool(
                properties.get("EnableIAMDatabaseAuthentication")
            ),
            "availability_zone": properties.get("AvailabilityZone"),
            "tags": tag_list(ctx.tags(properties)),
        }
        if properties.get("PreferredBackupWindow"):
            arguments["preferred_backup_window"] = properties["PreferredBackupWindow"]
        if properties.get("PreferredMaintenanceWindow"):
            arguments["preferred_maintenance_window"] = properties[
                "PreferredMaintenanceWindow"
            ].lower()
        return {key: value for key, value in arguments.items() if value is not None}

    @staticmethod
    def _replica_arguments(
        identifier: str, source: str, properties: dict[str, Any], ctx: Context
    ) -> dict[str, Any]:
        # moto copies the source instance and overwrites what is given: everything a
        # replica does not inherit on AWS is given explicitly.
        arguments = {
            "db_instance_identifier": identifier,
            "source_db_instance_identifier": source,
            "db_instance_class": properties.get("DBInstanceClass"),
            "db_subnet_group_name": properties.get("DBSubnetGroupName"),
            "vpc_security_group_ids": list(properties.get("VPCSecurityGroups") or []),
            "publicly_accessible": as_bool(properties.get("PubliclyAccessible")),
            "multi_az": as_bool(properties.get("MultiAZ")),
            "deletion_protection": as_bool(properties.get("DeletionProtection")),
            "backup_retention_period": int(properties.get("BackupRetentionPeriod", 0)),
            "storage_type": properties.get("StorageType"),
            "port": _optional_int(properties.get("Port")),
            "availability_zone": properties.get("AvailabilityZone"),
            "enabled_cloudwatch_logs_exports": list(
                properties.get("EnableCloudwatchLogsExports") or []
            ),
            "tags": tag_list(ctx.tags(properties)),
        }
        return {key: value for key, value in arguments.items() if value is not None}

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if old.properties.get("SourceDBInstanceIdentifier") and not properties.get(
            "SourceDBInstanceIdentifier"
        ):
            raise ResourceFailed(
                ctx.logical_id,
                "The sandbox cannot promote a read replica (SourceDBInstanceIdentifier "
                "removed); RDS would promote it in place",
                "update",
            )
        identifier = old.physical_resource_id
        if properties.get("SourceDBInstanceIdentifier"):
            arguments = self._replica_arguments(
                identifier, properties["SourceDBInstanceIdentifier"], properties, ctx
            )
        else:
            arguments = self._arguments(identifier, properties, ctx)
        for fixed in ("db_instance_identifier", "source_db_instance_identifier", "engine"):
            arguments.pop(fixed, None)
        database = _rds(ctx).modify_db_instance(identifier, arguments)
        server = databases.server_of(identifier)
        if server is not None:
            try:
                server.change_port(int(database.port))
                password = properties.get("MasterUserPassword")
                if password and password != old.properties.get("MasterUserPassword"):
                    server.set_master_password(str(password))
            except databases.DatabaseError as error:
                raise ResourceFailed(ctx.logical_id, str(error), "update") from error
            _serve(database, server)
        return old.rebind(attributes={"Endpoint.Port": str(database.port)})
