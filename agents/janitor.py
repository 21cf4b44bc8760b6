"""Janitor: what would stop a stack from being deleted, or outlive it, and the fix for each.

Called by `hivemind destroy`: before the delete, on the stack's resources and its
template (what the plan should warn about), and again when CloudFormation ends in
DELETE_FAILED (what is left and how to remove it). For each resource that blocks the
deletion (a non-empty bucket, deletion protection, a security group something still
uses, a network interface in use) or survives it (DeletionPolicy Retain, a final
snapshot), it says the problem, the template change or the manual step, and whether
the deletion can go ahead as is.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Agent, Rejected

Cause = Literal[
    "bucket_not_empty",
    "deletion_protection",
    "termination_protection",
    "dependent_object",
    "in_use",
    "already_gone",
    "stack_busy",
    "retained_by_policy",
    "snapshot_kept",
    "retained_on_replace",
    "other",
]
# Causes that leave something behind without stopping the deletion.
SURVIVING_CAUSES: frozenset[str] = frozenset(
    {"retained_by_policy", "snapshot_kept", "retained_on_replace"}
)
POLICY_VALUES = ("Delete", "Retain", "RetainExceptOnCreate", "Snapshot")
# Template properties that stop a resource from being deleted while they are on.
PROTECTION_PROPERTIES = ("DeletionProtection", "DeletionProtectionEnabled", "DisableApiTermination")
_GONE = ("not found", "does not exist", "notfound")
_TEMPLATE_LIMIT = 3000


class StackResource(BaseModel):
    """One resource of the stack as CloudFormation lists it."""

    model_config = ConfigDict(frozen=True)

    logical_id: str
    resource_type: str
    physical_id: str | None = None
    status: str
    reason: str = ""

    @classmethod
    def from_api(cls, summary: Mapping[str, Any]) -> StackResource:
        """From a ListStackResources summary (or a DescribeStackResources item)."""
        return cls(
            logical_id=str(summary["LogicalResourceId"]),
            resource_type=str(summary.get("ResourceType", "")),
            physical_id=summary.get("PhysicalResourceId") or None,
            status=str(summary.get("ResourceStatus", "")),
            reason=str(summary.get("ResourceStatusReason") or ""),
        )


class JanitorInput(BaseModel):
    """The stack to clean up: its status, its resources, and its template."""

    model_config = ConfigDict(frozen=True)

    stack_name: str
    stack_status: str | None  # None: there is no such stack
    resources: tuple[StackResource, ...] = ()
    template: dict[str, Any] = Field(default_factory=dict)

    def template_resources(self) -> dict[str, dict[str, Any]]:
        found = self.template.get("Resources")
        if not isinstance(found, dict):
            return {}
        return {str(k): v for k, v in found.items() if isinstance(v, dict)}

    def logical_ids(self) -> list[str]:
        listed = [r.logical_id for r in self.resources]
        return listed + [i for i in self.template_resources() if i not in listed]

    def resource(self, logical_id: str) -> StackResource | None:
        return next((r for r in self.resources if r.logical_id == logical_id), None)


class TemplateChange(BaseModel):
    """One change to a resource in the template."""

    logical_id: str
    attribute: str = Field(
        description="DeletionPolicy, UpdateReplacePolicy, or Properties.<Name> "
        "(e.g. Properties.DeletionProtection)"
    )
    value: str | bool | None = Field(description="the new value; null removes the property")


class CleanupItem(BaseModel):
    """A resource that blocks the stack's deletion or survives it, and what to do."""

    logical_id: str = Field(description="the resource's logical id, exactly as given")
    resource_type: str
    physical_id: str | None = None
    effect: Literal["blocks", "survives"] = Field(
        description="blocks: the deletion fails on it; survives: it is left behind"
    )
    cause: Cause
    problem: str = Field(description="the problem in plain words, one or two sentences")
    evidence: str = Field(
        description="the status reason or template line that shows it, copied exactly"
    )
    template_change: TemplateChange | None = None
    manual_step: str | None = Field(None, description="a command or step for the operator")


