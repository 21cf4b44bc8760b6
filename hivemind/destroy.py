"""`hivemind destroy`: remove a deployment completely and prove nothing is left.

1. Discover its resources: the stack's, plus anything else tagged with its id.
2. Show them with their monthly cost and ask (unless --yes).
3. Turn off RDS deletion protection and delete the databases before the stack, read
   replicas first (RDS keeps no snapshot of a replica): each primary with a final
   snapshot HiveMind names, whatever the profile, unless the operator passed
   --skip-snapshot. A database RDS cannot snapshot (failed) is refused, not deleted.
4. Delete the stack, following its events; on DELETE_FAILED, retry once, then list
   each resource left with its id and the command that removes it, and Janitor's
   reading of why it stayed and what the template or the operator must change.
5. Check that nothing tagged with the id remains; mark the deployment destroyed and
   write the savings report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hivemind.cost import DEFAULT_PRICES
from hivemind.deployer.access import remove_keys
from hivemind.deployer.source import ARCHIVE_NAME
from hivemind.deployment_ids import TAG_DEPLOYMENT_ID
from hivemind.errors import HiveMindError, RefusedError
from hivemind.progress import ProgressDisplay, ResourceState, StackProgress
from hivemind.reconcile import stack_status
from hivemind.records import DeploymentRecord, DeploymentState, Status, write_atomically
from hivemind.report import keep_report

POLL_SECONDS = 2.0
DELETE_LIMIT_SECONDS = 2 * 3600


@dataclass(frozen=True)
class Leftover:
    arn: str
    remove_with: str


@dataclass(frozen=True)
class KeptSnapshot:
    """A database's final snapshot, kept when the database was deleted."""

    identifier: str
    database: str
    gib: int
    monthly_usd: float

    @property
    def delete_with(self) -> str:
        return f"aws rds delete-db-snapshot --db-snapshot-identifier {self.identifier}"


@dataclass
class DestroyResult:
    state: DeploymentState
    removed: list[tuple[str, str, float]] = field(default_factory=list)  # id, type, $/month
    leftovers: list[Leftover] = field(default_factory=list)
    snapshots: list[KeptSnapshot] = field(default_factory=list)

    @property
    def savings(self) -> float:
        return sum(cost for _i, _t, cost in self.removed)


