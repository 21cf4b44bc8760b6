"""The sandbox's IAM resource types: roles (with managed and inline policies), inline
policies attached by their own resource, and instance profiles.

IAM refuses to delete a role that still has policies or sits in an instance
profile; deletion here undoes exactly what the resource itself did, and the
stack's dependency order deletes policies and profiles before their roles.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy, iam_backends

from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceFailed,
    ResourceType,
    as_json,
    implements,
    random_suffix,
    tag_list,
)


def _iam(ctx: Context) -> MotoBackend:
    return iam_backends[ctx.account_id][ctx.partition]


@functools.cache
def _aws_managed_policy_data() -> dict[str, Any]:
    return dict(json.loads(aws_managed_policies_data))


def ensure_aws_managed_policy(iam: MotoBackend, arn: str) -> None:
    """Make an AWS managed policy attachable. moto knows them all but loads none unless
    told to (loading every one costs seconds per account); this loads the one asked for.
    An ARN AWS does not define stays unknown, so attaching it fails as on AWS."""
    if arn in iam.managed_policies or ":iam::aws:policy/" not in arn:
        return
    name = arn.rsplit("/", 1)[-1]
    data = _aws_managed_policy_data().get(name)
    if data is None:
        return
    policy = AWSManagedPolicy.from_data(name, iam.account_id, iam.region_name, data)
    if policy.arn == arn:
        iam.aws_managed_policies.append(policy)
        iam.managed_policies[policy.arn] = policy


@implements
class Role(ResourceType):
    type_name = "AWS::IAM::Role"
    attributes = frozenset({"Arn", "RoleId"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        iam = _iam(ctx)
        name = properties.get("RoleName") or ctx.generated_name(64)
        _check_boundary(iam, ctx, properties.get("PermissionsBoundary"))
        role = iam.create_role(
            role_name=name,
            assume_role_policy_document=as_json(properties["AssumeRolePolicyDocument"]),
            path=properties.get("Path", "/"),
            permissions_boundary=properties.get("PermissionsBoundary"),
            description=properties.get("Description", ""),
            tags=tag_list(
                {k: v for k, v in ctx.tags(properties).items() if not k.startswith("aws:")}
            ),
            max_session_duration=properties.get("MaxSessionDuration"),
        )
        _attach_policies(iam, name, properties)

        def delete() -> None:
            for arn in list(role.managed_policies):
                iam.detach_role_policy(arn, name)
            for policy_name in list(role.policies):
                iam.delete_role_policy(name, policy_name)
            iam.delete_role(name)

        return Provisioned(
            name, delete=delete, native=role, attributes={"Arn": role.arn, "RoleId": role.id}
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if not all(old.properties.get(k) == properties.get(k) for k in ("RoleName", "Path")):
            return self.create(properties, ctx)
        iam = _iam(ctx)
        name = old.physical_resource_id
        role = old.native
        boundary = properties.get("PermissionsBoundary")
        _check_boundary(iam, ctx, boundary)
        role.permissions_boundary_arn = boundary or None
        role.assume_role_policy_document = as_json(properties["AssumeRolePolicyDocument"])
        role.description = properties.get("Description", "")
        # Only what the role's own properties attached: inline policies that separate
        # AWS::IAM::Policy resources put on it stay (IAM's UpdateRole, PutRolePermissions-
        # Boundary and the like leave a role's policies alone).
        for arn in old.properties.get("ManagedPolicyArns") or []:
            if arn in role.managed_policies:
                iam.detach_role_policy(arn, name)
        for policy in old.properties.get("Policies") or []:
            if policy["PolicyName"] in role.policies:
                iam.delete_role_policy(name, policy["PolicyName"])
        _attach_policies(iam, name, properties)
        return old


def _check_boundary(iam: MotoBackend, ctx: Context, arn: str | None) -> None:
    """A role's permissions boundary must be a managed policy that exists; IAM answers
    CreateRole / PutRolePermissionsBoundary otherwise with NoSuchEntity, "Scope ARN: <arn>
    does not exist or is not attachable." (moto only checks the ARN's shape)."""
    if not arn:
        return
    if arn.split(":")[4:5] == ["aws"]:
        ensure_aws_managed_policy(iam, arn)
    try:
        iam.get_policy(arn)
    except Exception as error:
        raise ResourceFailed(
            ctx.logical_id,
            f"Scope ARN: {arn} does not exist or is not attachable. (Service: Iam, Status "
            "Code: 404, Error Code: NoSuchEntity)",
        ) from error


def _attach_policies(iam: MotoBackend, role_name: str, properties: dict[str, Any]) -> None:
    for arn in properties.get("ManagedPolicyArns") or []:
        ensure_aws_managed_policy(iam, arn)
        iam.attach_role_policy(arn, role_name)
    for policy in properties.get("Policies") or []:
        iam.put_role_policy(role_name, policy["PolicyName"], as_json(policy["PolicyDocument"]))