class CleanupPlan(BaseModel):
    """Janitor's answer: what blocks or survives the deletion, and whether it can go ahead."""

    can_proceed: bool = Field(description="true when nothing blocks deleting the stack as is")
    summary: str = Field(description="one or two sentences for the operator")
    items: list[CleanupItem]

    def template_changes(self) -> list[TemplateChange]:
        return [i.template_change for i in self.items if i.template_change is not None]


def facts(inputs: JanitorInput, logical_id: str) -> str:
    """What is known about one resource, one `name: value` per line (what evidence quotes)."""
    lines = []
    listed = inputs.resource(logical_id)
    definition = inputs.template_resources().get(logical_id, {})
    if logical_id == inputs.stack_name and listed is None and not definition:
        return f"stack: {inputs.stack_name}\nstatus: {inputs.stack_status}"
    resource_type = listed.resource_type if listed else str(definition.get("Type", ""))
    lines.append(f"resource: {logical_id} ({resource_type})")
    if listed is not None:
        lines.append(f"physical id: {listed.physical_id}")
        lines.append(f"status: {listed.status}")
        if listed.reason:
            lines.append(f"reason: {listed.reason}")
    for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
        if policy in definition:
            lines.append(f"{policy}: {definition[policy]}")
    properties = definition.get("Properties")
    if isinstance(properties, dict):
        for name in PROTECTION_PROPERTIES:
            if name in properties:
                lines.append(f"{name}: {_json(properties[name])}")
        for attribute in properties.get("LoadBalancerAttributes") or []:
            if (
                isinstance(attribute, dict)
                and attribute.get("Key") == "deletion_protection.enabled"
            ):
                lines.append(f"deletion_protection.enabled: {_json(attribute.get('Value'))}")
    return "\n".join(lines)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def apply_template_changes(
    template: Mapping[str, Any], changes: list[TemplateChange]
) -> dict[str, Any]:
    """A copy of `template` with `changes` applied (for an update before the delete)."""
    changed: dict[str, Any] = copy.deepcopy(dict(template))
    for change in changes:
        resource = changed["Resources"][change.logical_id]
        if change.attribute.startswith("Properties."):
            properties = resource.setdefault("Properties", {})
            name = change.attribute.removeprefix("Properties.")
            if change.value is None:
                properties.pop(name, None)
            else:
                properties[name] = change.value
        elif change.value is None:
            resource.pop(change.attribute, None)
        else:
            resource[change.attribute] = change.value
    return changed


