"""`hivemind find-orphans`: resources tagged by HiveMind whose deployment is destroyed
or unknown to this machine, with their cost, and (with --delete) their removal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hivemind.deployment_ids import TAG_DEPLOYMENT_ID, stack_name
from hivemind.destroy import ended
from hivemind.records import RecordStore, Status


@dataclass(frozen=True)
class Orphan:
    arn: str
    deployment_id: str
    why: str  # "destroyed" or "unknown"
    monthly_usd: float


def find_orphans(tagging: Any, ec2: Any, store: RecordStore) -> list[Orphan]:
    """Every resource tagged with a deployment id whose deployment is not live here
    (and that still exists: terminated instances stay listed for a while)."""
    readable, unreadable = store.readable()
    states = {s.deployment_id: s for s in readable}
    orphans: list[Orphan] = []
    for page in tagging.get_paginator("get_resources").paginate(
        TagFilters=[{"Key": TAG_DEPLOYMENT_ID}]
    ):
        for mapping in page.get("ResourceTagMappingList", []):
            tags = {t["Key"]: t["Value"] for t in mapping.get("Tags", [])}
            deployment_id = tags.get(TAG_DEPLOYMENT_ID, "")
            if deployment_id in unreadable:
                continue  # its record is here but damaged: never an orphan to delete
            state = states.get(deployment_id)
            if state is not None and state.status not in (Status.DESTROYED, Status.ROLLED_BACK):
                continue
            arn = mapping["ResourceARN"]
            if ended(arn, ec2):
                continue
            cost = 0.0
            if state is not None:
                cost = sum(
                    r.monthly_usd for r in state.resources if r.physical_id and r.physical_id in arn
                )
            orphans.append(Orphan(arn, deployment_id, "destroyed" if state else "unknown", cost))
    return sorted(orphans, key=lambda o: (o.deployment_id, o.arn))


def delete_orphans(
    orphans: list[Orphan], client: Callable[[str], Any], say: Callable[[str], None]
) -> list[Orphan]:
    """Remove orphans: a leftover stack is deleted whole (taking its resources with it);
    the rest by type where HiveMind knows how. Returns what it could not remove."""
    left: list[Orphan] = []
    stacks = {o.deployment_id for o in orphans if ":cloudformation:" in o.arn}
    for deployment_id in sorted(stacks):
        say(f"Deleting the stack {stack_name(deployment_id)}")
        client("cloudformation").delete_stack(StackName=stack_name(deployment_id))
        client("cloudformation").get_waiter("stack_delete_complete").wait(
            StackName=stack_name(deployment_id), WaiterConfig={"Delay": 2, "MaxAttempts": 900}
        )
    for orphan in orphans:
        if orphan.deployment_id in stacks:
            continue
        if not _delete_one(orphan.arn, client, say):
            left.append(orphan)
    return left


def _delete_one(arn: str, client: Callable[[str], Any], say: Callable[[str], None]) -> bool:
    resource = arn.split(":", 5)[-1]
    service = arn.split(":")[2]
    if service == "ec2" and resource.startswith("instance/"):
        say(f"Terminating {resource}")
        client("ec2").terminate_instances(InstanceIds=[resource.split("/", 1)[1]])
        return True
    if service == "logs" and resource.startswith("log-group:"):
        name = resource.split(":", 1)[1].removesuffix(":*")
        say(f"Deleting log group {name}")
        client("logs").delete_log_group(logGroupName=name)
        return True
    if service == "secretsmanager":
        say(f"Deleting secret {arn}")
        client("secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        return True
    if service == "cloudwatch" and resource.startswith("alarm:"):
        say(f"Deleting alarm {resource}")
        client("cloudwatch").delete_alarms(AlarmNames=[resource.split(":", 1)[1]])
        return True
    return False