class Destroyer:
    def __init__(
        self,
        clients: Callable[[str], Any],
        display: ProgressDisplay,
        say: Callable[[str], None],
        advisor: Any = None,  # the agents' Advisor; None: HiveMind's rules
    ) -> None:
        self.client = clients
        self.display = display
        self.say = say
        self.advisor = advisor

    def plan(self, record: DeploymentRecord) -> list[tuple[str, str, float]]:
        """(physical or logical id, type, monthly cost) of everything that will go."""
        state = record.load()
        costs = {r.logical_id: r.monthly_usd for r in state.resources}
        rows = [
            (
                r["PhysicalResourceId"] or r["LogicalResourceId"],
                r["ResourceType"],
                costs.get(r["LogicalResourceId"], 0.0),
            )
            for r in self._stack_resources(state.stack_name)
        ]
        known = {physical for physical, _t, _c in rows}
        for arn in self._tagged(record.deployment_id):
            if f":stack/{state.stack_name}/" in arn:
                continue  # the stack itself
            if not any(physical in arn for physical in known):
                rows.append((arn, "tagged outside the stack", 0.0))
        return rows

    def destroy(
        self,
        record: DeploymentRecord,
        planned: list[tuple[str, str, float]],
        *,
        skip_snapshot: bool,
        rollback: bool = False,
    ) -> DestroyResult:
        """Remove everything; a `rollback` ends rolled_back / rollback_failed instead of
        destroyed / failed (same teardown: CloudFormation's dependency order).
        `planned` is what `plan` found and the operator agreed to."""
        working, done_status, failed_status = (
            (Status.ROLLING_BACK, Status.ROLLED_BACK, Status.ROLLBACK_FAILED)
            if rollback
            else (Status.DESTROYING, Status.DESTROYED, Status.FAILED)
        )
        before = record.load()
        state = record.save(before.model_copy(update={"status": working}))
        record.log(f"destroy: {len(planned)} resources")
        try:
            snapshots = self._delete_databases(state.stack_name, skip_snapshot)
        except RefusedError:  # nothing was deleted: the deployment is as it was
            record.save(record.load().model_copy(update={"status": before.status}))
            raise
        if snapshots:
            record.log(
                "destroy: kept final snapshot(s) "
                + ", ".join(f"{k.identifier} ({k.gib} GiB)" for k in snapshots)
            )
        if stack_status(self.client("cloudformation"), state.stack_name) is not None:
            failures = self._delete_stack(state.stack_name, len(planned))
            if failures:
                # Resources already gone (a database deleted with --skip-snapshot, or by
                # hand) block CloudFormation: keep them out of the retry; it has nothing
                # left to delete there.
                gone = [f.logical_id for f in failures if "not found" in f.reason.lower()]
                self.say(
                    "The stack could not be deleted; trying once more"
                    + (f", skipping what is already gone ({', '.join(gone)})" if gone else "")
                    + " ..."
                )
                self._delete_stack(state.stack_name, len(planned), retain=gone)
        leftovers = self._leftovers(state)
        cleanup: list[str] = []
        if leftovers:
            cleanup = self._cleanup_advice(record, state.stack_name)
            failed = record.save(
                record.load().model_copy(
                    update={
                        "status": failed_status,
                        "failed_stage": "rollback" if rollback else "destroy",
                        "note": f"{len(leftovers)} resource(s) left",
                    }
                )
            )
            keep_report(record)
            raise HiveMindError(
                f"{failed.deployment_id} is not fully "
                f"{'rolled back' if rollback else 'destroyed'}: {len(leftovers)} resource(s) left",
                where="rollback" if rollback else "destroy",
                details=[f"{x.arn}  (remove with: {x.remove_with})" for x in leftovers] + cleanup,
                next_step=f"run `hivemind destroy {failed.deployment_id}` again, or remove them "
                "with the commands shown",
            )
        done = record.save(
            record.load().model_copy(
                update={"status": done_status, "failed_stage": None, "note": done_status.value}
            )
        )
        # The key pair is gone with the stack: its private half has nothing left to open.
        remove_keys(record.folder)
        (record.folder / ARCHIVE_NAME).unlink(missing_ok=True)
        result = DestroyResult(done, planned, snapshots=snapshots)
        self._report(record, result)
        record.log(f"destroyed: saving ${result.savings:,.2f}/month")
        keep_report(record)
        return result

    # --- steps ----------------------------------------------------------------------

    def _stack_resources(self, stack_name: str) -> list[dict[str, Any]]:
        cloudformation = self.client("cloudformation")
        if stack_status(cloudformation, stack_name) is None:
            return []
        out: list[dict[str, Any]] = []
        for page in cloudformation.get_paginator("list_stack_resources").paginate(
            StackName=stack_name
        ):
            out += [
                r
                for r in page["StackResourceSummaries"]
                if r["ResourceStatus"] != "DELETE_COMPLETE"
            ]
        return out

    def _tagged(self, deployment_id: str) -> list[str]:
        tagging = self.client("resourcegroupstaggingapi")
        arns: list[str] = []
        for page in tagging.get_paginator("get_resources").paginate(
            TagFilters=[{"Key": TAG_DEPLOYMENT_ID, "Values": [deployment_id]}]
        ):
            arns += [m["ResourceARN"] for m in page.get("ResourceTagMappingList", [])]
        return arns

    def _delete_databases(self, stack_name: str, skip_snapshot: bool) -> list[KeptSnapshot]:
        """Delete the stack's databases before the stack: replicas first (a primary with
        replicas cannot go; RDS refuses a final snapshot of a replica, whose data is its
        primary's), then each primary with a final snapshot unless `skip_snapshot`.
        Whatever the template's DeletionPolicy, no data goes without a snapshot unless the
        operator said so. Refuses, before deleting anything, a primary RDS cannot
        snapshot. Returns the snapshots kept."""
        rds = self.client("rds")
        described: dict[str, dict[str, Any]] = {}
        for resource in self._stack_resources(stack_name):
            if resource["ResourceType"] != "AWS::RDS::DBInstance":
                continue
            identifier = resource.get("PhysicalResourceId")
            if not identifier:
                continue
            try:
                found = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
            except Exception:  # already gone: nothing to delete
                continue
            described[identifier] = found[0]
        replicas = [
            i for i, d in described.items() if d.get("ReadReplicaSourceDBInstanceIdentifier")
        ]
        primaries = [i for i in described if i not in replicas]
        if not skip_snapshot:
            for identifier in primaries:
                self._ready_for_snapshot(rds, identifier, described[identifier])
        for identifier, database in described.items():
            if database.get("DeletionProtection"):
                self.say(f"Turning off deletion protection on {identifier}")
                rds.modify_db_instance(
                    DBInstanceIdentifier=identifier, DeletionProtection=False, ApplyImmediately=True
                )
        for identifier in replicas:
            self.say(f"Deleting read replica {identifier} (its data is its primary's)")
            self._delete_database(rds, identifier, None)
        kept: list[KeptSnapshot] = []
        for identifier in primaries:
            if skip_snapshot:
                self.say(f"Deleting {identifier} without a final snapshot (--skip-snapshot)")
                self._delete_database(rds, identifier, None)
                continue
            snapshot = final_snapshot_name(identifier, time.gmtime())
            self.say(f"Deleting {identifier}, keeping its data in final snapshot {snapshot} ...")
            self._delete_database(rds, identifier, snapshot)
            kept.append(self._kept(rds, identifier, snapshot, described[identifier]))
        return kept

    def _ready_for_snapshot(self, rds: Any, identifier: str, database: dict[str, Any]) -> None:
        """Wait for a database that is changing (being created, modified, backed up) to be
        available, as RDS snapshots only then; refuse one RDS can no longer snapshot."""
        status = str(database.get("DBInstanceStatus", "available"))
        if status in _SNAPSHOT_IMPOSSIBLE:
            raise RefusedError(
                f"{identifier} is {status}: RDS cannot take its final snapshot, and nothing "
                "was deleted",
                where="destroy, databases",
                cause="RDS deletes a database in this state only without a final snapshot",
                next_step="if its data is not needed (or is in an earlier snapshot), run the "
                "command again with --skip-snapshot",
            )
        if status == "available":
            return
        self.say(f"Waiting for {identifier} ({status}) to be available for its snapshot ...")
        try:
            rds.get_waiter("db_instance_available").wait(
                DBInstanceIdentifier=identifier, WaiterConfig={"Delay": 5, "MaxAttempts": 720}
            )
        except Exception as error:
            raise RefusedError(
                f"{identifier} did not become available for its final snapshot; nothing was "
                "deleted",
                where="destroy, databases",
                cause=str(error),
                next_step="run the command again once the database is available, or with "
                "--skip-snapshot if its data is not needed",
            ) from error

    def _delete_database(self, rds: Any, identifier: str, snapshot: str | None) -> None:
        if snapshot is None:
            rds.delete_db_instance(
                DBInstanceIdentifier=identifier, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            )
        else:
            rds.delete_db_instance(
                DBInstanceIdentifier=identifier,
                SkipFinalSnapshot=False,
                FinalDBSnapshotIdentifier=snapshot,
                DeleteAutomatedBackups=True,
            )
        rds.get_waiter("db_instance_deleted").wait(
            DBInstanceIdentifier=identifier, WaiterConfig={"Delay": 5, "MaxAttempts": 720}
        )

    def _kept(
        self, rds: Any, identifier: str, snapshot: str, database: dict[str, Any]
    ) -> KeptSnapshot:
        gib = int(database.get("AllocatedStorage") or 0)
        try:
            found = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"]
            gib = int(found[0].get("AllocatedStorage") or gib)
        except Exception as error:
            raise HiveMindError(
                f"{identifier} was deleted but its final snapshot {snapshot} is not listed",
                where="destroy, databases",
                cause=str(error),
                next_step=f"check with `aws rds describe-db-snapshots --db-snapshot-identifier "
                f"{snapshot}`",
            ) from error
        monthly = round(gib * DEFAULT_PRICES.rds_snapshot_gib_month, 2)
        return KeptSnapshot(snapshot, identifier, gib, monthly)

    def _delete_stack(
        self, stack_name: str, total: int, retain: list[str] | None = None
    ) -> list[ResourceState]:
        """Delete the stack and follow it; returns the resources that failed (none: done)."""
        cloudformation = self.client("cloudformation")
        events = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
        seen = {str(e["EventId"]) for e in events}
        cloudformation.delete_stack(
            StackName=stack_name, **({"RetainResources": retain} if retain else {})
        )
        progress = StackProgress(stack_name, total, seen=seen)
        deadline = time.monotonic() + DELETE_LIMIT_SECONDS
        while time.monotonic() < deadline:
            status = stack_status(cloudformation, stack_name)
            try:
                fresh = cloudformation.describe_stack_events(StackName=stack_name)["StackEvents"]
            except Exception:  # the stack is gone, and its events with it
                fresh = []
            changed = progress.feed(fresh)
            if changed:
                self.display.update(progress, changed)
            if status in (None, "DELETE_COMPLETE"):
                self.display.finish()
                return []
            if status == "DELETE_FAILED":
                self.display.finish()
                for failure in progress.failed:
                    self.say(f"  could not delete {failure.logical_id}: {failure.reason}")
                return progress.failed or [ResourceState(stack_name, "stack", status, "")]
            time.sleep(POLL_SECONDS)
        raise HiveMindError(f"timed out deleting {stack_name}", where="destroy")

    def _cleanup_advice(self, record: DeploymentRecord, stack_name: str) -> list[str]:
        """Janitor's reading of what blocks the stack's deletion: one line per resource
        (problem, template change, manual step). Advice only: never raises."""
        from hivemind.template_diff import template_of
        from hivemind_agents.base import Advisor
        from hivemind_agents.janitor import Janitor, JanitorInput, StackResource

        cloudformation = self.client("cloudformation")
        try:
            status = stack_status(cloudformation, stack_name)
            resources: list[Any] = []
            template: dict[str, Any] = {}
            if status is not None:
                resources = self._with_reasons(stack_name, self._stack_resources(stack_name))
                body = cloudformation.get_template(StackName=stack_name)["TemplateBody"]
                template = template_of(body)
            answer = (self.advisor or Advisor()).ask(
                Janitor(),
                JanitorInput(
                    stack_name=stack_name,
                    stack_status=status,
                    resources=tuple(StackResource.from_api(r) for r in resources),
                    template=template,
                ),
            )
        except Exception as problem:
            record.log(f"janitor: no advice ({type(problem).__name__}: {problem})")
            return []
        plan = answer.value
        lines = [f"janitor ({answer.provenance}): {plan.summary}"]
        for item in plan.items:
            lines.append(f"{item.logical_id} ({item.effect}): {item.problem}")
            if item.template_change is not None:
                change = item.template_change
                lines.append(f"  template: set {change.attribute} to {change.value!r}")
            if item.manual_step:
                lines.append(f"  then: {item.manual_step}")
        for line in lines:
            record.log(line)
        return lines

    def _with_reasons(
        self, stack_name: str, resources: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The resources, each with its latest status reason from the stack's events (a
        resource summary need not carry one)."""
        events = self.client("cloudformation").describe_stack_events(StackName=stack_name)
        latest: dict[str, str] = {}
        for event in events["StackEvents"]:  # newest first
            reason = event.get("ResourceStatusReason")
            if reason and event["LogicalResourceId"] not in latest:
                latest[event["LogicalResourceId"]] = str(reason)
        return [
            {
                **r,
                "ResourceStatusReason": r.get("ResourceStatusReason")
                or latest.get(r["LogicalResourceId"], ""),
            }
            for r in resources
        ]

    def _leftovers(self, state: DeploymentState) -> list[Leftover]:
        left = [
            Leftover(
                f"stack {state.stack_name} ({status})",
                f"aws cloudformation delete-stack --stack-name {state.stack_name}",
            )
            for status in [stack_status(self.client("cloudformation"), state.stack_name)]
            if status not in (None, "DELETE_COMPLETE")
        ]
        for arn in self._tagged(state.deployment_id):
            if ended(arn, self.client("ec2")) or f":stack/{state.stack_name}/" in arn:
                continue
            left.append(
                Leftover(
                    arn,
                    f"aws resourcegroupstaggingapi get-resources "
                    f"--resource-arn-list {arn}  (then that service's delete)",
                )
            )
        return left

    def _report(self, record: DeploymentRecord, result: DestroyResult) -> None:
        lines = [
            f"# {record.deployment_id} destroyed",
            "",
            f"Monthly savings: ${result.savings:,.2f}",
            "",
            "| resource | type | $/month |",
            "|---|---|---|",
        ]
        lines += [f"| {rid} | {kind} | {cost:,.2f} |" for rid, kind, cost in result.removed]
        lines += ["", "Nothing tagged with this deployment's id remains."]
        if result.snapshots:
            lines += [
                "",
                "## Kept: final database snapshots",
                "",
                "The data is kept until you delete the snapshot; restore it with "
                "`aws rds restore-db-instance-from-db-snapshot`.",
                "",
                "| snapshot | of database | size | $/month to keep | delete with |",
                "|---|---|---|---|---|",
            ]
            lines += [
                f"| {k.identifier} | {k.database} | {k.gib} GiB | {k.monthly_usd:,.2f} | "
                f"`{k.delete_with}` |"
                for k in result.snapshots
            ]
        else:
            lines += ["", "No database snapshot was kept."]
        write_atomically(record.folder / "destroy-report.md", "\n".join(lines) + "\n")


# DB instance states in which RDS deletes only with SkipFinalSnapshot (DeleteDBInstance).
_SNAPSHOT_IMPOSSIBLE = frozenset({"failed", "incompatible-restore", "incompatible-network"})
_NOT_IN_A_NAME = re.compile(r"[^a-z0-9-]+")


def final_snapshot_name(database: str, when: time.struct_time) -> str:
    """The final snapshot's identifier: the database's, then `-final-` and the UTC time.
    RDS: 1-255 letters, digits and hyphens, a letter first, no `--`, no hyphen last."""
    base = _NOT_IN_A_NAME.sub("-", database.lower())
    base = re.sub("-{2,}", "-", base).strip("-") or "database"
    if not base[0].isalpha():
        base = "db-" + base
    return f"{base[:200]}-final-{time.strftime('%Y%m%d%H%M%S', when)}"


def ended(arn: str, ec2: Any) -> bool:
    """Whether a tagged resource needs no removal: a final database snapshot is kept on
    purpose; terminated instances and deleted NAT gateways stay listed by EC2 for a
    while but cost nothing and are gone."""
    if ":snapshot:" in arn:
        return True
    if ":instance/" in arn:
        instance_id = arn.rsplit("/", 1)[-1]
        try:
            reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except Exception:  # unknown to EC2: gone
            return True
        states = [i["State"]["Name"] for r in reservations for i in r["Instances"]]
        return all(s in ("terminated", "shutting-down") for s in states)
    if ":natgateway/" in arn:  # EC2 lists deleted NAT gateways for about an hour
        nat_id = arn.rsplit("/", 1)[-1]
        try:
            gateways = ec2.describe_nat_gateways(NatGatewayIds=[nat_id])["NatGateways"]
        except Exception:  # unknown to EC2: gone
            return True
        return all(g["State"] in ("deleted", "deleting") for g in gateways)
    return False
