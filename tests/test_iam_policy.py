"""The policy `hivemind iam-policy` prints covers what HiveMind's stacks need, no more."""

from __future__ import annotations

import json
from pathlib import Path

from harness import make_spec, run_cli
from moto.iam.aws_managed_policies import aws_managed_policies_data

from hivemind.foundation import BOUNDARY
from hivemind.iam_policy import (
    ACTIONS_BY_RESOURCE_TYPE,
    MANAGED_POLICY_LIMIT,
    policy_document,
    policy_documents,
    policy_size,
)
from hivemind.synth import synthesize


def allowed_actions() -> set[str]:
    actions: set[str] = set()
    for statement in policy_document()["Statement"]:
        action = statement["Action"]
        actions.update([action] if isinstance(action, str) else action)
    return actions


def test_every_resource_type_hivemind_builds_is_covered(tmp_path: Path) -> None:
    spec = make_spec(
        "production",
        "postgres",
        True,
        access={
            "ssh_cidr": "203.0.113.7/32",
            "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/abcd-1234",
            "domain": "shop.example.com",
        },
    )
    result = synthesize(spec, "shop-abcdefghij", tmp_path, use_cache=False)
    built = set(result.resources)
    assert built <= set(ACTIONS_BY_RESOURCE_TYPE) | {"AWS::CDK::Metadata"}
    actions = allowed_actions()
    for resource_type in built - {"AWS::CDK::Metadata"}:
        assert set(ACTIONS_BY_RESOURCE_TYPE[resource_type]) <= actions, resource_type

    # Every role the stack creates is bounded by hivemind-boundary, and the boundary
    # allows every action the stack grants a role (or its roles would be denied them).
    template = json.loads((tmp_path / result.template_file).read_text())
    resources = template["Resources"].values()
    roles = [r for r in resources if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == 2  # the instances', the flow logs'
    for role in roles:
        boundary = json.dumps(role["Properties"]["PermissionsBoundary"])
        assert ":policy/hivemind-boundary" in boundary and "AWS::AccountId" in boundary
    granted: set[str] = set()
    for policy in (r for r in resources if r["Type"] == "AWS::IAM::Policy"):
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            action = statement["Action"]
            granted.update([action] if isinstance(action, str) else action)
    for role in roles:
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            name = json.dumps(arn).rsplit("/", 1)[-1].strip('"]}')
            document = json.loads(aws_managed_policies_data)[name]["Document"]
            for statement in document["Statement"]:
                action = statement["Action"]
                granted.update([action] if isinstance(action, str) else action)
    bounded: set[str] = set()
    for statement in BOUNDARY["Statement"]:
        action = statement["Action"]
        bounded.update([action] if isinstance(action, str) else action)
    assert granted and granted <= bounded, granted - bounded


def test_no_wildcard_actions_and_roles_are_scoped() -> None:
    statements = policy_document()["Statement"]
    for statement in statements:
        actions = statement["Action"]
        for action in [actions] if isinstance(actions, str) else actions:
            assert "*" not in action, action
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["PassHiveMindRolesToEc2"]["Resource"] == "arn:aws:iam::*:role/hivemind-*"
    assert by_sid["HiveMindStacks"]["Resource"] == "arn:aws:cloudformation:*:*:stack/hivemind-*/*"
    for statement in statements:
        actions = statement["Action"]
        iam_actions = [
            a for a in ([actions] if isinstance(actions, str) else actions) if a.startswith("iam:")
        ]
        if iam_actions and statement["Resource"] == "*":
            assert "Condition" in statement, statement["Sid"]


ROLE_PERMISSIONS = {
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:PutRolePermissionsBoundary",
}


def test_roles_are_created_or_given_permissions_only_with_the_boundary() -> None:
    result = run_cli("iam-policy", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    boundary = "arn:aws:iam::${aws:PrincipalAccount}:policy/hivemind-boundary"
    seen: set[str] = set()
    for policy in printed["policies"]:
        for statement in policy["document"]["Statement"]:
            action = statement["Action"]
            actions = {action} if isinstance(action, str) else set(action)
            # Never: changing or removing a boundary, or writing the boundary policy.
            assert not actions & {
                "iam:DeleteRolePermissionsBoundary",
                "iam:CreatePolicy",
                "iam:CreatePolicyVersion",
                "iam:SetDefaultPolicyVersion",
            }, statement["Sid"]
            if actions & ROLE_PERMISSIONS:
                assert statement["Condition"] == {
                    "StringEquals": {"iam:PermissionsBoundary": boundary}
                }, statement["Sid"]
                seen |= actions & ROLE_PERMISSIONS
    assert seen == ROLE_PERMISSIONS  # what CloudFormation's role handlers call
    assert printed["boundary"] == {"name": "hivemind-boundary", "document": BOUNDARY}


def test_the_command_prints_documents_that_each_fit_iams_limit_and_grant_it_all() -> None:
    result = run_cli("iam-policy", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["policies"]
    assert [p["name"] for p in listed] == [f"HiveMind-{n}" for n in range(1, len(listed) + 1)]
    for policy in listed:
        # IAM counts a managed policy's characters without white space.
        compact = "".join(json.dumps(policy["document"], separators=(",", ":")).split())
        assert policy["characters"] == len(compact) <= MANAGED_POLICY_LIMIT == 6144
        assert policy["document"]["Version"] == "2012-10-17"
    together = [s for p in listed for s in p["document"]["Statement"]]
    assert together == policy_document()["Statement"]  # split, nothing lost or added
    assert len(listed) > 1  # the whole policy is over the limit (7,734 characters)
    assert policy_size(policy_document()) > MANAGED_POLICY_LIMIT


def test_out_writes_each_document_and_says_how_to_create_them(tmp_path: Path) -> None:
    result = run_cli("iam-policy", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    written = sorted(tmp_path.glob("HiveMind-*.json"))
    assert [p.name for p in written] == [f"{name}.json" for name, _ in policy_documents()]
    for path, (name, document) in zip(written, policy_documents(), strict=True):
        assert json.loads(path.read_text()) == document
        assert f"aws iam create-policy --policy-name {name} --policy-document file://{path}" in (
            result.stdout
        )
    assert json.loads((tmp_path / "hivemind-boundary.json").read_text()) == BOUNDARY
    assert "aws iam create-policy --policy-name hivemind-boundary" in result.stdout
    missing = run_cli("iam-policy", "--out", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr


def test_with_a_model_the_agents_may_invoke_that_model_only() -> None:
    result = run_cli("iam-policy", "--llm", "bedrock:us.anthropic.claude-3-5-haiku-20241022-v1:0")
    assert result.returncode == 0, result.stderr
    statement = json.loads(result.stdout)["policies"][-1]["document"]["Statement"][-1]
    assert statement["Sid"] == "AgentsModel"
    assert statement["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert statement["Resource"] == [
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:*:*:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
    ]
    assert "bedrock:InvokeModel" not in allowed_actions()  # not without --llm


def test_a_model_of_another_provider_is_bad_input() -> None:
    result = run_cli("iam-policy", "--llm", "openai:gpt-4o")
    assert result.returncode == 2
    assert "bedrock:<model-id>" in result.stderr
