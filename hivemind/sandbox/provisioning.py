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
"""

from __future__ import annotations

import json
import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

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

    `update` applies changed properties. Returning `old` means updated in place;
    returning a new `Provisioned` means replaced, and the engine deletes `old`
    once the whole stack update succeeded (CloudFormation's order: the new
    resource exists before the old one goes). The default replaces.
    """

    type_name: ClassVar[str]
    attributes: ClassVar[frozenset[str]] = frozenset()

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        raise NotImplementedError

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        return self.create(properties, ctx)


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
        old_ctx = original_resource.context
        assert old_ctx is not None, "every Provisioned gets its context when created"
        ctx = _context(account_id, region_name, old_ctx.stack_id, old_ctx.logical_id)
        properties = cloudformation_json.get("Properties") or {}
        resource = resource_type.update(original_resource, properties, ctx)
        resource.context, resource.properties = ctx, properties
        return resource

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


def _context(account_id: str, region: str, stack_id: str, logical_id: str) -> Context:
    from moto.cloudformation.models import cloudformation_backends

    # arn:aws:cloudformation:<region>:<account>:stack/<name>/<uuid>
    stack_name = stack_id.split("/")[1] if stack_id.count("/") >= 2 else stack_id
    stack = cloudformation_backends[account_id][region].stacks.get(stack_id)
    stack_tags = dict(stack.tags or {}) if stack is not None else {}
    return Context(account_id, region, stack_id, stack_name, logical_id, stack_tags)
