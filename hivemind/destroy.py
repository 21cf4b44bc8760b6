"""`hivemind destroy`: remove a deployment completely and prove nothing is left.

1. Discover its resources: the stack's, plus anything else tagged with its id.
2. Show them with their monthly cost and ask (unless --yes).
3. Turn off RDS deletion protection; with --skip-snapshot delete the databases
   without a final snapshot (replicas first), else CloudFormation keeps one.
4. Delete the stack, following its events; on DELETE_FAILED, retry once, then list
   each resource left with its id and the command that removes it, and Janitor's
   reading of why it stayed and what the template or the operator must change.
5. Check that nothing tagged with the id remains; mark the deployment destroyed and
   write the savings report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hivemind.deployer.access import remove_keys
from hivemind.deployer.source import ARCHIVE_NAME
from hivemind.deployment_ids import TAG_DEPLOYMENT_ID
from hivemind.errors import HiveMindError
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


@dataclass
class DestroyResult:
    state: DeploymentState
    removed: list[tuple[str, str, float]] = field(default_factory=list)  # id, type, $/month
    leftovers: list[Leftover] = field(default_factory=list)

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
        state = record.save(record.load().model_copy(update={"status": working}))
        record.log(f"destroy: {len(planned)} resources")
        self._prepare_databases(state.stack_name, skip_snapshot)
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
        result = DestroyResult(done, planned)
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

    def _prepare_databases(self, stack_name: str, skip_snapshot: bool) -> None:
        rds = self.client("rds")
        databases = [
            r
            for r in self._stack_resources(stack_name)
            if r["ResourceType"] == "AWS::RDS::DBInstance" and r.get("PhysicalResourceId")
        ]
        described = {}
        for resource in databases:
            identifier = resource["PhysicalResourceId"]
            try:
                described[identifier] = rds.describe_db_instances(DBInstanceIdentifier=identifier)[
                    "DBInstances"
                ][0]
            except Exception:  # already gone: nothing to prepare
                continue
            if described[identifier].get("DeletionProtection"):
                self.say(f"Turning off deletion protection on {identifier}")
                rds.modify_db_instance(
                    DBInstanceIdentifier=identifier, DeletionProtection=False, ApplyImmediately=True
                )
        if not skip_snapshot:
            return
        # Replicas first: a primary with replicas cannot be deleted.
        order = sorted(
            described, key=lambda i: not described[i].get("ReadReplicaSourceDBInstanceIdentifier")
        )
        for identifier in order:
            self.say(f"Deleting {identifier} without a final snapshot (--skip-snapshot)")
            rds.delete_db_instance(
                DBInstanceIdentifier=identifier, SkipFinalSnapshot=True, DeleteAutomatedBackups=True
            )
            rds.get_waiter("db_instance_deleted").wait(
                DBInstanceIdentifier=identifier, WaiterConfig={"Delay": 5, "MaxAttempts": 720}
            )

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
        write_atomically(record.folder / "destroy-report.md", "\n".join(lines) + "\n")


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
