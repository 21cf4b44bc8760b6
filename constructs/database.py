"""The managed database: RDS PostgreSQL or MySQL in the isolated subnets."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from constructs import Construct

from hivemind.spec import DeploymentSpec
from hivemind_constructs.acknowledge import acknowledge

DATABASE_NAME = "app"
MASTER_USERNAME = "hivemind"
PRODUCTION_BACKUP_DAYS = 7
_LOG_EXPORTS = {"postgres": ["postgresql"], "mysql": ["error", "slowquery"]}
PORTS = {"postgres": 5432, "mysql": 3306}


# The exact engine version built for each major version the spec allows: the newest
# minor RDS offers for new instances (checked against cfn-lint 1.58's list, which
# flags a bare major such as "16" as deprecated). RDS applies later minors itself.
ENGINE_VERSIONS = {
    "postgres": {"13": "13.23", "14": "14.24", "15": "15.19", "16": "16.15", "17": "17.11"},
    "mysql": {"8.0": "8.0.46", "8.4": "8.4.11"},
}


def _engine(engine: str, major: str) -> rds.IInstanceEngine:
    full = ENGINE_VERSIONS[engine][major]
    if engine == "postgres":
        return rds.DatabaseInstanceEngine.postgres(
            version=rds.PostgresEngineVersion.of(full, major)
        )
    return rds.DatabaseInstanceEngine.mysql(version=rds.MysqlEngineVersion.of(full, major))


class Database(Construct):
    """RDS with generated credentials in Secrets Manager (the template holds no password),
    encrypted storage and IAM authentication. Production: Multi-AZ, a read replica,
    7-day backups, deletion protection, a final snapshot on delete. Stage-1: one AZ,
    no replica, no backups, deleted with the stack.

    Attributes: `instance`, `replica` (or None), `secret`, `security_group`, `port`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: DeploymentSpec,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
    ) -> None:
        super().__init__(scope, construct_id)
        database = spec.database
        assert database.engine != "none" and database.engine_version is not None
        assert database.instance_class is not None and database.storage_gb is not None
        production = spec.profile == "production"
        self.port = PORTS[database.engine]

        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description=f"{spec.app.name} database: from the app instances only",
            allow_all_outbound=False,
        )
        instance_type = ec2.InstanceType(database.instance_class.removeprefix("db."))
        self.instance = rds.DatabaseInstance(
            self,
            "Instance",
            engine=_engine(database.engine, database.engine_version),
            instance_type=instance_type,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            credentials=rds.Credentials.from_generated_secret(MASTER_USERNAME),
            database_name=DATABASE_NAME,
            allocated_storage=database.storage_gb,
            storage_type=rds.StorageType.GP3,
            storage_encrypted=True,
            iam_authentication=True,
            publicly_accessible=False,
            multi_az=production,
            backup_retention=Duration.days(PRODUCTION_BACKUP_DAYS if production else 0),
            deletion_protection=production,
            # Every profile: a stack deleted outside HiveMind (the console) or a replacement
            # keeps a final snapshot too; `hivemind destroy` takes its own, named one.
            removal_policy=RemovalPolicy.SNAPSHOT,
            delete_automated_backups=not production,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=_LOG_EXPORTS[database.engine],
            copy_tags_to_snapshot=True,
        )
        secret = self.instance.secret
        assert secret is not None
        self.secret = secret
        acknowledge(
            self.instance.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "rotation needs a rotation Lambda in the VPC; HiveMind's instances read the "
            "secret at each start, so the operator can rotate it with hosted rotation later",
        )
        acknowledge(
            self.instance,
            "AwsSolutions-RDS11",
            "the engine's default port is reachable only from the app's security group, "
            "inside isolated subnets; a non-default port adds no protection there",
        )
        if not production:
            for rule, why in (
                (
                    "AwsSolutions-RDS3",
                    "stage-1 runs one AZ on purpose; upgrade to production for Multi-AZ",
                ),
                (
                    "AwsSolutions-RDS10",
                    "stage-1 can be destroyed without a console step (a final snapshot "
                    "is kept either way); production enables deletion protection",
                ),
                (
                    "AwsSolutions-RDS13",
                    "stage-1 keeps no backups on purpose (cost); production keeps 7 days",
                ),
            ):
                acknowledge(self.instance, rule, why)

        self.replica: rds.DatabaseInstanceReadReplica | None = None
        if production:
            self.replica = rds.DatabaseInstanceReadReplica(
                self,
                "ReadReplica",
                source_database_instance=self.instance,
                instance_type=instance_type,
                storage_type=rds.StorageType.GP3,
                vpc=vpc,
                vpc_subnets=subnets,
                security_groups=[self.security_group],
                publicly_accessible=False,
                auto_minor_version_upgrade=True,
                removal_policy=RemovalPolicy.DESTROY,
                cloudwatch_logs_exports=_LOG_EXPORTS[database.engine],
            )
            for rule, why in (
                (
                    "AwsSolutions-RDS2",
                    "a replica inherits the encrypted primary's storage "
                    "encryption; CloudFormation rejects StorageEncrypted on a replica",
                ),
                (
                    "AwsSolutions-RDS3",
                    "the read replica serves reads; the primary is "
                    "Multi-AZ and carries the failover",
                ),
                (
                    "AwsSolutions-RDS10",
                    "a replica is re-created from the primary; deletion "
                    "protection stays on the primary, where the data lives",
                ),
                (
                    "AwsSolutions-RDS11",
                    "the engine's default port is reachable only from the "
                    "app's security group, inside isolated subnets",
                ),
                (
                    "AwsSolutions-RDS13",
                    "replicas have no backups of their own; the primary keeps 7 days",
                ),
            ):
                acknowledge(self.replica, rule, why)

    def allow_from(self, peer: ec2.ISecurityGroup) -> None:
        """Let the app's instances (and nothing else) reach the database port."""
        self.security_group.add_ingress_rule(peer, ec2.Port.tcp(self.port), "from the app")
