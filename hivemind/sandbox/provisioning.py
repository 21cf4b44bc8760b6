"""How the sandbox creates and deletes one CloudFormation resource.

moto's CloudFormation engine looks a resource type up among the *direct*
subclasses of `CloudFormationModel` and silently skips any type it does not
find; many of the types it does know never delete anything or ignore half of
their properties. The sandbox therefore brings its own implementation of every
type HiveMind's stacks use: a `ResourceType` creates the resource through
moto's service backends (the same objects moto's API serves, so boto3 and the
CDK CLI see what the stack made) and returns a `Provisioned` that knows its
physical id, its `Fn::GetAtt` attributes and how to delete it.

`register()` wraps each `ResourceType` in a generated direct subclass of
`CloudFormationModel`, which is the only shape moto's engine accepts.

Whether an update replaces a resource or changes it in place is decided in one
place for every type, `replacement_rules` (what CloudFormation's registry schema of
the type says always or conditionally replaces) with the type's `replaces_when` for
the conditional ones; a type's `update` only ever applies changes in place. The
stack engine's change sets describe updates with the same rules, so what
DescribeChangeSet says and what the update does cannot disagree.
"""

from __future__ import annotations

import functools
import json
import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel

# moto's service backends are annotated, but the annotations do not describe the API
# they serve: nearly every optional parameter is declared `str` and receives None from
# moto's own request handlers. Calls into them are typed `Any` (MotoBackend) and checked
# by the sandbox's tests against real templates instead.
MotoBackend = Any


class ResourceFailed(Exception):
    """A resource could not be created (or updated); `reason` is CloudFormation's status
    reason for it."""

    def __init__(self, logical_id: str, reason: str, operation: str = "create") -> None:
        super().__init__(f"{logical_id}: {reason}")
        self.logical_id = logical_id
        self.reason = reason
        self.operation = operation


class DependencyViolation(Exception):
    """What AWS answers when something still uses the resource being deleted."""

    code = "DependencyViolation"


@dataclass(frozen=True)
class Context:
    """Where a resource is created: the account, region, stack and logical id."""

    account_id: str
    region: str
    stack_id: str
    stack_name: str
    logical_id: str
    stack_tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def partition(self) -> str:
        return "aws-cn" if self.region.startswith("cn-") else "aws"

    def arn(self, service: str, resource: str, *, region: str | None = None) -> str:
        region = self.region if region is None else region
        return f"arn:{self.partition}:{service}:{region}:{self.account_id}:{resource}"

    def tags(self, properties: Mapping[str, Any]) -> dict[str, str]:
        """The tags CloudFormation puts on a resource: the stack's, the template's and its own
        `aws:cloudformation:*` tags (later ones win)."""
        tags = dict(self.stack_tags)
        tags.update(tag_dict(properties.get("Tags")))
        tags.update(
            {
                "aws:cloudformation:stack-name": self.stack_name,
                "aws:cloudformation:stack-id": self.stack_id,
                "aws:cloudformation:logical-id": self.logical_id,
            }
        )
        return tags

    def generated_name(self, max_length: int, *, lower: bool = False, sep: str = "-") -> str:
        """A name like CloudFormation's for resources the template leaves unnamed:
        `<stack>-<logical id>-<random>`, cut to fit `max_length`."""
        suffix = random_suffix(12 if max_length > 40 else 8, lower=lower)
        prefix = f"{self.stack_name}{sep}{self.logical_id}"
        prefix = prefix[: max_length - len(suffix) - 1].rstrip("-_")
        name = f"{prefix}{sep}{suffix}"
        return name.lower() if lower else name


def random_suffix(length: int = 12, *, lower: bool = False) -> str:
    alphabet = string.ascii_lowercase + string.digits
    if not lower:
        alphabet += string.ascii_uppercase
    return "".join(secrets.choice(alphabet) for _ in range(length))


