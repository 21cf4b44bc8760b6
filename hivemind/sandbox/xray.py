"""X-Ray groups and sampling rules for the sandbox.

moto implements X-Ray's trace APIs only. This module keeps groups and sampling
rules (per account and region, in the server's memory), serves their API
(CreateGroup, GetGroup, GetGroups, UpdateGroup, DeleteGroup, CreateSamplingRule,
GetSamplingRules, UpdateSamplingRule, DeleteSamplingRule) on moto's X-Ray
endpoint, and implements `AWS::XRay::Group` and `AWS::XRay::SamplingRule`.
Like AWS, every account has a `Default` group and a `Default` sampling rule.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from moto.xray.responses import XRayResponse

from hivemind.sandbox import patching
from hivemind.sandbox.provisioning import (
    Context,
    Provisioned,
    ResourceType,
    implements,
    random_suffix,
)

_DEFAULT_RULE = {
    "RuleName": "Default",
    "Priority": 10000,
    "FixedRate": 0.05,
    "ReservoirSize": 1,
    "ServiceName": "*",
    "ServiceType": "*",
    "Host": "*",
    "HTTPMethod": "*",
    "URLPath": "*",
    "ResourceARN": "*",
    "Version": 1,
    "Attributes": {},
}


class XRayError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class XRayStore:
    """The X-Ray groups and sampling rules of one account and region."""

    account_id: str
    region: str
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)

    def _arn(self, resource: str) -> str:
        return f"arn:aws:xray:{self.region}:{self.account_id}:{resource}"

    def default_group(self) -> dict[str, Any]:
        return {
            "GroupName": "Default",
            "GroupARN": self._arn("group/Default"),
            "FilterExpression": "",
            "InsightsConfiguration": {"InsightsEnabled": False, "NotificationsEnabled": False},
        }

    def default_rule(self) -> dict[str, Any]:
        return {**_DEFAULT_RULE, "RuleARN": self._arn("sampling-rule/Default")}

    def create_group(
        self, name: str, filter_expression: str | None, insights: dict[str, Any] | None
    ) -> dict[str, Any]:
        if name == "Default" or name in self.groups:
            raise XRayError("InvalidRequestException", f"Group {name} already exists")
        group = {
            "GroupName": name,
            "GroupARN": self._arn(f"group/{name}/{random_suffix(32).upper()}"),
            "FilterExpression": filter_expression or "",
            "InsightsConfiguration": insights
            or {"InsightsEnabled": False, "NotificationsEnabled": False},
        }
        self.groups[name] = group
        return group

    def group(self, name: str | None, arn: str | None) -> dict[str, Any]:
        for group in [self.default_group(), *self.groups.values()]:
            if group["GroupName"] == name or group["GroupARN"] == arn:
                return group
        raise XRayError("InvalidRequestException", f"Group not found: {name or arn}")

    def delete_group(self, name: str | None, arn: str | None) -> None:
        group = self.group(name, arn)
        if group["GroupName"] == "Default":
            raise XRayError("InvalidRequestException", "The Default group cannot be deleted")
        del self.groups[group["GroupName"]]

    def create_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        name = rule.get("RuleName")
        if not name or name == "Default" or name in self.rules:
            raise XRayError("InvalidRequestException", f"Sampling rule {name} already exists")
        record = {
            "SamplingRule": {
                "Attributes": {},
                **rule,
                "RuleARN": self._arn(f"sampling-rule/{name}"),
            },
            "CreatedAt": time.time(),
            "ModifiedAt": time.time(),
        }
        self.rules[name] = record
        return record

    def rule(self, name: str | None, arn: str | None) -> dict[str, Any]:
        for record in self.rules.values():
            if (
                record["SamplingRule"]["RuleName"] == name
                or record["SamplingRule"]["RuleARN"] == arn
            ):
                return record
        raise XRayError("InvalidRequestException", f"Sampling rule not found: {name or arn}")

    def delete_rule(self, name: str | None, arn: str | None) -> dict[str, Any]:
        record = self.rule(name, arn)
        del self.rules[record["SamplingRule"]["RuleName"]]
        return record

    def rule_records(self) -> list[dict[str, Any]]:
        default = {"SamplingRule": self.default_rule(), "CreatedAt": 0.0, "ModifiedAt": 0.0}
        return [*self.rules.values(), default]


_STORES: dict[tuple[str, str], XRayStore] = {}
_LOCK = threading.RLock()


def store(account_id: str, region: str) -> XRayStore:
    """The X-Ray groups and rules of an account and region."""
    with _LOCK:
        key = (account_id, region)
        if key not in _STORES:
            _STORES[key] = XRayStore(account_id, region)
        return _STORES[key]


def forget_all() -> None:
    """Forget every account's groups and rules (the sandbox's reset)."""
    with _LOCK:
        _STORES.clear()


def _answer(response: XRayResponse, action: Any) -> str | tuple[str, dict[str, Any]]:
    try:
        with _LOCK:
            return json.dumps(action(store(response.current_account, response.region)))
    except XRayError as error:
        return response._error(error.code, error.message)


def _create_group(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    param = response._get_param
    return _answer(
        response,
        lambda s: {
            "Group": s.create_group(
                param("GroupName"), param("FilterExpression"), param("InsightsConfiguration")
            )
        },
    )


def _get_group(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    param = response._get_param
    return _answer(response, lambda s: {"Group": s.group(param("GroupName"), param("GroupARN"))})


def _get_groups(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    return _answer(response, lambda s: {"Groups": [s.default_group(), *s.groups.values()]})


def _update_group(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    param = response._get_param

    def update(s: XRayStore) -> dict[str, Any]:
        group = s.group(param("GroupName"), param("GroupARN"))
        for key in ("FilterExpression", "InsightsConfiguration"):
            if param(key) is not None:
                group[key] = param(key)
        return {"Group": group}

    return _answer(response, update)


def _delete_group(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    param = response._get_param
    return _answer(response, lambda s: s.delete_group(param("GroupName"), param("GroupARN")) or {})


def _create_sampling_rule(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    rule = response._get_param("SamplingRule")
    return _answer(response, lambda s: {"SamplingRuleRecord": s.create_rule(rule)})


def _get_sampling_rules(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    return _answer(response, lambda s: {"SamplingRuleRecords": s.rule_records()})


def _update_sampling_rule(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    def update(s: XRayStore) -> dict[str, Any]:
        change = dict(response._get_param("SamplingRuleUpdate") or {})
        record = s.rule(change.pop("RuleName", None), change.pop("RuleARN", None))
        record["SamplingRule"].update(change)
        record["ModifiedAt"] = time.time()
        return {"SamplingRuleRecord": record}

    return _answer(response, update)


def _delete_sampling_rule(response: XRayResponse) -> str | tuple[str, dict[str, Any]]:
    param = response._get_param
    return _answer(
        response,
        lambda s: {"SamplingRuleRecord": s.delete_rule(param("RuleName"), param("RuleARN"))},
    )


_OPERATIONS = {
    "CreateGroup": _create_group,
    "GetGroup": _get_group,
    "GetGroups": _get_groups,
    "UpdateGroup": _update_group,
    "DeleteGroup": _delete_group,
    "CreateSamplingRule": _create_sampling_rule,
    "GetSamplingRules": _get_sampling_rules,
    "UpdateSamplingRule": _update_sampling_rule,
    "DeleteSamplingRule": _delete_sampling_rule,
}


def install_api() -> None:
    """Serve the group and sampling-rule API on moto's X-Ray endpoint (idempotent)."""
    for operation, handler in _OPERATIONS.items():
        patching.serve(XRayResponse, "xray", operation, handler)