class Janitor(Agent[JanitorInput, CleanupPlan]):
    name: ClassVar[str] = "janitor"
    output = CleanupPlan
    prompt: ClassVar[str] = """
You are Janitor, HiveMind's clean-up engineer. A deployment is one CloudFormation stack;
`hivemind destroy` deletes it and then proves nothing tagged with the deployment is left.
You are given the stack's status, each resource with its status and CloudFormation's
status reason, and the deletion-relevant parts of the template (DeletionPolicy,
UpdateReplacePolicy, DeletionProtection, DisableApiTermination, load balancer deletion
protection).

List every resource that blocks the deletion (effect "blocks": a DELETE_FAILED resource,
deletion or termination protection that is on, a stack still busy with another
operation) or survives it (effect "survives": DeletionPolicy Retain or Snapshot,
UpdateReplacePolicy Retain, DELETE_SKIPPED). For each give the cause, the problem in
plain words, the evidence copied exactly from the facts (e.g. "reason: The bucket you
tried to delete is not empty" or "DeletionPolicy: Retain"), and the fix: a template
change (DeletionPolicy Delete, Properties.DeletionProtection false) when the template
causes it, and a manual step (an AWS CLI command with the resource's physical id) when
something outside the template must be done first (empty the bucket; find what still
uses a security group or network interface). `can_proceed` is true only when nothing
blocks. Resources that delete cleanly are left out.
"""

    def describe(self, inputs: JanitorInput) -> str:
        head = f"Stack {inputs.stack_name}: {inputs.stack_status or 'does not exist'}"
        blocks = [facts(inputs, i) for i in inputs.logical_ids()]
        return head + "\n\n" + "\n\n".join(blocks)

    def tools(self, inputs: JanitorInput) -> list[Callable[..., str]]:
        def template_resource(logical_id: str) -> str:
            """The template's full definition of one resource, as JSON."""
            definition = inputs.template_resources().get(logical_id)
            if definition is None:
                return f"the template has no resource {logical_id}"
            text = json.dumps(definition, indent=1, default=str)
            return text[:_TEMPLATE_LIMIT]

        return [template_resource]

    def check(self, inputs: JanitorInput, proposal: CleanupPlan) -> CleanupPlan:
        """Items must name known resources and quote their facts; template changes must
        be to the template's resources; the verdict must agree with the items and with
        every DELETE_FAILED resource, each of which must be covered (missing ones are
        added from HiveMind's rules)."""
        known = set(inputs.logical_ids()) | {inputs.stack_name}
        template = inputs.template_resources()
        for item in proposal.items:
            if item.logical_id not in known:
                raise Rejected(f"{item.logical_id} is not a resource of {inputs.stack_name}")
            if not item.evidence.strip() or item.evidence not in facts(inputs, item.logical_id):
                raise Rejected(f"the evidence for {item.logical_id} is not in its facts")
            listed = inputs.resource(item.logical_id)
            if item.physical_id and (listed is None or listed.physical_id != item.physical_id):
                raise Rejected(f"{item.physical_id} is not the physical id of {item.logical_id}")
            if (item.cause in SURVIVING_CAUSES) != (item.effect == "survives"):
                raise Rejected(f"a {item.cause} item cannot {item.effect} the deletion")
            change = item.template_change
            if change is not None:
                _check_change(change, item.logical_id, template)
        blocked = any(i.effect == "blocks" for i in proposal.items)
        if proposal.can_proceed == blocked:
            raise Rejected("can_proceed disagrees with the items that block the deletion")
        failed = [r for r in inputs.resources if r.status == "DELETE_FAILED"]
        if failed and proposal.can_proceed:
            raise Rejected(f"{failed[0].logical_id} failed to delete: the deletion cannot proceed")
        covered = {i.logical_id for i in proposal.items}
        missing = [
            item
            for item in self.fallback(inputs).items
            if item.logical_id in {r.logical_id for r in failed} - covered
        ]
        if not missing:
            return proposal
        return proposal.model_copy(update={"items": proposal.items + missing})

    def fallback(self, inputs: JanitorInput) -> CleanupPlan:
        items: list[CleanupItem] = []
        busy = inputs.stack_status or ""
        if busy.endswith("_IN_PROGRESS") and not busy.startswith("DELETE"):
            items.append(
                CleanupItem(
                    logical_id=inputs.stack_name,
                    resource_type="AWS::CloudFormation::Stack",
                    effect="blocks",
                    cause="stack_busy",
                    problem=f"The stack is busy ({busy}); CloudFormation deletes a stack only "
                    "when no other operation is running on it.",
                    evidence=f"status: {busy}",
                    manual_step="wait for it to finish: aws cloudformation wait "
                    f"stack-update-complete --stack-name {inputs.stack_name}",
                )
            )
        for logical_id in inputs.logical_ids():
            items.extend(_items_for(inputs, logical_id))
        if inputs.stack_status == "DELETE_FAILED" and not any(i.effect == "blocks" for i in items):
            items.append(
                CleanupItem(
                    logical_id=inputs.stack_name,
                    resource_type="AWS::CloudFormation::Stack",
                    effect="blocks",
                    cause="other",
                    problem="The stack's deletion failed, but no resource says why.",
                    evidence="status: DELETE_FAILED",
                    manual_step=f"aws cloudformation describe-stack-events --stack-name "
                    f"{inputs.stack_name}, then delete it again",
                )
            )
        return CleanupPlan(
            can_proceed=not any(i.effect == "blocks" for i in items),
            summary=_summary(inputs, items),
            items=items,
        )


