"""moto's CloudFormation, made to behave like CloudFormation where HiveMind relies on it.

moto creates a stack's resources synchronously inside the API call (CreateStack,
ExecuteChangeSet, UpdateStack). What it lacks, and what `install()` adds:

* **Every resource type of HiveMind's stacks** (`hivemind.sandbox.resources`):
  moto skips unknown types silently; here a template naming a type the sandbox
  cannot create is refused, as CloudFormation refuses an unknown type.
* **Resource events**: _IN_PROGRESS, _COMPLETE and _FAILED (with the reason) for
  every resource, in order, so progress displays and failure reports read the
  sandbox like AWS.
* **Rollback**: a resource that fails to create (a backend error or an injected
  fault) rolls the stack back: what was created is deleted, the stack ends
  ROLLBACK_COMPLETE (or ROLLBACK_FAILED).
* **Deletion in dependency order** honouring DeletionPolicy (Retain, Snapshot);
  a resource that fails leaves the stack DELETE_FAILED with the reason, and a
  second DeleteStack retries what is left (optionally with RetainResources).
* **Updates** (UpdateStack and UPDATE change sets): new resources first, changes
  in place or by replacement (the old resource deleted after success), including
  resources whose template is unchanged but whose parameters or references are
  not, dropped resources in the cleanup phase; a failure rolls back to the old stack
  (UPDATE_ROLLBACK_COMPLETE), and ContinueUpdateRollback retries what a failed
  rollback left.
* **Change sets that say what the update will do**: each change carries
  `Replacement`, `Scope` and `Details` as on AWS (`plan_update`), from the same
  replacement rules the update applies (`provisioning.replacement_rules`), and
  executing a change set carries out that plan: a resource the change set calls
  Replacement "True" is replaced, "False" changed in place, "Conditional" decided
  when its new values are known. Change sets are scoped to their stack (the CDK
  CLI names them all alike), ChangeSetNotFound comes where the CDK CLI expects it,
  and a new stack's change set goes through the same creation path.
* **Parameters and intrinsics**: `{{resolve:secretsmanager|ssm:...}}` resolved at
  creation, `Fn::GetAZs` answering the stack's region, SSM parameter types that
  fail like CloudFormation when the parameter is missing, `UsePreviousValue`
  reusing the value given (not the resolved one), the 51,200-byte TemplateBody
  limit enforced.
* Outputs and resource lists that never re-create deleted resources (moto's lazy
  resource map would).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, cast
from weakref import WeakKeyDictionary

from moto.cloudformation import parsing
from moto.cloudformation import responses as cfn_responses
from moto.cloudformation.exceptions import CloudFormationError, ValidationError
from moto.cloudformation.models import (
    ChangeSet,
    CloudFormationBackend,
    Event,
    Stack,
    cloudformation_backends,
)
from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.models import ec2_backends

from hivemind.sandbox import patching, provisioning
from hivemind.sandbox.faults import FAULTS
from hivemind.sandbox.provisioning import MotoBackend, Provisioned, Recreation, ResourceFailed

log = logging.getLogger("hivemind.sandbox")

# Stack statuses whose outputs describe resources that exist.
_OUTPUT_STATUSES = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "UPDATE_ROLLBACK_FAILED",
        "DELETE_FAILED",
    }
)


@dataclass
class _StackState:
    """What the sandbox tracks for one stack beyond moto's own model."""

    resource_status: dict[str, str] = field(default_factory=dict)
    outputs: list[dict[str, Any]] | None = None
    # What an update rollback could not delete: logical id -> (resource, its template).
    rollback_leftovers: dict[str, tuple[Any, Mapping[str, Any]]] = field(default_factory=dict)


_STATES: WeakKeyDictionary[Stack, _StackState] = WeakKeyDictionary()


def _state(stack: Stack) -> _StackState:
    state = _STATES.get(stack)
    if state is None:
        state = _STATES[stack] = _StackState()
    return state


# ---------------------------------------------------------------------------
# failure reasons and events


def failure_reason(exc: BaseException) -> str:
    """One line in CloudFormation's style naming why a resource operation failed."""
    if isinstance(exc, ResourceFailed):
        return exc.reason
    code = getattr(exc, "code", None) or getattr(exc, "error_type", None)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    message = " ".join(str(message).split())
    code = code if isinstance(code, str) and code else type(exc).__name__
    return f'Resource handler returned message: "{message}" (ErrorCode: {code})'


def _add_event(
    stack: Stack,
    logical_id: str,
    physical_id: str,
    resource_type: str,
    status: str,
    reason: str | None,
) -> None:
    event = Event(
        stack_id=stack.stack_id,
        stack_name=stack.name,
        logical_resource_id=logical_id,
        physical_resource_id=physical_id,
        resource_type=resource_type,
        resource_status=status,
        resource_status_reason=reason,
        resource_properties=None,
    )
    # moto creates a whole stack within milliseconds; strictly increasing timestamps keep
    # the events in order for clients that sort by time (the CDK CLI does).
    if stack.events and event.timestamp <= stack.events[-1].timestamp:
        event.timestamp = stack.events[-1].timestamp + timedelta(milliseconds=1)
    event.sendToSns(stack.account_id, stack.region_name, stack.notification_arns)
    stack.events.append(event)


def _resource_event(
    stack: Stack | None,
    logical_id: str,
    resource_type: str,
    status: str,
    *,
    physical_id: str = "",
    reason: str | None = None,
) -> None:
    if stack is None:
        return
    _add_event(stack, logical_id, physical_id, resource_type, status, reason)
    _state(stack).resource_status[logical_id] = status


def _stack_event(stack: Stack, status: str, reason: str | None = None) -> None:
    stack.status = status
    stack.status_reason = reason  # type: ignore[attr-defined]  # serialized as StackStatusReason
    _add_event(stack, stack.name, stack.stack_id, "AWS::CloudFormation::Stack", status, reason)
    log.info("stack %s: %s%s", stack.name, status, f" ({reason})" if reason else "")


def _stack_of(resources_map: parsing.ResourceMap) -> Stack | None:
    backend = cloudformation_backends[resources_map._account_id][resources_map._region_name]
    return backend.stacks.get(resources_map.stack_id)


# ---------------------------------------------------------------------------
# the resource map: created only while the stack is being created or updated


@contextmanager
def _live(resource_map: parsing.ResourceMap) -> Iterator[None]:
    """Let the lazy resource map create resources (moto creates one when it is first looked
    up); outside these windows a lookup of a missing resource finds nothing."""
    previous = getattr(resource_map, "_sandbox_live", False)
    resource_map._sandbox_live = True  # type: ignore[attr-defined]
    try:
        yield
    finally:
        resource_map._sandbox_live = previous  # type: ignore[attr-defined]


_original_getitem = parsing.ResourceMap.__getitem__


def _getitem(self: parsing.ResourceMap, key: str) -> Any:
    if key in self._parsed_resources or getattr(self, "_sandbox_live", False):
        return _original_getitem(self, key)
    if key in self._resource_json_map:
        return None  # deleted, rolled back or never created: never re-create it on a read
    raise KeyError(key)