def tag_dict(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tags or ()}


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def as_bool(value: Any, default: bool = False) -> bool:
    """CloudFormation passes booleans as JSON booleans or as the strings "true"/"false"."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def as_json(value: Any) -> str:
    """Policy documents and similar arrive as objects or as JSON text."""
    return value if isinstance(value, str) else json.dumps(value)


def name_from_arn(arn: str) -> str:
    return arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1]


class Provisioned:
    """A resource the sandbox created for a stack.

    Speaks the protocol moto's engine expects of a created resource:
    `physical_resource_id` (what `Ref` returns), `get_cfn_attribute`
    (`Fn::GetAtt`), `is_created()` and `delete(account_id, region)`.
    """

    # Set by moto's engine after creation.
    logical_resource_id: str
    cf_resource_type: str

    def __init__(
        self,
        physical_id: str,
        *,
        delete: Callable[[], object],
        attributes: Mapping[str, Any] | None = None,
        delete_with_snapshot: Callable[[], object] | None = None,
        native: Any = None,
    ) -> None:
        self._physical_id = physical_id
        self._delete = delete
        self._delete_with_snapshot = delete_with_snapshot
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.native = native  # the moto object, for resources that build on each other
        # Set by the engine: where it was created and the properties it has now.
        self.context: Context | None = None
        self.properties: dict[str, Any] = {}

    @property
    def physical_resource_id(self) -> str:
        return self._physical_id

    def get_cfn_attribute(self, name: str) -> Any:
        if name not in self.attributes:
            raise UnformattedGetAttTemplateException()
        return self.attributes[name]

    def is_created(self) -> bool:
        return True

    def delete(self, account_id: str, region: str) -> None:
        self._delete()

    def rebind(
        self,
        *,
        physical_id: str | None = None,
        delete: Callable[[], object] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Provisioned:
        """After an update in place: what the resource is now called, how it is deleted and
        what `Fn::GetAtt` answers (what is not given stays)."""
        if physical_id is not None:
            self._physical_id = physical_id
        if delete is not None:
            self._delete = delete
        if attributes is not None:
            self.attributes.update(attributes)
        return self

    def delete_keeping_snapshot(self) -> bool:
        """Delete honouring `DeletionPolicy: Snapshot`; False when this type keeps no snapshot
        (CloudFormation then simply deletes it)."""
        if self._delete_with_snapshot is None:
            return False
        self._delete_with_snapshot()
        return True

    def __repr__(self) -> str:
        return f"Provisioned({getattr(self, 'cf_resource_type', '?')} {self._physical_id})"


class ResourceType:
    """One CloudFormation resource type the sandbox implements.

    Subclasses set `type_name` and the `attributes` `Fn::GetAtt` may ask for,
    and implement `create`, which returns a `Provisioned` that can delete
    what it made.

    Which changes replace the resource is not the type's to decide: the engine
    replaces it (a new one from `create`, the old one deleted once the whole stack
    update succeeded) when `replacement_rules` say so, asking `replaces_when` about
    the properties CloudFormation replaces for only under conditions. Every other
    change goes to `update`, which applies it in place and returns `old`.
    """

    type_name: ClassVar[str]
    attributes: ClassVar[frozenset[str]] = frozenset()
    # The property that names the resource when a template names it: CloudFormation
    # cannot replace a resource whose custom name stays (the new one would need it).
    name_property: ClassVar[str | None] = None

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        raise NotImplementedError

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        """Apply `properties` to `old` in place and return `old` (rebound where an id or
        attribute changed). The default cannot: the update fails saying so, rather than
        replacing a resource CloudFormation would keep."""
        changed = sorted(
            k
            for k in set(old.properties) | set(properties)
            if old.properties.get(k) != properties.get(k)
        )
        raise ResourceFailed(
            ctx.logical_id,
            f"The sandbox cannot update {self.type_name} {old.physical_resource_id} in "
            f"place ({', '.join(changed)}); CloudFormation would, without replacing it",
            "update",
        )

    def replaces_when(self, name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        """Whether changing `name`, a property CloudFormation replaces this type for only
        under conditions, replaces the resource going from properties `old` to `new`.
        The default: never (`update` applies it in place)."""
        return False


Recreation = Literal["Never", "Conditionally", "Always"]

# Whose registry schemas say which properties replace: the rules are the same in every
# region, and us-east-1 has every type.
_SCHEMA_REGION = "us-east-1"
_NOT_GIVEN: Any = object()


@dataclass(frozen=True)
class ReplacementRules:
    """Which property changes make CloudFormation replace a resource of one type, from the
    type's CloudFormation registry schema (the source of the resource reference's "Update
    requires: Replacement"): `createOnlyProperties` always replace, and
    `conditionalCreateOnlyProperties` replace under conditions of the type's handler. A
    rule's path is a property, or a part of one (`SamplingRule/Version`).

    `known` is False for a type without a schema and for one the sandbox leaves to moto
    (whose updates the sandbox does not decide): any change to it may replace it.
    """

    always: frozenset[tuple[str, ...]] = frozenset()
    conditionally: frozenset[tuple[str, ...]] = frozenset()
    known: bool = True

    def recreation(self, name: str, old: Any = _NOT_GIVEN, new: Any = _NOT_GIVEN) -> Recreation:
        """How a change of property `name` updates the resource. With its values before and
        after, a rule on a part of the property counts only when that part changed."""
        if not self.known:
            return "Conditionally"
        verdicts: tuple[tuple[frozenset[tuple[str, ...]], Recreation], ...] = (
            (self.always, "Always"),
            (self.conditionally, "Conditionally"),
        )
        for paths, verdict in verdicts:
            for path in paths:
                if path[0] != name:
                    continue
                if (
                    len(path) == 1
                    or old is _NOT_GIVEN
                    or _part(old, path[1:]) != _part(new, path[1:])
                ):
                    return verdict
        return "Never"

    def changes(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Recreation]:
        """Every property that differs from `old` to `new` (absent counts as a value, as
        on AWS), with how its change updates the resource."""
        return {
            name: self.recreation(name, old.get(name), new.get(name))
            for name in sorted(set(old) | set(new))
            if old.get(name) != new.get(name)
        }


def _part(value: Any, path: tuple[str, ...]) -> Any:
    for index, key in enumerate(path):
        if key == "*" and isinstance(value, list):
            return [_part(item, path[index + 1 :]) for item in value]
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


@functools.cache
def replacement_rules(type_name: str) -> ReplacementRules:
    """The replacement rules of `type_name` (see `ReplacementRules`)."""
    if type_name not in implemented_types():
        return ReplacementRules(known=False)  # moto updates it as moto does
    # cfn-lint carries AWS's published registry schemas; importing it takes a second.
    from cfnlint.schema import (  # type: ignore[import-untyped]
        PROVIDER_SCHEMA_MANAGER,
        ResourceNotFoundError,
    )

    try:
        schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(_SCHEMA_REGION, type_name).schema
    except ResourceNotFoundError:
        return ReplacementRules(known=False)

    def paths(key: str) -> frozenset[tuple[str, ...]]:
        pointers = schema.get(key) or []
        return frozenset(
            tuple(str(p).removeprefix("/properties/").split("/"))
            for p in pointers
            if str(p).startswith("/properties/")
        )

    return ReplacementRules(paths("createOnlyProperties"), paths("conditionalCreateOnlyProperties"))


def replaces(type_name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Whether updating a resource the sandbox implements from properties `old` to `new`
    (resolved) replaces it: a property that always replaces changed, or one that
    replaces under conditions did and its type says the condition holds."""
    resource_type = _REGISTRY[type_name]
    return any(
        recreation == "Always"
        or (recreation == "Conditionally" and resource_type.replaces_when(name, old, new))
        for name, recreation in replacement_rules(type_name).changes(old, new).items()
    )