@implements
class Policy(ResourceType):
    type_name = "AWS::IAM::Policy"
    attributes = frozenset({"Id"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        iam = _iam(ctx)
        name = properties["PolicyName"]
        document = as_json(properties["PolicyDocument"])
        roles = list(properties.get("Roles") or [])
        users = list(properties.get("Users") or [])
        groups = list(properties.get("Groups") or [])
        for role in roles:
            iam.put_role_policy(role, name, document)
        for user in users:
            iam.put_user_policy(user, name, document)
        for group in groups:
            iam.put_group_policy(group, name, document)

        def delete() -> None:
            for role in roles:
                iam.delete_role_policy(role, name)
            for user in users:
                iam.delete_user_policy(user, name)
            for group in groups:
                iam.delete_group_policy(group, name)

        # CloudFormation names an inline policy resource by a generated id.
        physical_id = f"{ctx.stack_name[:5]}-{name[:4]}-{random_suffix(12)}"
        return Provisioned(physical_id, delete=delete, attributes={"Id": physical_id})

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # Detaching from the old principals and attaching to the new is an update in place.
        old.delete(ctx.account_id, ctx.region)
        new = self.create(properties, ctx)
        return old.rebind(delete=lambda: new.delete(ctx.account_id, ctx.region))


@implements
class InstanceProfile(ResourceType):
    type_name = "AWS::IAM::InstanceProfile"
    attributes = frozenset({"Arn"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        iam = _iam(ctx)
        name = properties.get("InstanceProfileName") or ctx.generated_name(128)
        roles = list(properties.get("Roles") or [])
        profile = iam.create_instance_profile(name, properties.get("Path", "/"), roles)

        def delete() -> None:
            for role in roles:
                iam.remove_role_from_instance_profile(name, role)
            iam.delete_instance_profile(name)

        return Provisioned(name, delete=delete, native=profile, attributes={"Arn": profile.arn})

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if not all(
            old.properties.get(k) == properties.get(k) for k in ("InstanceProfileName", "Path")
        ):
            return self.create(properties, ctx)
        iam = _iam(ctx)
        name = old.physical_resource_id
        before, after = list(old.properties.get("Roles") or []), list(properties.get("Roles") or [])
        for role in before:
            if role not in after:
                iam.remove_role_from_instance_profile(name, role)
        for role in after:
            if role not in before:
                iam.add_role_to_instance_profile(name, role)

        def delete() -> None:
            for role in after:
                iam.remove_role_from_instance_profile(name, role)
            iam.delete_instance_profile(name)

        return old.rebind(delete=delete)


# ---------------------------------------------------------------------------
# roles given to services: who may assume them


class RoleNotAssumable(Exception):
    """A role that does not exist, or whose trust policy does not let the principal in."""


def role_trusting(account_id: str, role_arn: str, service: str | None = None) -> Any:
    """The role `role_arn` of `account_id` (moto's), when it exists and, with `service`
    (e.g. cloudformation.amazonaws.com), its trust policy allows that service
    sts:AssumeRole; RoleNotAssumable otherwise. (Conditions in the trust policy are not
    evaluated: the sandbox enforces no IAM.)"""
    parts = role_arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
        raise RoleNotAssumable(f"{role_arn} is not a role ARN")
    if parts[4] != account_id:
        raise RoleNotAssumable(f"{role_arn} is not in the sandbox's account {account_id}")
    try:
        role = iam_backends[account_id][parts[1]].get_role_by_arn(role_arn)
    except Exception as error:  # moto's IAMNotFoundException
        raise RoleNotAssumable(f"{role_arn} does not exist") from error
    if service is not None and not _trusts(role.assume_role_policy_document, service):
        raise RoleNotAssumable(f"{role_arn}'s trust policy does not allow {service}")
    return role


def _trusts(document: Any, service: str) -> bool:
    policy = json.loads(document) if isinstance(document, str) else dict(document or {})
    statements = policy.get("Statement") or []
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = statement.get("Action") or []
        actions = actions if isinstance(actions, list) else [actions]
        services = (statement.get("Principal") or {}).get("Service") or []
        services = services if isinstance(services, list) else [services]
        if (
            statement.get("Effect") == "Allow"
            and any(a in ("sts:AssumeRole", "sts:*", "*") for a in actions)
            and service in services
        ):
            return True
    return False


def _assume_role(self: Any, **arguments: Any) -> Any:
    """STS AssumeRole of a role that exists. AWS refuses one that does not (as any role
    whose trust policy does not name the caller) with AccessDenied; moto's assumes any
    ARN, which hid that the CDK CLI asked for the CDK bootstrap's deploy role in an
    account never bootstrapped."""
    from moto.sts.exceptions import STSClientError

    role_arn = str(arguments["role_arn"])
    account_id = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ""
    try:
        role_trusting(account_id, role_arn)
    except RoleNotAssumable:
        raise STSClientError(
            "AccessDenied",
            f"User: arn:aws:sts::{account_id}:user/moto is not authorized to perform: "
            f"sts:AssumeRole on resource: {role_arn}",
        ) from None
    return _MOTO_ASSUME_ROLE(self, **arguments)


def _install() -> None:
    from moto.sts.models import STSBackend

    from hivemind.sandbox import patching

    global _MOTO_ASSUME_ROLE
    if _MOTO_ASSUME_ROLE is None:
        _MOTO_ASSUME_ROLE = STSBackend.assume_role
    patching.replace(STSBackend, "assume_role", _assume_role)


_MOTO_ASSUME_ROLE: Any = None
_install()
