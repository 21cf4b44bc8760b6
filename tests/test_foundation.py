"""The account's permissions boundary, hivemind-boundary: created once on confirmation,
brought to this HiveMind's document when it differs, and refused clearly."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import botocore.exceptions
import pytest

from hivemind import foundation
from hivemind.errors import RefusedError

ARN = "arn:aws:iam::123456789012:policy/hivemind-boundary"


def _error(code: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": code}}, "Op")


class _IAM:
    """IAM's managed-policy calls, as far as `ensure` makes them."""

    def __init__(self, document: dict[str, Any] | None, versions: int = 1) -> None:
        self.versions = (
            [
                {
                    "VersionId": f"v{n}",
                    "IsDefaultVersion": n == versions,
                    "CreateDate": dt.datetime(2026, 1, n, tzinfo=dt.UTC),
                    "Document": document,
                }
                for n in range(1, versions + 1)
            ]
            if document is not None
            else []
        )
        self.calls: list[str] = []
        self.deny_create = False

    def get_policy(self, PolicyArn: str) -> dict[str, Any]:
        self.calls.append("GetPolicy")
        if not self.versions:
            raise _error("NoSuchEntity")
        default = next(v for v in self.versions if v["IsDefaultVersion"])
        return {"Policy": {"Arn": PolicyArn, "DefaultVersionId": default["VersionId"]}}

    def get_policy_version(self, PolicyArn: str, VersionId: str) -> dict[str, Any]:
        self.calls.append("GetPolicyVersion")
        version = next(v for v in self.versions if v["VersionId"] == VersionId)
        return {"PolicyVersion": {"Document": json.dumps(version["Document"])}}

    def create_policy(self, **arguments: Any) -> dict[str, Any]:
        self.calls.append("CreatePolicy")
        if self.deny_create:
            raise _error("AccessDenied")
        assert arguments["PolicyName"] == "hivemind-boundary"
        self.versions = [
            {
                "VersionId": "v1",
                "IsDefaultVersion": True,
                "CreateDate": dt.datetime.now(dt.UTC),
                "Document": json.loads(arguments["PolicyDocument"]),
            }
        ]
        return {"Policy": {"Arn": ARN}}

    def list_policy_versions(self, PolicyArn: str) -> dict[str, Any]:
        self.calls.append("ListPolicyVersions")
        return {"Versions": self.versions}

    def delete_policy_version(self, PolicyArn: str, VersionId: str) -> None:
        self.calls.append(f"DeletePolicyVersion {VersionId}")
        self.versions = [v for v in self.versions if v["VersionId"] != VersionId]

    def create_policy_version(
        self, PolicyArn: str, PolicyDocument: str, SetAsDefault: bool
    ) -> None:
        self.calls.append("CreatePolicyVersion")
        assert SetAsDefault
        for version in self.versions:
            version["IsDefaultVersion"] = False
        self.versions.append(
            {
                "VersionId": f"v{len(self.versions) + 10}",
                "IsDefaultVersion": True,
                "CreateDate": dt.datetime.now(dt.UTC),
                "Document": json.loads(PolicyDocument),
            }
        )


def test_an_account_without_the_boundary_gets_it_on_confirmation() -> None:
    iam, said, asked = _IAM(None), [], []
    arn = foundation.ensure(iam, "123456789012", lambda q: asked.append(q) or True, said.append)
    assert arn == ARN
    assert iam.calls == ["GetPolicy", "CreatePolicy"]
    assert iam.versions[0]["Document"] == foundation.BOUNDARY
    assert "has no hivemind-boundary policy yet" in asked[0]
    assert said == [f"Created {ARN}: every role HiveMind's stacks create is bounded by it."]


def test_declined_nothing_is_created_and_the_way_to_create_it_is_named() -> None:
    iam = _IAM(None)
    with pytest.raises(RefusedError) as refused:
        foundation.ensure(iam, "123456789012", lambda _q: False, lambda _s: None)
    assert iam.calls == ["GetPolicy"]
    assert "hivemind iam-policy --out DIR" in (refused.value.next_step or "")


def test_without_the_right_to_create_it_an_administrator_is_asked_to() -> None:
    iam = _IAM(None)
    iam.deny_create = True
    with pytest.raises(foundation.FoundationError) as failed:
        foundation.ensure(iam, "123456789012", lambda _q: True, lambda _s: None)
    assert str(failed.value) == f"cannot create the permissions boundary {ARN}"
    assert "aws iam create-policy --policy-name hivemind-boundary" in (failed.value.next_step or "")


def test_an_unchanged_boundary_is_only_read() -> None:
    iam = _IAM(foundation.BOUNDARY)
    assert foundation.ensure(iam, "123456789012", lambda _q: False, lambda _s: None) == ARN
    assert iam.calls == ["GetPolicy", "GetPolicyVersion"]


def test_a_boundary_that_differs_gets_a_new_default_version_keeping_at_most_five() -> None:
    iam, said = _IAM({"Version": "2012-10-17", "Statement": []}, versions=5), []
    foundation.ensure(iam, "123456789012", lambda _q: False, said.append)
    assert iam.calls == [
        "GetPolicy",
        "GetPolicyVersion",
        "ListPolicyVersions",
        "DeletePolicyVersion v1",  # the oldest that is not the default
        "CreatePolicyVersion",
    ]
    assert len(iam.versions) == 5
    default = next(v for v in iam.versions if v["IsDefaultVersion"])
    assert default["Document"] == foundation.BOUNDARY
    assert said == [f"Updated {ARN} to this HiveMind's boundary."]