def replace(
    old: Provisioned, properties: dict[str, Any], account_id: str, region: str
) -> Provisioned:
    """A new resource to replace `old` with (the engine deletes `old` once the stack update
    succeeded); refused, as CloudFormation refuses, when its custom name would stay."""
    resource_type = _REGISTRY[old.cf_resource_type]
    ctx = _context_of(old, account_id, region)
    name_property = resource_type.name_property
    name = properties.get(name_property) if name_property else None
    if name and name == old.properties.get(name_property or ""):
        raise ResourceFailed(
            ctx.logical_id,
            "CloudFormation cannot update a stack when a custom-named resource requires "
            f"replacing. Rename {name} and update the stack again.",
            "update",
        )
    resource = resource_type.create(properties, ctx)
    resource.context, resource.properties = ctx, properties
    return resource


def update_in_place(
    old: Provisioned, properties: dict[str, Any], account_id: str, region: str
) -> Provisioned:
    """Apply `properties` to `old` without replacing it (what the rules decided)."""
    resource_type = _REGISTRY[old.cf_resource_type]
    ctx = _context_of(old, account_id, region)
    resource = resource_type.update(old, properties, ctx)
    if resource is not old:
        # A type's update must not replace: the change set said this change keeps the
        # resource, and the stack would now hold a resource nobody planned.
        raise RuntimeError(
            f"{type(resource_type).__name__}.update replaced {old.physical_resource_id} "
            "for a change CloudFormation applies in place"
        )
    resource.context, resource.properties = ctx, properties
    return resource


