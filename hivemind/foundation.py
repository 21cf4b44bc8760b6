"""HiveMind's permissions boundary: the most any role a HiveMind stack creates may do.

A deployment's stack creates IAM roles (the instances' role, the VPC flow logs' role).
Whoever may create roles and attach policies to them could make one an administrator;
so every role HiveMind's stacks create carries the managed policy `hivemind-boundary`
as its permissions boundary (an effective permission is one both the role's policies
and the boundary allow), and the operator's policy (`hivemind iam-policy`) lets
CreateRole, PutRolePolicy, AttachRolePolicy and PutRolePermissionsBoundary through
only for roles whose boundary is exactly that policy. No role a stack creates can then
do more than this module's `BOUNDARY` allows, whatever policy is put on it.

The boundary is the account's, created once (`ensure`): the first deploy into an
account creates it, on confirmation, with the operator's credentials (that needs
`iam:CreatePolicy`, which `hivemind iam-policy` does not grant: an administrator makes
the first deploy, or creates the policy from `hivemind iam-policy --out`'s
`hivemind-boundary.json`). A newer HiveMind whose boundary differs adds a policy version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hivemind.errors import HiveMindError, RefusedError

BOUNDARY_NAME = "hivemind-boundary"
# What the boundary is written for, in the policy's description (shown in IAM's console).
DESCRIPTION = (
    "HiveMind: the permissions boundary of every role HiveMind's stacks create "
    "(the instances' and the VPC flow logs' roles)"
)
_LOG_GROUPS = ("arn:aws:logs:*:*:log-group:/hivemind/*", "arn:aws:logs:*:*:log-group:hivemind-*")

# Every action a role of a HiveMind stack is given, and where (constructs/stack.py and
# constructs/web_tier.py grant them; tests/test_foundation.py checks the two agree).
BOUNDARY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            # The CloudWatch agent's log streams; the VPC flow logs' delivery.
            "Sid": "HiveMindLogStreams",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [*_LOG_GROUPS, *(f"{group}:*" for group in _LOG_GROUPS)],
        },
        {
            "Sid": "AgentMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "CWAgent"}},
        },
        {
            # The agent's dimensions (no resource-level permissions exist for them).
            "Sid": "AgentDimensions",
            "Effect": "Allow",
            "Action": ["ec2:DescribeTags", "ec2:DescribeVolumes"],
            "Resource": "*",
        },
        {
            "Sid": "DatabaseSecret",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": "arn:aws:secretsmanager:*:*:secret:hivemind*",
        },
        {
            # AWSXrayWriteOnlyAccess, which --xray attaches to the instances' role.
            "Sid": "Traces",
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        },
    ],
}


def boundary_arn(account_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account_id}:policy/{BOUNDARY_NAME}"


def boundary_document() -> str:
    return json.dumps(BOUNDARY, separators=(",", ":"))


class FoundationError(HiveMindError):
    """The account's HiveMind boundary could not be read or created."""


def ensure(
    iam: Any,
    account_id: str,
    confirm: Callable[[str], bool],
    say: Callable[[str], None],
    partition: str = "aws",
) -> str:
    """The boundary's ARN, the policy created first (on confirmation) when the account
    lacks it, or given a new default version when HiveMind's boundary changed."""
    import botocore.exceptions

    arn = boundary_arn(account_id, partition)
    wanted = BOUNDARY
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchEntity":
            raise _cannot("read", arn, error) from None
        if not confirm(
            f"This account has no {BOUNDARY_NAME} policy yet (the permissions boundary of "
            "every role HiveMind's stacks create). Create it?"
        ):
            raise RefusedError(
                f"nothing was created: {BOUNDARY_NAME} is needed and was not created",
                next_step=f"create it yourself from `hivemind iam-policy --out DIR`'s "
                f"{BOUNDARY_NAME}.json (aws iam create-policy --policy-name "
                f"{BOUNDARY_NAME} ...), or confirm",
            ) from None
        try:
            iam.create_policy(
                PolicyName=BOUNDARY_NAME,
                PolicyDocument=boundary_document(),
                Description=DESCRIPTION,
                Tags=[{"Key": "hivemind:foundation", "Value": "boundary"}],
            )
        except botocore.exceptions.ClientError as error:
            raise _cannot("create", arn, error) from None
        say(f"Created {arn}: every role HiveMind's stacks create is bounded by it.")
        return arn
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])
    document = version["PolicyVersion"]["Document"]
    current = json.loads(document) if isinstance(document, str) else document
    if current != wanted:
        try:
            versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
            if len(versions) >= 5:  # IAM keeps five versions of a managed policy
                oldest = min(
                    (v for v in versions if not v["IsDefaultVersion"]),
                    key=lambda v: v["CreateDate"],
                )
                iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
            iam.create_policy_version(
                PolicyArn=arn, PolicyDocument=boundary_document(), SetAsDefault=True
            )
        except botocore.exceptions.ClientError as error:
            raise _cannot("update", arn, error) from None
        say(f"Updated {arn} to this HiveMind's boundary.")
    return arn


def _cannot(verb: str, arn: str, error: Any) -> FoundationError:
    return FoundationError(
        f"cannot {verb} the permissions boundary {arn}",
        where="deploy",
        cause=str(error),
        next_step=f"an administrator creates it once: `hivemind iam-policy --out DIR` writes "
        f"{BOUNDARY_NAME}.json; `aws iam create-policy --policy-name {BOUNDARY_NAME} "
        f"--policy-document file://DIR/{BOUNDARY_NAME}.json`",
    )