def _check_change(
    change: TemplateChange, logical_id: str, template: dict[str, dict[str, Any]]
) -> None:
    if change.logical_id != logical_id or logical_id not in template:
        raise Rejected(f"the template has no resource {change.logical_id} to change")
    if change.attribute in ("DeletionPolicy", "UpdateReplacePolicy"):
        if change.value not in POLICY_VALUES:
            raise Rejected(f"{change.attribute} cannot be {change.value!r}")
        return
    name = change.attribute.removeprefix("Properties.")
    properties = template[logical_id].get("Properties") or {}
    if not change.attribute.startswith("Properties.") or (
        name not in properties and name not in PROTECTION_PROPERTIES
    ):
        raise Rejected(f"{change.attribute} is not a property of {logical_id} to change")


def _items_for(inputs: JanitorInput, logical_id: str) -> list[CleanupItem]:
    listed = inputs.resource(logical_id)
    definition = inputs.template_resources().get(logical_id, {})
    if listed is not None and listed.status == "DELETE_COMPLETE":
        return []
    resource_type = listed.resource_type if listed else str(definition.get("Type", ""))
    physical = listed.physical_id if listed else None
    base = {"logical_id": logical_id, "resource_type": resource_type, "physical_id": physical}
    items: list[CleanupItem] = []
    if listed is not None and listed.status == "DELETE_FAILED":
        items.append(CleanupItem(**base, **_delete_failed(listed, definition, inputs.stack_name)))
    elif listed is not None and listed.status == "DELETE_SKIPPED":
        items.append(
            CleanupItem(
                **base,
                effect="survives",
                cause="retained_by_policy",
                problem="CloudFormation skipped it on purpose (its DeletionPolicy keeps it): "
                "it outlives the stack and keeps costing until it is deleted by hand.",
                evidence="status: DELETE_SKIPPED",
                manual_step=_delete_by_hand(resource_type, physical),
            )
        )
    else:
        protection = _protection(definition)
        if protection is not None:
            target = listed or StackResource(
                logical_id=logical_id, resource_type=resource_type, status="NOT_CREATED"
            )
            items.append(CleanupItem(**base, **_protected(target, definition, protection)))
        items.extend(_policies(base, definition, resource_type, physical))
    return items


def _delete_failed(
    listed: StackResource, definition: dict[str, Any], stack_name: str
) -> dict[str, Any]:
    reason = listed.reason
    lowered = reason.lower()
    physical = listed.physical_id or listed.logical_id
    evidence = f"reason: {reason}" if reason else "status: DELETE_FAILED"
    found: dict[str, Any] = {"effect": "blocks", "evidence": evidence}
    if "not empty" in lowered and "bucket" in lowered:
        return found | {
            "cause": "bucket_not_empty",
            "problem": "The bucket still holds objects; S3 deletes only empty buckets.",
            "manual_step": f"aws s3 rm s3://{physical} --recursive (and, for a versioned "
            "bucket, delete its object versions too), then delete the stack again",
        }
    if "termination" in lowered:
        return _protected(listed, definition, "DisableApiTermination") | found
    if "protect" in lowered:
        return _protected(listed, definition, "DeletionProtection") | found
    if (
        "dependent object" in lowered
        or "dependencyviolation" in lowered
        or ("has dependencies" in lowered)
    ):
        return found | {
            "cause": "dependent_object",
            "problem": "Something still uses it (a network interface, another security "
            "group's rule, an endpoint or a load balancer, possibly outside the stack), so "
            "AWS refuses to delete it until that is gone.",
            "manual_step": _find_users(listed.resource_type, physical),
        }
    if "in use" in lowered:
        return found | {
            "cause": "in_use",
            "problem": "It is still attached to something (an instance, a NAT gateway or an "
            "endpoint); it is released when that is deleted, which can take minutes.",
            "manual_step": f"aws ec2 describe-network-interfaces --network-interface-ids "
            f"{physical} shows the attachment; once that is gone, delete the stack again",
        }
    if any(word in lowered for word in _GONE):
        return found | {
            "cause": "already_gone",
            "problem": "It no longer exists (deleted outside CloudFormation); the stack still "
            "lists it, so the retry must skip it.",
            "manual_step": f"aws cloudformation delete-stack --stack-name {stack_name} "
            f"--retain-resources {listed.logical_id} (hivemind destroy does this itself)",
        }
    return found | {
        "cause": "other",
        "problem": f"CloudFormation could not delete it: {reason or 'no reason given'}.",
        "manual_step": "remove what the reason names, then delete the stack again",
    }