@implements
class Group(ResourceType):
    type_name = "AWS::XRay::Group"
    attributes = frozenset({"GroupARN"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        xray = store(ctx.account_id, ctx.region)
        with _LOCK:
            group = xray.create_group(
                properties["GroupName"],
                properties.get("FilterExpression"),
                properties.get("InsightsConfiguration"),
            )
        arn = group["GroupARN"]

        def delete() -> None:
            with _LOCK:
                xray.delete_group(None, arn)

        return Provisioned(arn, delete=delete, attributes={"GroupARN": arn})

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if properties["GroupName"] != old.properties.get("GroupName"):
            return self.create(properties, ctx)
        with _LOCK:
            group = store(ctx.account_id, ctx.region).group(None, old.physical_resource_id)
            group["FilterExpression"] = properties.get("FilterExpression") or ""
            if properties.get("InsightsConfiguration") is not None:
                group["InsightsConfiguration"] = properties["InsightsConfiguration"]
        return old


@implements
class SamplingRule(ResourceType):
    type_name = "AWS::XRay::SamplingRule"
    attributes = frozenset({"RuleARN", "RuleName"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        xray = store(ctx.account_id, ctx.region)
        rule = dict(properties.get("SamplingRule") or {})
        rule.setdefault("RuleName", ctx.generated_name(32))
        rule.setdefault("Version", 1)
        with _LOCK:
            record = xray.create_rule(rule)
        arn = record["SamplingRule"]["RuleARN"]

        def delete() -> None:
            with _LOCK:
                xray.delete_rule(None, arn)

        return Provisioned(
            arn, delete=delete, attributes={"RuleARN": arn, "RuleName": rule["RuleName"]}
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        rule = dict(properties.get("SamplingRule") or {})
        if rule.get("RuleName", old.attributes["RuleName"]) != old.attributes["RuleName"]:
            return self.create(properties, ctx)
        with _LOCK:
            record = store(ctx.account_id, ctx.region).rule(None, old.physical_resource_id)
            record["SamplingRule"].update(rule)
            record["ModifiedAt"] = time.time()
        return old