def _created_resources(resource_map: parsing.ResourceMap) -> dict[str, Any]:
    return {
        logical_id: resource
        for logical_id, resource in resource_map._parsed_resources.items()
        if logical_id in resource_map._resource_json_map and resource is not None
    }


# ---------------------------------------------------------------------------
# creating one resource


_DYNAMIC_REFERENCE = re.compile(r"\{\{resolve:(secretsmanager|ssm|ssm-secure):(.+?)\}\}")


def resolve_dynamic_references(value: Any, account_id: str, region: str) -> Any:
    """Replace `{{resolve:...}}` references the way CloudFormation does when it creates a
    resource; a reference that does not resolve raises."""
    if isinstance(value, str):
        if "{{resolve:" not in value:
            return value
        return _DYNAMIC_REFERENCE.sub(
            lambda match: _resolve(match.group(1), match.group(2), account_id, region), value
        )
    if isinstance(value, list):
        return [resolve_dynamic_references(v, account_id, region) for v in value]
    if isinstance(value, dict):
        return {k: resolve_dynamic_references(v, account_id, region) for k, v in value.items()}
    return value


def _resolve(service: str, reference: str, account_id: str, region: str) -> str:
    if service == "secretsmanager":
        from moto.secretsmanager.models import secretsmanager_backends

        parts = reference.split(":")
        # The secret id may itself be an ARN: arn:aws:secretsmanager:<region>:<acct>:secret:<name>
        cut = 7 if reference.startswith("arn:") else 1
        secret_id, rest = ":".join(parts[:cut]), [*parts[cut:], "", "", "", ""]
        _, json_key, version_stage, version_id = rest[:4]
        backend: MotoBackend = secretsmanager_backends[account_id][region]
        secret = backend.get_secret_value(secret_id, version_id or None, version_stage or None)
        text = str(secret["SecretString"])
        return str(json.loads(text)[json_key]) if json_key else text
    from moto.ssm.models import ssm_backends

    name = reference.split(":")[0]
    parameter = ssm_backends[account_id][region].get_parameter(name)
    if parameter is None:
        raise ValidationError(message=f"SSM parameter {name} referenced by the template not found")
    return str(parameter.value)


def _create_resource(
    logical_id: str,
    resource_json: dict[str, Any],
    resources_map: parsing.ResourceMap,
    account_id: str,
    region_name: str,
) -> Any:
    """Create one resource (moto's `parse_and_create_resource`), with events, injected faults,
    dynamic references and a ResourceFailed carrying the reason when it fails."""
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        return None
    resource_type = resource_json["Type"]
    stack = _stack_of(resources_map)
    try:
        # Resolves Ref/GetAtt, which creates what this resource depends on first.
        parsed = parsing.parse_resource_and_generate_name(logical_id, resource_json, resources_map)
    except ResourceFailed:
        raise  # a dependency failed and has its own event
    except Exception as exc:
        _resource_event(stack, logical_id, resource_type, "CREATE_FAILED", reason=_why(exc))
        raise ResourceFailed(logical_id, _why(exc)) from exc
    if not parsed:
        return None
    resource_class, cleaned_json, physical_name = parsed
    _resource_event(stack, logical_id, resource_type, "CREATE_IN_PROGRESS")
    try:
        FAULTS.trip(resource_type, "create")
        cleaned_json = resolve_dynamic_references(cleaned_json, account_id, region_name)
        resource = resource_class.create_from_cloudformation_json(
            physical_name,
            cleaned_json,
            account_id,
            region_name,
            LogicalId=logical_id,
            StackId=resources_map.stack_id,
            ResourceType=resource_type,
        )
    except Exception as exc:
        reason = failure_reason(exc)
        _resource_event(stack, logical_id, resource_type, "CREATE_FAILED", reason=reason)
        log.info("%s (%s) failed to create: %s", logical_id, resource_type, reason)
        raise ResourceFailed(logical_id, reason) from exc
    resource.cf_resource_type = resource_type
    resource.logical_resource_id = logical_id
    physical_id = str(getattr(resource, "physical_resource_id", "") or "")
    _resource_event(stack, logical_id, resource_type, "CREATE_COMPLETE", physical_id=physical_id)
    return resource


def _why(exc: BaseException) -> str:
    """A template-level failure (a bad Fn::GetAtt, a missing attribute) as a status reason."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(message).split())


_original_clean_json = parsing.clean_json


def _clean_json(resource_json: Any, resources_map: parsing.ResourceMap) -> Any:
    # moto answers Fn::GetAZs with us-east-1's zones whatever the stack's region.
    if isinstance(resource_json, dict) and "Fn::GetAZs" in resource_json:
        region = _original_clean_json(resource_json["Fn::GetAZs"], resources_map)
        if not isinstance(region, str) or not region:
            region = resources_map._region_name
        backend = ec2_backends[resources_map._account_id][region]
        return [zone.name for zone in backend.describe_availability_zones()]
    return _original_clean_json(resource_json, resources_map)


_original_resource_class_from_type = parsing.resource_class_from_type


def _resource_class_from_type(resource_type: str) -> Any:
    resource_class = _original_resource_class_from_type(resource_type)
    if resource_class is None and resource_type not in parsing.NULL_MODELS:
        # moto would skip the resource silently and report the stack complete.
        raise ValidationError(message=_unsupported_message([resource_type]))
    return resource_class


def _parse_ssm_parameter(self: parsing.ResourceMap, value: str, value_type: str) -> Any:
    """An `AWS::SSM::Parameter::Value<...>` parameter's value, or CloudFormation's error when
    the SSM parameter does not exist (moto fails with a server error)."""
    from moto.ssm.models import ssm_backends

    if ssm_backends[self._account_id][self._region_name].get_parameter(value) is None:
        raise ValidationError(
            message=f"Unable to fetch parameters [{value}] from parameter store for this account."
        )
    return _original_parse_ssm_parameter(self, value, value_type)


_original_parse_ssm_parameter = parsing.ResourceMap.parse_ssm_parameter


def unsupported_types(template: Mapping[str, Any]) -> list[str]:
    """The resource types of a template the sandbox cannot create."""
    known = parsing.get_model_map()
    types = {
        resource.get("Type", "")
        for resource in (template.get("Resources") or {}).values()
        if isinstance(resource, Mapping)
    }
    # Custom resources run a Lambda function, which the sandbox does not run (moto would
    # wait for its answer forever).
    return sorted(
        t
        for t in types
        if (t not in known and t not in parsing.NULL_MODELS)
        or t.startswith("Custom::")
        or t == "AWS::CloudFormation::CustomResource"
    )


def _unsupported_message(types: list[str]) -> str:
    return (
        f"Template format error: Unrecognized resource types: [{', '.join(types)}] "
        "(the HiveMind sandbox cannot create them)"
    )


def _validate_types(template: str | dict[str, Any]) -> None:
    template_dict = template if isinstance(template, dict) else Stack.parse_template(template)
    missing = unsupported_types(template_dict or {})
    if missing:
        raise ValidationError(message=_unsupported_message(missing))


# ---------------------------------------------------------------------------
# stacks: create with rollback, delete in order


def _create_resources(self: Stack) -> None:
    """Create every resource of the stack; on the first failure roll back."""
    self.status = "CREATE_IN_PROGRESS"  # CreateStack / ExecuteChangeSet logged the event
    try:
        with _live(self.resource_map):
            self.resource_map.create(self.template_dict)
            outputs = _original_outputs(self)
    except ResourceFailed as failure:
        _roll_back(
            self,
            f"The following resource(s) failed to create: [{failure.logical_id}]. "
            "Rollback requested by user.",
        )
        return
    except Exception as exc:  # a template error outside any one resource (e.g. an output)
        log.exception("stack %s failed outside a resource", self.name)
        _roll_back(self, _why(exc))
        return
    self.description = self.template_dict.get("Description")
    _state(self).outputs = outputs
    _stack_event(self, "CREATE_COMPLETE")


def _roll_back(stack: Stack, reason: str) -> None:
    _stack_event(stack, "ROLLBACK_IN_PROGRESS", reason)
    failed = _delete_resources(stack)
    _state(stack).outputs = None
    if failed:
        _stack_event(stack, "ROLLBACK_FAILED", _delete_failed_reason(failed))
    else:
        _stack_event(stack, "ROLLBACK_COMPLETE")


def _delete_stack(self: Stack, retain: Collection[str] = ()) -> None:
    """Delete the stack's resources; any that fail leave the stack DELETE_FAILED."""
    _stack_event(self, "DELETE_IN_PROGRESS", "User Initiated")
    failed = _delete_resources(self, retain)
    if failed:
        _stack_event(self, "DELETE_FAILED", _delete_failed_reason(failed))
    else:
        _state(self).outputs = None
        _stack_event(self, "DELETE_COMPLETE")