def _find_users(resource_type: str, physical: str) -> str:
    filters = {
        "AWS::EC2::SecurityGroup": "group-id",
        "AWS::EC2::Subnet": "subnet-id",
        "AWS::EC2::VPC": "vpc-id",
    }
    name = filters.get(resource_type)
    if name is None:
        return f"find what still uses {physical} in the console, remove it, then delete again"
    return (
        f"aws ec2 describe-network-interfaces --filters Name={name},Values={physical} lists "
        "what still uses it; delete those (or wait for their owners to go), then delete again"
    )


def _protection(definition: dict[str, Any]) -> str | None:
    """The protection property that is on in the template, if any."""
    properties = definition.get("Properties")
    if not isinstance(properties, dict):
        return None
    for name in PROTECTION_PROPERTIES:
        if properties.get(name) in (True, "true", "True"):
            return name
    for attribute in properties.get("LoadBalancerAttributes") or []:
        if (
            isinstance(attribute, dict)
            and attribute.get("Key") == "deletion_protection.enabled"
            and str(attribute.get("Value")).lower() == "true"
        ):
            return "deletion_protection.enabled"
    return None


def _protected(resource: StackResource, definition: dict[str, Any], name: str) -> dict[str, Any]:
    """A resource whose protection is on: it blocks, and how to turn that off (in the
    template too, when the template turns it on)."""
    ident = resource.physical_id or "ID"
    resource_type = resource.resource_type
    properties = definition.get("Properties") or {}
    change = None
    if name in properties:
        change = TemplateChange(
            logical_id=resource.logical_id, attribute=f"Properties.{name}", value=False
        )
    found = {"effect": "blocks", "evidence": f"{name}: true", "template_change": change}
    if name == "DisableApiTermination":
        return found | {
            "cause": "termination_protection",
            "problem": "The instance has termination protection, so it cannot be terminated "
            "until that is turned off.",
            "manual_step": f"aws ec2 modify-instance-attribute --instance-id {ident} "
            "--no-disable-api-termination",
        }
    if resource_type == "AWS::RDS::DBCluster":
        step = f"aws rds modify-db-cluster --db-cluster-identifier {ident} --no-deletion-protection"
    elif resource_type == "AWS::RDS::DBInstance":
        step = (
            f"aws rds modify-db-instance --db-instance-identifier {ident} "
            "--no-deletion-protection --apply-immediately (hivemind destroy does this itself)"
        )
    elif resource_type == "AWS::ElasticLoadBalancingV2::LoadBalancer":
        step = (
            f"aws elbv2 modify-load-balancer-attributes --load-balancer-arn {ident} "
            "--attributes Key=deletion_protection.enabled,Value=false"
        )
    elif resource_type == "AWS::DynamoDB::Table":
        step = f"aws dynamodb update-table --table-name {ident} --no-deletion-protection-enabled"
    else:
        step = f"turn off deletion protection on {ident}, then delete the stack again"
    return found | {
        "cause": "deletion_protection",
        "problem": "Deletion protection is on, so AWS refuses to delete it until it is turned off.",
        "manual_step": step,
    }