_REGISTRY: dict[str, ResourceType] = {}
_MODELS: dict[str, type[CloudFormationModel]] = {}


def implements(cls: type[ResourceType]) -> type[ResourceType]:
    """Class decorator: the sandbox implements `cls.type_name` with `cls`."""
    _REGISTRY[cls.type_name] = cls()
    return cls


def implemented_types() -> frozenset[str]:
    """Every resource type the sandbox implements itself."""
    from hivemind.sandbox import resources  # noqa: F401  (registers them all)

    return frozenset(_REGISTRY)


def register() -> None:
    """Give moto's CloudFormation engine a model class for every implemented type.

    Idempotent. moto caches its model lookups, so they are cleared afterwards.
    """
    from moto.cloudformation import parsing

    for type_name, resource_type in _REGISTRY.items():
        if type_name not in _MODELS:
            _MODELS[type_name] = _model_class(resource_type)
    parsing.get_model_list.cache_clear()
    parsing.get_model_map.cache_clear()
    parsing.get_name_type_map.cache_clear()


def _model_class(resource_type: ResourceType) -> type[CloudFormationModel]:
    type_name = resource_type.type_name

    def cloudformation_type() -> str:
        return type_name

    def cloudformation_name_type() -> str:
        # Names are chosen by each ResourceType, never by moto's name generator.
        return ""

    def has_cfn_attr(cls: type, /, attr: str) -> bool:
        return attr in resource_type.attributes

    def create_from_cloudformation_json(
        cls: type,
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Provisioned:
        ctx = _context(account_id, region_name, kwargs["StackId"], kwargs["LogicalId"])
        properties = cloudformation_json.get("Properties") or {}
        resource = resource_type.create(properties, ctx)
        resource.context, resource.properties = ctx, properties
        return resource

    def update_from_cloudformation_json(
        cls: type,
        /,
        original_resource: Provisioned,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Provisioned:
        properties = cloudformation_json.get("Properties") or {}
        if replaces(type_name, original_resource.properties, properties):
            return replace(original_resource, properties, account_id, region_name)
        return update_in_place(original_resource, properties, account_id, region_name)

    def delete_from_cloudformation_json(
        cls: type,
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        # Deletion goes through Provisioned.delete; moto only falls back to this for
        # objects that have no delete method, which Provisioned always has.
        return None

    def is_created(self: Any) -> bool:
        return True

    namespace = {
        # moto's model registry keys models by the second part of the module name.
        "__module__": __name__,
        "__doc__": f"The sandbox's {type_name} (see {type(resource_type).__name__}).",
        "cloudformation_type": staticmethod(cloudformation_type),
        "cloudformation_name_type": staticmethod(cloudformation_name_type),
        "has_cfn_attr": classmethod(has_cfn_attr),
        "create_from_cloudformation_json": classmethod(create_from_cloudformation_json),
        "update_from_cloudformation_json": classmethod(update_from_cloudformation_json),
        "delete_from_cloudformation_json": classmethod(delete_from_cloudformation_json),
        "is_created": is_created,
    }
    class_name = "Sandbox" + re.sub(r"\W", "", type_name.removeprefix("AWS::"))
    return type(class_name, (CloudFormationModel,), namespace)


def _context_of(resource: Provisioned, account_id: str, region: str) -> Context:
    """Where `resource` is being updated: its stack and logical id, the stack's tags now."""
    created = resource.context
    assert created is not None, "every Provisioned gets its context when created"
    return _context(account_id, region, created.stack_id, created.logical_id)


def _context(account_id: str, region: str, stack_id: str, logical_id: str) -> Context:
    from moto.cloudformation.models import cloudformation_backends

    # arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>
    stack_name = stack_id.split("/")[1] if stack_id.count("/") >= 2 else stack_id
    stack = cloudformation_backends[account_id][region].stacks.get(stack_id)
    stack_tags = dict(stack.tags or {}) if stack is not None else {}
    return Context(account_id, region, stack_id, stack_name, logical_id, stack_tags)