def _delete_failed_reason(failed: list[str]) -> str:
    return f"The following resource(s) failed to delete: [{', '.join(failed)}]. "


def _delete_resources(
    stack: Stack,
    retain: Collection[str] = (),
    *,
    templates: Mapping[str, Any] | None = None,
    only: Collection[str] | None = None,
) -> list[str]:
    """Delete what the stack created (or the `only` ones), each resource after everything
    that depends on it, as `templates` (default: the stack's) describes them.

    A resource that fails stays, and so does everything it depends on (CloudFormation
    never deletes a resource something still uses). Returns the logical ids that failed.
    """
    resource_map = stack.resource_map
    if templates is None:
        templates = resource_map._resource_json_map
    created = resource_map._parsed_resources
    dependents = _dependents(templates)
    failed: list[str] = []
    for logical_id in teardown_order(templates):
        resource = created.get(logical_id)
        if resource is None or (only is not None and logical_id not in only):
            continue
        if any(d in created and created[d] is not None for d in dependents[logical_id]):
            continue  # something that uses it failed to delete
        policy = "Retain" if logical_id in retain else None
        if _delete_resource(stack, logical_id, resource, templates[logical_id], policy):
            created.pop(logical_id)
        else:
            failed.append(logical_id)
    return failed


def _delete_resource(
    stack: Stack,
    logical_id: str,
    resource: Any,
    resource_json: Mapping[str, Any],
    policy: str | None = None,
) -> bool:
    """Delete one resource with its events, honouring `policy` (default: the resource's
    DeletionPolicy) and injected faults. False when it failed (the event says why)."""
    resource_type = resource_json["Type"]
    physical_id = str(getattr(resource, "physical_resource_id", "") or "")
    policy = policy or resource_json.get("DeletionPolicy", "Delete")
    if policy == "Retain":
        _resource_event(stack, logical_id, resource_type, "DELETE_SKIPPED", physical_id=physical_id)
        return True
    _resource_event(stack, logical_id, resource_type, "DELETE_IN_PROGRESS", physical_id=physical_id)
    try:
        FAULTS.trip(resource_type, "delete")
        _delete_one(stack.resource_map, resource, resource_json, keep_snapshot=policy == "Snapshot")
    except Exception as exc:
        reason = failure_reason(exc)
        _resource_event(
            stack,
            logical_id,
            resource_type,
            "DELETE_FAILED",
            physical_id=physical_id,
            reason=reason,
        )
        log.info("%s (%s) failed to delete: %s", logical_id, resource_type, reason)
        return False
    _resource_event(stack, logical_id, resource_type, "DELETE_COMPLETE", physical_id=physical_id)
    return True


def _delete_one(
    resource_map: parsing.ResourceMap,
    resource: Any,
    resource_json: Mapping[str, Any],
    *,
    keep_snapshot: bool,
) -> None:
    if isinstance(resource, Provisioned):
        if keep_snapshot and resource.delete_keeping_snapshot():
            return
        resource.delete(resource_map._account_id, resource_map._region_name)
    else:
        # A moto-native model (a type the sandbox leaves to moto).
        resource_map._delete_resource(resource, dict(resource_json))


def references(value: Any) -> set[str]:
    """The logical ids a piece of template refers to (Ref, Fn::GetAtt, Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                text, variables = (inner[0], inner[1]) if isinstance(inner, list) else (inner, {})
                for name in re.findall(r"\$\{([^!}][^}]*)\}", str(text)):
                    if name not in variables:
                        found.add(name.split(".")[0])
                found |= references(variables)
            else:
                found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


def referenced_entities(value: Any) -> set[tuple[str, str]]:
    """What a piece of template refers to, as ("Ref", name) for a parameter, pseudo
    parameter or resource, and ("GetAtt", "Resource.Attribute")."""
    found: set[tuple[str, str]] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(("Ref", inner))
            elif key == "Fn::GetAtt":
                parts = inner if isinstance(inner, list) else str(inner).split(".", 1)
                found.add(("GetAtt", ".".join(str(part) for part in parts)))
            elif key == "Fn::Sub":
                text, variables = (inner[0], inner[1]) if isinstance(inner, list) else (inner, {})
                for name in re.findall(r"\$\{([^!}][^}]*)\}", str(text)):
                    if name not in variables:
                        found.add(("GetAtt", name) if "." in name else ("Ref", name))
                found |= referenced_entities(variables)
            else:
                found |= referenced_entities(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= referenced_entities(inner)
    return found


def dependencies(templates: Mapping[str, Any]) -> dict[str, set[str]]:
    """For each resource, the resources it needs (references and DependsOn)."""
    graph: dict[str, set[str]] = {}
    for logical_id, resource in templates.items():
        depends_on = resource.get("DependsOn") or []
        needs = references(resource.get("Properties") or {}) | set(
            [depends_on] if isinstance(depends_on, str) else depends_on
        )
        graph[logical_id] = {n for n in needs if n in templates and n != logical_id}
    return graph


def _dependents(templates: Mapping[str, Any]) -> dict[str, set[str]]:
    dependents: dict[str, set[str]] = {logical_id: set() for logical_id in templates}
    for logical_id, needs in dependencies(templates).items():
        for need in needs:
            dependents[need].add(logical_id)
    return dependents


def teardown_order(templates: Mapping[str, Any]) -> list[str]:
    """Logical ids in the order CloudFormation may delete them: every resource before the
    resources it depends on (the reverse of a creation order)."""
    graph = dependencies(templates)
    creation: list[str] = []
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(logical_id: str) -> None:
        if logical_id in done or logical_id in visiting:
            return  # a cycle is the template's error; moto reports it on creation
        visiting.add(logical_id)
        for need in sorted(graph[logical_id]):
            visit(need)
        visiting.discard(logical_id)
        done.add(logical_id)
        creation.append(logical_id)

    for logical_id in sorted(graph):
        visit(logical_id)
    return creation[::-1]


# ---------------------------------------------------------------------------
# outputs, resource lists and statuses


_original_outputs = cast(
    Callable[[Stack], "list[dict[str, Any]] | None"], cast(property, Stack.outputs).fget
)


def _outputs(self: Stack) -> list[dict[str, Any]] | None:
    if self.status not in _OUTPUT_STATUSES:
        return None
    outputs = _state(self).outputs
    return [dict(output) for output in outputs] if outputs else None


def _stack_resources(self: Stack) -> list[Any]:
    return list(_created_resources(self.resource_map).values())


def resource_status(stack: Stack, resource: Any) -> str:
    """The status of one of the stack's resources, as its last event set it."""
    logical_id = getattr(resource, "logical_resource_id", "")
    return _state(stack).resource_status.get(logical_id, "CREATE_COMPLETE")