def _policies(
    base: dict[str, Any], definition: dict[str, Any], resource_type: str, physical: str | None
) -> list[CleanupItem]:
    logical_id = str(base["logical_id"])
    deletion = definition.get("DeletionPolicy")
    replace = definition.get("UpdateReplacePolicy")
    items = []
    if deletion in ("Retain", "RetainExceptOnCreate"):
        items.append(
            CleanupItem(
                **base,
                effect="survives",
                cause="retained_by_policy",
                problem="Its DeletionPolicy keeps it when the stack is deleted: it outlives the "
                "deployment and keeps costing until it is deleted by hand.",
                evidence=f"DeletionPolicy: {deletion}",
                template_change=TemplateChange(
                    logical_id=logical_id, attribute="DeletionPolicy", value="Delete"
                ),
                manual_step=_delete_by_hand(resource_type, physical),
            )
        )
    elif deletion == "Snapshot":
        items.append(
            CleanupItem(
                **base,
                effect="survives",
                cause="snapshot_kept",
                problem="A final snapshot is taken when it is deleted and kept on purpose; it "
                "costs storage until it is deleted.",
                evidence="DeletionPolicy: Snapshot",
                manual_step="hivemind destroy ID --skip-snapshot deletes it without a snapshot",
            )
        )
    if replace == "Retain" and deletion not in ("Retain", "RetainExceptOnCreate"):
        items.append(
            CleanupItem(
                **base,
                effect="survives",
                cause="retained_on_replace",
                problem="Its UpdateReplacePolicy keeps the old copy whenever an update replaces "
                "it: earlier copies may be left behind, outside the stack.",
                evidence="UpdateReplacePolicy: Retain",
                template_change=TemplateChange(
                    logical_id=logical_id, attribute="UpdateReplacePolicy", value="Delete"
                ),
                manual_step="hivemind find-orphans lists copies tagged with the deployment",
            )
        )
    return items


def _delete_by_hand(resource_type: str, physical: str | None) -> str:
    ident = physical or "ID"
    commands = {
        "AWS::S3::Bucket": f"aws s3 rb s3://{ident} --force",
        "AWS::Logs::LogGroup": f"aws logs delete-log-group --log-group-name {ident}",
        "AWS::RDS::DBInstance": f"aws rds delete-db-instance --db-instance-identifier {ident} "
        f"--final-db-snapshot-identifier {ident}-final",
        "AWS::SecretsManager::Secret": f"aws secretsmanager delete-secret --secret-id {ident}",
        "AWS::KMS::Key": f"aws kms schedule-key-deletion --key-id {ident}",
    }
    return commands.get(
        resource_type,
        f"after the stack is gone: aws cloudcontrol delete-resource --type-name {resource_type} "
        f"--identifier {ident}",
    )


def _summary(inputs: JanitorInput, items: list[CleanupItem]) -> str:
    blocking = [i for i in items if i.effect == "blocks"]
    surviving = [i for i in items if i.effect == "survives"]
    if not items:
        return f"Nothing blocks deleting {inputs.stack_name}, and nothing outlives it."
    parts = []
    if blocking:
        names = ", ".join(f"{i.logical_id} ({i.cause.replace('_', ' ')})" for i in blocking)
        parts.append(f"{len(blocking)} resource(s) block deleting {inputs.stack_name}: {names}.")
    else:
        parts.append(f"Nothing blocks deleting {inputs.stack_name}.")
    if surviving:
        names = ", ".join(f"{i.logical_id} ({i.cause.replace('_', ' ')})" for i in surviving)
        parts.append(f"{len(surviving)} will outlive it: {names}.")
    return " ".join(parts)