def _list_stack_resources(self: cfn_responses.CloudFormationResponse) -> ActionResult:
    stack, resources = self.cloudformation_backend.list_stack_resources(
        self._get_param("StackName")
    )
    summaries = [
        {
            "ResourceStatus": resource_status(stack, resource),
            "LogicalResourceId": getattr(resource, "logical_resource_id", ""),
            "LastUpdatedTimestamp": stack.creation_time,
            "PhysicalResourceId": getattr(resource, "physical_resource_id", ""),
            "ResourceType": getattr(resource, "cf_resource_type", ""),
        }
        for resource in resources
    ]
    return ActionResult({"StackResourceSummaries": summaries})


_original_dto_init = cfn_responses.StackResourceDTO.__init__


def _dto_init(self: cfn_responses.StackResourceDTO, stack: Stack, resource: Any) -> None:
    _original_dto_init(self, stack, resource)
    self.resource_status = resource_status(stack, resource)


# ---------------------------------------------------------------------------
# the backend: create validation, delete, change sets


# A template body is JSON or YAML ("AWS CloudFormation templates are JSON or YAML
# formatted text files", CloudFormation User Guide, "Template formats"). moto reads
# every body with PyYAML's pure-Python loader, and only falls back to JSON when that
# fails; CDK writes JSON, and the YAML loader took about a second of the daemon's CPU
# per read of one of our templates (several reads per change set). A body that is JSON
# is read as JSON, which is also what it means; anything else goes to moto's reader.
_original_parse_template = Stack.parse_template


def _parse_template(template: str) -> Any:
    try:
        return json.loads(template)
    except ValueError:
        return _original_parse_template(template)


def _change_set_parse_template(self: ChangeSet) -> None:
    self.template_dict = _parse_template(self.template)


_original_backend_create_stack = CloudFormationBackend.create_stack


def _backend_create_stack(
    self: CloudFormationBackend,
    name: str,
    template: str,
    parameters: dict[str, Any],
    *args: Any,
    **kwargs: Any,
) -> Stack:
    _validate_types(template)
    parameters = with_defaults(Stack.parse_template(template), parameters)
    return _original_backend_create_stack(self, name, template, parameters, *args, **kwargs)


def with_defaults(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A stack's parameter values as given, defaults filled in. For an SSM parameter type
    this is the parameter's name, not its resolved value: what `UsePreviousValue` reuses."""
    declared = template.get("Parameters") or {}
    values = {
        key: slot["Default"] for key, slot in declared.items() if slot.get("Default") is not None
    }
    values.update(parameters)
    return values


def _stack_parameters(self: Stack) -> dict[str, Any]:
    return dict(self.parameters)


def _backend_delete_stack(
    self: CloudFormationBackend, name_or_stack_id: str, retain_resources: Collection[str] = ()
) -> None:
    stack = self.stacks.get(name_or_stack_id) or next(
        (s for s in self.stacks.values() if s.name == name_or_stack_id), None
    )
    if stack is None:
        return  # CloudFormation: deleting a stack that does not exist succeeds
    if retain_resources and stack.status != "DELETE_FAILED":
        raise ValidationError(
            message="Invalid operation on stack: RetainResources can only be specified "
            f"when the stack is in DELETE_FAILED state (it is {stack.status})"
        )
    export_names = [export.name for export in stack.exports if export.name]
    _delete_stack(stack, retain_resources)
    if stack.status != "DELETE_COMPLETE":
        return
    self.stacks.pop(stack.stack_id, None)
    self.deleted_stacks[stack.stack_id] = stack
    _forget_change_sets(self, stack.stack_id)
    for export_name in export_names:
        self.exports.pop(export_name, None)


class ChangeSetNotFound(CloudFormationError):
    code = "ChangeSetNotFoundException"


def _live_stack(backend: CloudFormationBackend, name_or_id: str | None) -> Stack | None:
    if not name_or_id:
        return None
    return backend.stacks.get(name_or_id) or next(
        (s for s in backend.stacks.values() if s.name == name_or_id), None
    )


def find_change_set(
    backend: CloudFormationBackend, name_or_arn: str, stack_name_or_id: str | None
) -> ChangeSet:
    """A change set by ARN, or by name on the given stack (CloudFormation scopes names to a
    stack; moto matches a name on any stack, and the CDK CLI names them all alike)."""
    change_set = backend.change_sets.get(name_or_arn)
    if change_set is not None and change_set.stack_id in backend.stacks:
        return change_set
    stack = _live_stack(backend, stack_name_or_id)
    for change_set in backend.change_sets.values():
        if (
            change_set.change_set_name == name_or_arn
            and change_set.stack_id in backend.stacks
            and (stack is None or change_set.stack_id == stack.stack_id)
        ):
            return change_set
    raise ChangeSetNotFound(f"ChangeSet [{name_or_arn}] does not exist")


def _forget_change_sets(backend: CloudFormationBackend, stack_id: str) -> None:
    # CloudFormation drops a stack's change sets when one is executed or the stack is deleted.
    for change_set_id, change_set in list(backend.change_sets.items()):
        if change_set.stack_id == stack_id:
            del backend.change_sets[change_set_id]


_original_create_change_set = CloudFormationBackend.create_change_set


def _create_change_set(
    self: CloudFormationBackend,
    stack_name: str,
    change_set_name: str,
    template: str,
    parameters: dict[str, str],
    description: str,
    change_set_type: str,
    *args: Any,
    **kwargs: Any,
) -> tuple[str, str]:
    _validate_types(template)
    if stack_name in self.stacks:  # a stack id (moto matches names only)
        stack_name = self.stacks[stack_name].name
    if change_set_type == "CREATE":
        for stack in list(self.stacks.values()):
            if stack.name != stack_name:
                continue
            if stack.status != "REVIEW_IN_PROGRESS":
                raise ValidationError(
                    message=f"Stack [{stack_name}] already exists and cannot be created again "
                    f"with the changeSet [{change_set_name}]."
                )
            # moto makes a new stack for it: the empty one under review goes.
            self.stacks.pop(stack.stack_id)
            _forget_change_sets(self, stack.stack_id)
    change_set_id, stack_id = _original_create_change_set(
        self,
        stack_name,
        change_set_name,
        template,
        parameters,
        description,
        change_set_type,
        *args,
        **kwargs,
    )
    change_set = self.change_sets[change_set_id]
    template_dict = change_set.template_dict
    try:
        plan = plan_update(
            self.stacks[stack_id], template_dict, with_defaults(template_dict, parameters)
        )
    except Exception as exc:  # a parameter that does not resolve, say: as on AWS
        change_set.status, change_set.execution_status = "FAILED", "UNAVAILABLE"
        change_set.status_reason = _why(exc)
        plan = []
    # moto's serializer reads each change's ResourceChange from a mapping as well.
    change_set.changes = [change.described() for change in plan]  # type: ignore[misc]
    return change_set_id, stack_id


def _describe_change_set(
    self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
) -> ChangeSet:
    return find_change_set(self, change_set_name, stack_name)


def _delete_change_set(
    self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
) -> None:
    try:
        change_set = find_change_set(self, change_set_name, stack_name)
    except ChangeSetNotFound:
        return  # deleting what is not there succeeds, as the CDK CLI expects
    del self.change_sets[change_set.change_set_id]


def _execute_change_set(
    self: CloudFormationBackend, change_set_name: str, stack_name: str | None = None
) -> None:
    change_set = find_change_set(self, change_set_name, stack_name)
    stack = self.stacks[change_set.stack_id]
    if change_set.change_set_type != "CREATE":
        _forget_change_sets(self, stack.stack_id)
        update_stack_resources(
            stack, change_set.template, change_set.template_dict, change_set.parameters
        )
        return
    stack.template = change_set.template
    stack._parse_template()
    stack.parameters = with_defaults(stack.template_dict, change_set.parameters)
    stack.resource_map = stack._create_resource_map()
    stack.output_map = stack._create_output_map()
    _stack_event(stack, "CREATE_IN_PROGRESS", "User Initiated")
    _forget_change_sets(self, stack.stack_id)
    stack.create_resources()


def _describe_change_set_response(self: cfn_responses.CloudFormationResponse) -> ActionResult:
    return ActionResult(
        _describe_change_set(
            self.cloudformation_backend,
            self._get_param("ChangeSetName"),
            self._get_param("StackName"),
        )
    )


def _delete_change_set_response(self: cfn_responses.CloudFormationResponse) -> EmptyResult:
    _delete_change_set(
        self.cloudformation_backend, self._get_param("ChangeSetName"), self._get_param("StackName")
    )
    return EmptyResult()


def _list_change_sets_response(self: cfn_responses.CloudFormationResponse) -> ActionResult:
    backend = self.cloudformation_backend
    stack = _live_stack(backend, self._get_param("StackName"))
    summaries = [
        change_set
        for change_set in backend.change_sets.values()
        if stack is not None and change_set.stack_id == stack.stack_id
    ]
    return ActionResult({"Summaries": summaries})


# ---------------------------------------------------------------------------
# change sets: what an update will do to each resource

Replacement = Literal["True", "False", "Conditional"]
Evaluation = Literal["Static", "Dynamic"]
# A resource's attributes besides its properties that a change set reports (Scope).
_RESOURCE_ATTRIBUTES: tuple[str, ...] = ("Metadata", "CreationPolicy", "UpdatePolicy")
_RESOURCE_ATTRIBUTES += ("DeletionPolicy", "UpdateReplacePolicy")


@dataclass(frozen=True)
class ChangeDetail:
    """One `ResourceChangeDetail`: what changes (`attribute`, and the property `name`),
    whether that recreates the resource, whether CloudFormation knows the new value
    (Static) or learns it during the update (Dynamic), and what caused it."""

    attribute: str  # Properties, Tags, Metadata, DeletionPolicy...
    name: str | None
    recreation: Recreation
    evaluation: Evaluation
    source: str  # DirectModification, ParameterReference, ResourceReference, ResourceAttribute
    causing_entity: str | None = None

    def described(self) -> dict[str, Any]:
        target: dict[str, Any] = {"Attribute": self.attribute}
        if self.name is not None:
            target["Name"] = self.name
        target["RequiresRecreation"] = self.recreation
        detail: dict[str, Any] = {
            "Target": target,
            "Evaluation": self.evaluation,
            "ChangeSource": self.source,
        }
        if self.causing_entity is not None:
            detail["CausingEntity"] = self.causing_entity
        return detail


@dataclass(frozen=True)
class ResourceChange:
    """One `ResourceChange` of a change set: a resource added, modified or removed; a
    modification says whether it replaces the resource and why (`details`)."""

    action: Literal["Add", "Modify", "Remove"]
    logical_id: str
    resource_type: str
    physical_id: str | None = None
    details: tuple[ChangeDetail, ...] = ()
    replacement: Replacement | None = None

    @property
    def scope(self) -> list[str]:
        return list(dict.fromkeys(detail.attribute for detail in self.details))

    def described(self) -> dict[str, Any]:
        """As DescribeChangeSet shows it (its `ResourceChange`)."""
        change: dict[str, Any] = {
            "Action": self.action,
            "LogicalResourceId": self.logical_id,
            "ResourceType": self.resource_type,
        }
        if self.physical_id is not None:
            change["PhysicalResourceId"] = self.physical_id
        if self.replacement is not None:
            change["Replacement"] = self.replacement
        change["Scope"] = self.scope
        change["Details"] = [detail.described() for detail in self.details]
        return change


def replacement_of(details: Collection[ChangeDetail]) -> Replacement:
    """The most intrusive of the details, as CloudFormation ranks them: a recreation it
    knows will happen (Always, Static) replaces; one that depends on a value it learns
    during the update (Dynamic) or on a condition (Conditionally) may."""
    if any(d.recreation == "Always" and d.evaluation == "Static" for d in details):
        return "True"
    if any(d.recreation != "Never" for d in details):
        return "Conditional"
    return "False"


def plan_update(
    stack: Stack, template: dict[str, Any], parameters: Mapping[str, Any]
) -> list[ResourceChange]:
    """What updating `stack` to `template` with `parameters` (defaults filled in) does to
    each resource, as DescribeChangeSet reports it; `update_stack_resources` carries out
    exactly this plan.

    A property whose template text changed is a direct modification (Static). One whose
    text is the same changes through what it refers to: a parameter whose value changed
    (the resolved value, so an SSM parameter's new value or a NoEcho parameter's counts),
    a resource being replaced or that may be (Ref), or an attribute of a resource being
    modified (Fn::GetAtt); as on AWS such a property gets two details, a Dynamic direct
    modification and the Static or Dynamic reference that causes it. References to a
    resource updated in place (its Ref, the physical id, stays) change nothing.
    """
    current = stack.resource_map
    proposed = _resource_map_for(stack, template, parameters)
    created = _created_resources(current)
    old_templates = current._resource_json_map
    new_templates: dict[str, Any] = template.get("Resources") or {}
    wanted = {
        logical_id
        for logical_id, resource_json in new_templates.items()
        if _condition_holds(proposed, resource_json)
    }
    before, after = current.resolved_parameters, proposed.resolved_parameters
    changed_parameters = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    plan: dict[str, ResourceChange] = {}
    for logical_id in creation_order(new_templates):
        if logical_id not in wanted:
            continue
        resource_type = new_templates[logical_id]["Type"]
        resource = created.get(logical_id)
        if resource is None:
            plan[logical_id] = ResourceChange("Add", logical_id, resource_type)
            continue
        physical_id = str(getattr(resource, "physical_resource_id", "") or "")
        old_json = old_templates[logical_id]
        if old_json["Type"] != resource_type:  # a new resource of the new type
            plan[logical_id] = ResourceChange(
                "Modify", logical_id, resource_type, physical_id, replacement="True"
            )
            continue
        details = tuple(_details(old_json, new_templates[logical_id], changed_parameters, plan))
        if details:
            plan[logical_id] = ResourceChange(
                "Modify", logical_id, resource_type, physical_id, details, replacement_of(details)
            )
    removed = [
        ResourceChange(
            "Remove",
            logical_id,
            old_templates[logical_id]["Type"],
            str(getattr(created[logical_id], "physical_resource_id", "") or ""),
        )
        for logical_id in teardown_order(old_templates)
        if logical_id in created and logical_id not in wanted
    ]
    return [*(plan[logical_id] for logical_id in new_templates if logical_id in plan), *removed]


def _resource_map_for(
    stack: Stack, template: dict[str, Any], parameters: Mapping[str, Any]
) -> parsing.ResourceMap:
    """A resource map of `template` that only resolves its parameters and conditions."""
    resource_map = parsing.ResourceMap(
        stack.stack_id,
        stack.name,
        dict(parameters),
        stack.tags or {},
        region_name=stack.region_name,
        account_id=stack.account_id,
        template=template,
        cross_stack_resources=stack.cross_stack_resources,
    )
    resource_map.load_mapping()
    resource_map.load_parameters()
    resource_map.load_conditions()
    return resource_map


def _condition_holds(resource_map: parsing.ResourceMap, resource_json: Mapping[str, Any]) -> bool:
    condition = resource_json.get("Condition")
    return not condition or bool(resource_map.lazy_condition_map[condition])


def _details(
    old_json: Mapping[str, Any],
    new_json: Mapping[str, Any],
    changed_parameters: Collection[str],
    plan: Mapping[str, ResourceChange],
) -> list[ChangeDetail]:
    rules = provisioning.replacement_rules(new_json["Type"])
    old_properties = old_json.get("Properties") or {}
    new_properties = new_json.get("Properties") or {}
    details: list[ChangeDetail] = []
    for name in [*new_properties, *(k for k in old_properties if k not in new_properties)]:
        attribute, label = ("Tags", None) if name == "Tags" else ("Properties", name)
        before, after = old_properties.get(name), new_properties.get(name)
        if before != after:
            recreation = rules.recreation(name, before, after)
            details.append(
                ChangeDetail(attribute, label, recreation, "Static", "DirectModification")
            )
            continue
        causes = list(_causes(after, changed_parameters, plan))
        if causes:
            recreation = rules.recreation(name)
            details.append(
                ChangeDetail(attribute, label, recreation, "Dynamic", "DirectModification")
            )
            details += [
                ChangeDetail(attribute, label, recreation, evaluation, source, entity)
                for source, entity, evaluation in causes
            ]
    for attribute in _RESOURCE_ATTRIBUTES:
        if old_json.get(attribute) != new_json.get(attribute):
            details.append(ChangeDetail(attribute, None, "Never", "Static", "DirectModification"))
    return details


def _causes(
    value: Any, changed_parameters: Collection[str], plan: Mapping[str, ResourceChange]
) -> Iterator[tuple[str, str, Evaluation]]:
    """Why a property whose template text is unchanged changes: (ChangeSource,
    CausingEntity, Evaluation) for each changed parameter or resource it refers to."""
    for kind, entity in sorted(referenced_entities(value)):
        if kind == "Ref" and entity in changed_parameters:
            yield "ParameterReference", entity, "Static"
            continue
        target = plan.get(entity.split(".", 1)[0])
        if target is None or target.action != "Modify":
            continue
        if kind == "Ref" and target.replacement != "False":
            certain = target.replacement == "True"  # a new physical id for sure
            yield "ResourceReference", entity, "Static" if certain else "Dynamic"
        elif kind == "GetAtt":
            yield "ResourceAttribute", entity, "Dynamic"


# ---------------------------------------------------------------------------
# stack updates


@dataclass
class _Update:
    """What an update changed so far, so that a failure can be undone."""

    replaced: dict[str, Any] = field(default_factory=dict)  # logical id -> the old resource
    in_place: dict[str, dict[str, Any]] = field(default_factory=dict)  # -> old properties


def _load_template(
    resource_map: parsing.ResourceMap, template: dict[str, Any], parameters: Mapping[str, Any]
) -> None:
    """Point the resource map at a template and parameter values (as moto's update does)."""
    resource_map._template = template
    resource_map._resource_json_map = template.get("Resources") or {}
    resource_map.input_parameters = dict(parameters)
    resource_map.resolved_parameters = {}
    resource_map.load_mapping()
    resource_map.load_parameters()
    resource_map.load_conditions()


def creation_order(templates: Mapping[str, Any]) -> list[str]:
    """Logical ids with every resource after the resources it depends on."""
    return teardown_order(templates)[::-1]


def _without_tags(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in properties.items() if k != "Tags"}


def update_stack_resources(
    stack: Stack, template_body: str, template: dict[str, Any], parameters: Mapping[str, Any]
) -> None:
    """Apply a new template to a stack as CloudFormation does.

    New resources are created and changed ones updated (in place, or replaced: the new
    one is created, the old one deleted once everything succeeded); then the resources
    the template dropped are deleted (UPDATE_COMPLETE_CLEANUP_IN_PROGRESS). A failure
    undoes what the update did and ends in UPDATE_ROLLBACK_COMPLETE with the reason.
    """
    _validate_types(template)
    resource_map = stack.resource_map
    parameters = with_defaults(template, parameters)
    old_template = resource_map._template
    old_resources = dict(resource_map._resource_json_map)
    old_parameters = dict(stack.parameters)
    plan = {change.logical_id: change for change in plan_update(stack, template, parameters)}
    before = set(_created_resources(resource_map))
    _stack_event(stack, "UPDATE_IN_PROGRESS", "User Initiated")
    _load_template(resource_map, template, parameters)
    changes = _Update()
    try:
        with _live(resource_map):
            for logical_id in creation_order(resource_map._resource_json_map):
                planned = plan.get(logical_id)
                if planned is None or planned.action == "Remove":
                    continue
                if planned.action == "Add":
                    resource_map[logical_id]  # creates it (and what it needs) lazily
                else:
                    _update_resource(stack, resource_map, planned, changes)
            outputs = _outputs_of(stack, template)
    except Exception as exc:
        reason = (
            f"The following resource(s) failed to {exc.operation}: [{exc.logical_id}]. "
            if isinstance(exc, ResourceFailed)
            else _why(exc)  # an output that does not resolve, say
        )
        _roll_back_update(
            stack, reason, changes, before, old_template, old_resources, old_parameters
        )
        return
    stack.template = template_body
    stack.template_dict = template
    stack.parameters = parameters
    stack.description = template.get("Description")
    stack.output_map = parsing.OutputMap(resource_map, template, stack.stack_id)
    _state(stack).outputs = outputs
    _stack_event(stack, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS")
    # What the template dropped and what replacements superseded goes, in the old
    # template's order (that is where they are described). A failure here does not
    # fail the update, as on AWS: the resource is reported and left behind.
    created = resource_map._parsed_resources
    doomed = {
        logical_id: created.pop(logical_id)
        for logical_id, planned in plan.items()
        if planned.action == "Remove"
    }
    for logical_id in teardown_order(old_resources):
        if logical_id in doomed and doomed[logical_id] is not None:
            _delete_resource(stack, logical_id, doomed[logical_id], old_resources[logical_id])
        if logical_id in changes.replaced:
            _delete_resource(
                stack,
                logical_id,
                changes.replaced[logical_id],
                old_resources[logical_id],
                old_resources[logical_id].get("UpdateReplacePolicy", "Delete"),
            )
    _stack_event(stack, "UPDATE_COMPLETE")


def _outputs_of(stack: Stack, template: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The outputs `template` declares, evaluated on the stack's resources now."""
    current = stack.output_map, stack.template_dict
    stack.output_map = parsing.OutputMap(stack.resource_map, template, stack.stack_id)
    stack.template_dict = template
    try:
        return _original_outputs(stack)
    finally:
        stack.output_map, stack.template_dict = current


def _update_resource(
    stack: Stack, resource_map: parsing.ResourceMap, planned: ResourceChange, changes: _Update
) -> None:
    """Carry out one planned modification: replace the resource when the plan says
    Replacement "True" (or "Conditional" and the new values, known now, replace it),
    else change it in place."""
    logical_id = planned.logical_id
    resource_json = resource_map._resource_json_map[logical_id]
    resource_type = resource_json["Type"]
    old = resource_map._parsed_resources.get(logical_id)
    try:
        parsed = parsing.parse_resource_and_generate_name(logical_id, resource_json, resource_map)
    except ResourceFailed:
        raise
    except Exception as exc:
        _resource_event(stack, logical_id, resource_type, "UPDATE_FAILED", reason=_why(exc))
        raise ResourceFailed(logical_id, _why(exc), "update") from exc
    resource_class, cleaned, name = parsed
    old_id = str(getattr(old, "physical_resource_id", "") or "")
    _resource_event(stack, logical_id, resource_type, "UPDATE_IN_PROGRESS", physical_id=old_id)
    account_id, region = resource_map._account_id, resource_map._region_name
    new: Any
    try:
        FAULTS.trip(resource_type, "update")
        cleaned = resolve_dynamic_references(cleaned, account_id, region)
        properties = cleaned.get("Properties") or {}
        if isinstance(old, Provisioned) and getattr(old, "cf_resource_type", "") == resource_type:
            if planned.replacement == "True" or (
                planned.replacement == "Conditional"
                and provisioning.replaces(resource_type, old.properties, properties)
            ):
                new = provisioning.replace(old, properties, account_id, region)
            else:
                old_properties = dict(old.properties)
                new = _change_in_place(old, properties, account_id, region)
                changes.in_place[logical_id] = old_properties
        elif isinstance(old, Provisioned):  # the type changed: a new resource
            new = resource_class.create_from_cloudformation_json(
                name, cleaned, account_id, region, LogicalId=logical_id, StackId=stack.stack_id
            )
        else:  # a moto model the sandbox leaves to moto
            new = (
                parsing.parse_and_update_resource(
                    logical_id, resource_json, resource_map, account_id, region
                )
                or old
            )
    except Exception as exc:
        reason = failure_reason(exc)
        _resource_event(
            stack, logical_id, resource_type, "UPDATE_FAILED", physical_id=old_id, reason=reason
        )
        raise ResourceFailed(logical_id, reason, "update") from exc
    new.cf_resource_type = resource_type
    new.logical_resource_id = logical_id
    resource_map._parsed_resources[logical_id] = new
    if new is not old:
        changes.replaced[logical_id] = old
    new_id = str(getattr(new, "physical_resource_id", "") or "")
    _resource_event(stack, logical_id, resource_type, "UPDATE_COMPLETE", physical_id=new_id)


def _change_in_place(
    resource: Provisioned, properties: dict[str, Any], account_id: str, region: str
) -> Provisioned:
    if _without_tags(resource.properties) == _without_tags(properties):
        resource.properties = properties  # only tags (or nothing that resolves differently)
        return resource
    return provisioning.update_in_place(resource, properties, account_id, region)


def _roll_back_update(
    stack: Stack,
    reason: str,
    changes: _Update,
    before: set[str],
    old_template: dict[str, Any],
    old_resources: dict[str, Any],
    old_parameters: dict[str, Any],
) -> None:
    """Undo a failed update: put back what was updated in place, delete what was created
    (new resources and replacements), and keep the old template."""
    _stack_event(stack, "UPDATE_ROLLBACK_IN_PROGRESS", reason)
    resource_map = stack.resource_map
    new_resources = dict(resource_map._resource_json_map)
    created = resource_map._parsed_resources
    added = set(_created_resources(resource_map)) - before
    superseding = {logical_id: created[logical_id] for logical_id in changes.replaced}
    for logical_id, old in changes.replaced.items():
        created[logical_id] = old
    _load_template(resource_map, old_template, old_parameters)
    failed = []
    for logical_id in creation_order(old_resources):
        if logical_id in changes.in_place:
            resource = created[logical_id]
            resource_type = resource.cf_resource_type
            try:
                # What changed in place goes back in place.
                with _live(resource_map):
                    restored = _change_in_place(
                        resource,
                        changes.in_place[logical_id],
                        stack.account_id,
                        stack.region_name,
                    )
                created[logical_id] = restored
            except Exception as exc:
                _resource_event(
                    stack, logical_id, resource_type, "UPDATE_FAILED", reason=failure_reason(exc)
                )
                failed.append(logical_id)
    _stack_event(stack, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS")
    # What the update created goes, in the new template's order (it describes them all).
    doomed = {logical_id: created.pop(logical_id) for logical_id in added}
    doomed.update(superseding)
    leftovers = _state(stack).rollback_leftovers
    for logical_id in teardown_order(new_resources):
        resource = doomed.get(logical_id)
        if resource is not None and not _delete_resource(
            stack, logical_id, resource, new_resources[logical_id], "Delete"
        ):
            leftovers[logical_id] = (resource, new_resources[logical_id])
            failed.append(logical_id)
    if failed:
        _stack_event(
            stack,
            "UPDATE_ROLLBACK_FAILED",
            f"The following resource(s) failed to roll back: [{', '.join(failed)}]. ",
        )
    else:
        _stack_event(stack, "UPDATE_ROLLBACK_COMPLETE")


def continue_update_rollback(stack: Stack, resources_to_skip: Collection[str] = ()) -> None:
    """ContinueUpdateRollback: retry deleting what a failed update rollback left behind,
    skipping (and abandoning) `resources_to_skip`."""
    if stack.status != "UPDATE_ROLLBACK_FAILED":
        raise ValidationError(
            message=f"Stack {stack.name} is in {stack.status} state and can not continue "
            "update rollback; only UPDATE_ROLLBACK_FAILED stacks can."
        )
    _stack_event(stack, "UPDATE_ROLLBACK_IN_PROGRESS", "User Initiated")
    leftovers = _state(stack).rollback_leftovers
    for logical_id in list(leftovers):
        resource, resource_json = leftovers[logical_id]
        if logical_id in resources_to_skip or _delete_resource(
            stack, logical_id, resource, resource_json, "Delete"
        ):
            del leftovers[logical_id]
    if leftovers:
        _stack_event(
            stack,
            "UPDATE_ROLLBACK_FAILED",
            f"The following resource(s) failed to roll back: [{', '.join(leftovers)}]. ",
        )
    else:
        _stack_event(stack, "UPDATE_ROLLBACK_COMPLETE")


def _continue_update_rollback_response(
    self: cfn_responses.CloudFormationResponse,
) -> EmptyResult:
    stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
    continue_update_rollback(stack, self._get_param("ResourcesToSkip", []))
    return EmptyResult()


def _stack_update(
    self: Stack,
    template: str,
    role_arn: str | None = None,
    parameters: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
) -> None:
    update_stack_resources(self, template, Stack.parse_template(template), parameters or {})
    self.role_arn = role_arn
    if tags is not None:
        self.tags = tags


TEMPLATE_BODY_LIMIT = 51_200  # bytes CloudFormation accepts as TemplateBody


def _limit_template_body(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Refuse an inline template over CloudFormation's limit, as AWS does (moto takes any)."""

    def limited(self: cfn_responses.CloudFormationResponse) -> Any:
        body = self._get_param("TemplateBody")
        if body and len(body.encode()) > TEMPLATE_BODY_LIMIT:
            raise ValidationError(
                message="1 validation error detected: Value at 'templateBody' failed to "
                "satisfy constraint: Member must have length less than or equal to "
                f"{TEMPLATE_BODY_LIMIT}"
            )
        return method(self)

    limited.__name__ = method.__name__
    return limited


def _role_checked(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Refuse a RoleARN (the service role CloudFormation acts as) that does not exist or
    does not trust cloudformation.amazonaws.com, as AWS does before doing anything:
    "Role <arn> is invalid or cannot be assumed" (ValidationError). moto takes any ARN,
    which hid that the CDK CLI passes the CDK bootstrap's execution role
    (cdk-hnb659fds-cfn-exec-role-...) in accounts never bootstrapped."""

    def checked(self: cfn_responses.CloudFormationResponse) -> Any:
        from hivemind.sandbox.iam import RoleNotAssumable, role_trusting

        role_arn = self._get_param("RoleARN")
        if role_arn:
            try:
                role_trusting(self.current_account, role_arn, "cloudformation.amazonaws.com")
            except RoleNotAssumable:
                raise ValidationError(
                    message=f"Role {role_arn} is invalid or cannot be assumed"
                ) from None
        return method(self)

    checked.__name__ = method.__name__
    return checked


def _delete_stack_response(self: cfn_responses.CloudFormationResponse) -> EmptyResult:
    _backend_delete_stack(
        self.cloudformation_backend,
        self._get_param("StackName"),
        self._get_param("RetainResources", []),
    )
    return EmptyResult()


# ---------------------------------------------------------------------------


_installed = False


def install() -> None:
    """Patch moto's CloudFormation engine in this process (idempotent). Must run before
    moto's server handles its first request."""
    global _installed
    if _installed:
        return
    # Importing the resource modules registers their types.
    from hivemind.sandbox import resources  # noqa: F401

    provisioning.register()
    parser_functions: tuple[tuple[str, Callable[..., Any]], ...] = (
        ("parse_and_create_resource", _create_resource),
        ("clean_json", _clean_json),
        ("resource_class_from_type", _resource_class_from_type),
    )
    for name, function in parser_functions:
        patching.replace(parsing, name, function)
    patching.replace(parsing.ResourceMap, "__getitem__", _getitem)
    patching.replace(parsing.ResourceMap, "parse_ssm_parameter", _parse_ssm_parameter)
    patching.replace(Stack, "parse_template", staticmethod(_parse_template))
    patching.replace(ChangeSet, "_parse_template", _change_set_parse_template)
    patching.replace(Stack, "create_resources", _create_resources)
    patching.replace(Stack, "delete", _delete_stack)
    patching.replace(Stack, "update", _stack_update)
    patching.replace(Stack, "outputs", property(_outputs))
    patching.replace(Stack, "stack_resources", property(_stack_resources))
    patching.replace(Stack, "stack_parameters", property(_stack_parameters))
    backend_methods: tuple[tuple[str, Callable[..., Any]], ...] = (
        ("create_stack", _backend_create_stack),
        ("delete_stack", _backend_delete_stack),
        ("create_change_set", _create_change_set),
        ("execute_change_set", _execute_change_set),
        ("describe_change_set", _describe_change_set),
        ("delete_change_set", _delete_change_set),
    )
    for name, function in backend_methods:
        patching.replace(CloudFormationBackend, name, function)
    responses = cfn_responses.CloudFormationResponse
    for operation in ("CreateStack", "UpdateStack", "CreateChangeSet", "ValidateTemplate"):
        moto_handler = getattr(responses, patching.method_names("cloudformation", operation)[0])
        patching.serve(
            responses,
            "cloudformation",
            operation,
            _role_checked(_limit_template_body(moto_handler)),
        )
    for operation, handler in (
        ("DescribeChangeSet", _describe_change_set_response),
        ("DeleteChangeSet", _delete_change_set_response),
        ("ListChangeSets", _list_change_sets_response),
        ("ContinueUpdateRollback", _role_checked(_continue_update_rollback_response)),
        ("ListStackResources", _list_stack_resources),
        ("DeleteStack", _role_checked(_delete_stack_response)),
    ):
        patching.serve(responses, "cloudformation", operation, handler)
    patching.replace(cfn_responses.StackResourceDTO, "__init__", _dto_init)
    _installed = True
