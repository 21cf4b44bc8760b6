"""The seven explaining agents: Sheriff, Janitor, Compiler, Provisioner, Deployer, QA, Ops.

Each is specified twice: by its deterministic fallback on realistic inputs (what every
user without a model sees), and by its model path with a scripted fake chat model: a
valid answer is used, an answer naming what is not in the facts (or a spec change that
does not validate) is rejected for the fallback, and so is one that does not fit the
output model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from fake_models import ScriptedChatModel
from harness import EXAMPLES, REPO_ROOT
from langchain_core.messages import AIMessage
from pydantic import BaseModel

from hivemind.cost import CostEstimate, CostLine
from hivemind.deployer.health import TargetHealth, TargetsUnhealthy
from hivemind.deployer.release import DeployFailed
from hivemind.gates import Finding
from hivemind.records import CheckResult, InstanceRelease
from hivemind.resolve import spec_for_repo
from hivemind.spec import DeploymentSpec, Provenance, Source
from hivemind.synth import SynthResult
from hivemind_agents.base import Advisor, Agent, Answer
from hivemind_agents.compiler import Compiler, CompilerInput, PlanExplanation
from hivemind_agents.deployer import STEPS, DeployerInput, DeployFailure, DeployReport
from hivemind_agents.deployer import Deployer as DeployerAgent
from hivemind_agents.janitor import (
    CleanupPlan,
    Janitor,
    JanitorInput,
    StackResource,
    apply_template_changes,
)
from hivemind_agents.ops import HealthReport, LogErrorGroup, MetricAnomaly, Ops, OpsInput
from hivemind_agents.provisioner import Provisioner as ProvisionerAgent
from hivemind_agents.provisioner import (
    ProvisionerInput,
    ProvisioningReport,
)
from hivemind_agents.qa import QA, QAInput, QAVerdict
from hivemind_agents.sheriff import (
    MIN_REASON_LENGTH,
    SecurityReview,
    Sheriff,
    SheriffInput,
    acknowledgements,
)

DEPLOYMENT = "flask-notes-bn6quacckf"
STACK = f"hivemind-{DEPLOYMENT}"
USAGE = {"input_tokens": 1200, "output_tokens": 150, "total_tokens": 1350}
T0 = datetime(2026, 11, 3, 10, 0, 0, tzinfo=UTC)


# --- the model path, scripted -----------------------------------------------------------


def answer(output: type[BaseModel], args: dict[str, Any]) -> AIMessage:
    """The model's structured answer: a tool call named after the output model."""
    return AIMessage(
        content="",
        tool_calls=[{"name": output.__name__, "args": args, "id": "answer"}],
        usage_metadata=USAGE,
    )


def tool_round(name: str, args: dict[str, Any]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": f"call-{name}"}],
        usage_metadata=USAGE,
    )


def enough() -> AIMessage:
    """A reply without tool calls: ends an agent's tool rounds."""
    return AIMessage(content="I have what I need.", usage_metadata=USAGE)


def ask(agent: Agent[Any, Any], inputs: Any, *messages: AIMessage) -> tuple[Answer[Any], Advisor]:
    lines: list[str] = []
    advisor = Advisor(
        model=ScriptedChatModel(messages=iter(messages)), model_name="fake", log=lines.append
    )
    result = advisor.ask(agent, inputs)
    assert lines, "the advisor logs what it did"
    return result, advisor


def tool(agent: Agent[Any, Any], inputs: Any, name: str) -> Callable[..., str]:
    return {f.__name__: f for f in agent.tools(inputs)}[name]


def assert_fell_back(result: Answer[Any], agent: Agent[Any, Any], inputs: Any, why: str) -> None:
    assert result.source == "fallback"
    assert re.search(why, result.note), result.note
    assert result.value == agent.fallback(inputs)


@pytest.fixture(scope="module")
def spec() -> DeploymentSpec:
    """flask-notes as HiveMind reads it: production, PostgreSQL, every field's provenance."""
    _reading, found = spec_for_repo(str(EXAMPLES / "flask-notes"))
    return found


@pytest.fixture(scope="module")
def stage1(spec: DeploymentSpec) -> DeploymentSpec:
    return spec.with_changes(
        {"profile": "stage-1", "compute.count": 1},
        Provenance(source=Source.USER, evidence="--stage-1"),
    )


def test_without_a_model_every_agent_answers_with_its_rules(spec: DeploymentSpec) -> None:
    advisor = Advisor()
    inputs = QAInput(checks=PASSING_CHECKS, deployment_id=DEPLOYMENT, spec=spec)

    result = advisor.ask(QA(), inputs)

    assert result.source == "fallback" and result.note == ""
    assert result.value == QA().fallback(inputs)
    assert advisor.calls == []


# --- Sheriff ----------------------------------------------------------------------------

OPEN_TO_THE_WORLD = "The Security Group allows for 0.0.0.0/0 or ::/0 inbound access."
PORT_RANGES = "Large port ranges, when open, expose instances to unwanted attacks."


def nag(rule: str, resource: str, message: str, fix: str = "") -> Finding:
    return Finding("cdk-nag", rule, "error", f"{STACK}/{resource}", message, fix)


SSH_TO_THE_WORLD = nag("AwsSolutions-EC23", "Web/InstanceSecurityGroup/Resource",
                       OPEN_TO_THE_WORLD, PORT_RANGES)  # fmt: skip
PUBLIC_BALANCER = nag("AwsSolutions-EC23", "Web/LoadBalancerSecurityGroup/Resource",
                      OPEN_TO_THE_WORLD, PORT_RANGES)  # fmt: skip
SINGLE_AZ_DATABASE = nag(
    "AwsSolutions-RDS3",
    "Database/Instance/Resource",
    "The non-Aurora RDS DB instance does not have multi-AZ support enabled.",
    "Use multi-AZ deployment configurations for high availability.",
)
NO_SUCH_INSTANCE_TYPE = Finding(
    "cfn-lint",
    "E3628",
    "error",
    f"{STACK}/Web/Blue1",
    "'t3.small' is not one of ['a1.medium', 'a1.large'] in 'af-south-1'",
    "Validate EC2 instance types based on region (https://github.com/aws-cloudformation/"
    "cfn-lint/blob/main/docs/rules.md#E3628)",
)
PLAIN_HTTP = nag(
    "AwsSolutions-ELB5",
    "Web/LoadBalancer/HttpListener",
    "The CLB listener is not configured for secure (HTTPs or SSL) protocols for client "
    "communication.",
)
UNKNOWN_RULE = Finding(
    "cdk-nag", "AwsSolutions-CB4", "warning", f"{STACK}/Build/Project",
    "The CodeBuild project does not use an AWS KMS key for encryption.",
    "Using an AWS KMS key helps follow the standard security advice of least privilege.",
)  # fmt: skip


@pytest.fixture(scope="module")
def ssh_spec(spec: DeploymentSpec) -> DeploymentSpec:
    """A spec whose SSH rule is wider than one operator."""
    return spec.with_changes(
        {"access.ssh_cidr": "198.51.100.0/24"},
        Provenance(source=Source.USER, evidence="--ssh-cidr"),
    )


def test_sheriff_proposes_the_operators_address_for_ssh_open_to_the_world(
    ssh_spec: DeploymentSpec,
) -> None:
    inputs = SheriffInput(
        findings=(SSH_TO_THE_WORLD,), spec=ssh_spec, operator_cidr="203.0.113.7/32"
    )

    review = Sheriff().fallback(inputs)

    (item,) = review.findings
    assert (item.rule, item.resource) == (SSH_TO_THE_WORLD.rule, SSH_TO_THE_WORLD.resource)
    assert "any address on the internet" in item.what
    assert "attacked" in item.why_it_matters
    assert review.spec_changes() == {"access.ssh_cidr": "203.0.113.7/32"}
    fixed = ssh_spec.with_changes(review.spec_changes(), Provenance(source=Source.LLM))
    assert fixed.access.ssh_cidr == "203.0.113.7/32"
    assert "1 of 1 finding(s) block the deploy (AwsSolutions-EC23)" in review.summary


def test_sheriff_without_the_operators_address_proposes_removing_the_ssh_rule(
    ssh_spec: DeploymentSpec,
) -> None:
    review = Sheriff().fallback(SheriffInput(findings=(SSH_TO_THE_WORLD,), spec=ssh_spec))

    assert review.spec_changes() == {"access.ssh_cidr": None}
    assert "--ssh-cidr 203.0.113.7/32" in review.findings[0].fix


def test_sheriff_explains_each_kind_of_finding_where_its_fix_lives(spec: DeploymentSpec) -> None:
    findings = (PUBLIC_BALANCER, NO_SUCH_INSTANCE_TYPE, PLAIN_HTTP, UNKNOWN_RULE)

    review = Sheriff().fallback(SheriffInput(findings=findings, spec=spec))

    by_rule = {item.rule: item for item in review.findings}
    assert list(by_rule) == ["AwsSolutions-EC23", "E3628", "AwsSolutions-ELB5", "AwsSolutions-CB4"]
    # The public load balancer is accepted on purpose, with the reason from constructs/.
    balancer = by_rule["AwsSolutions-EC23"]
    assert balancer.acknowledgement is not None
    assert balancer.acknowledgement.where.startswith("constructs/web_tier.py:")
    assert "load balancer accepts HTTP(S) from anywhere" in balancer.acknowledgement.reason
    assert balancer.spec_changes == []
    # An instance type the region lacks: the setting, no made-up value (t3.small is the default).
    instance_type = by_rule["E3628"]
    assert instance_type.setting == "compute.instance_type"
    assert "not offered in this region" in instance_type.what
    # Plain HTTP: only the operator has a certificate to give.
    tls = by_rule["AwsSolutions-ELB5"]
    assert tls.setting == "access.certificate_arn" and tls.spec_changes == []
    assert "HTTPS on 443" in tls.fix
    # A rule HiveMind has no notes on is explained from the finding's own words.
    other = by_rule["AwsSolutions-CB4"]
    assert other.what == UNKNOWN_RULE.message
    assert other.why_it_matters == UNKNOWN_RULE.fix
    assert "acknowledge AwsSolutions-CB4" in other.fix
    assert review.spec_changes() == {}


def test_sheriff_proposes_production_for_a_stage1_database_without_multi_az(
    stage1: DeploymentSpec,
) -> None:
    review = Sheriff().fallback(SheriffInput(findings=(SINGLE_AZ_DATABASE,), spec=stage1))

    assert review.spec_changes() == {"profile": "production", "compute.count": 2}
    assert "one availability zone" in review.findings[0].what
    upgraded = stage1.with_changes(review.spec_changes(), Provenance(source=Source.LLM))
    assert upgraded.profile == "production"


def test_sheriff_reads_hivemind_acknowledgements_from_the_constructs() -> None:
    found = {(a.base_rule, a.file) for a in acknowledgements()}

    assert ("AwsSolutions-EC28", "constructs/web_tier.py") in found
    assert ("AwsSolutions-RDS3", "constructs/database.py") in found
    assert ("AwsSolutions-IAM4", "constructs/web_tier.py") in found
    assert all(len(a.reason) >= MIN_REASON_LENGTH for a in acknowledgements())
    source = (REPO_ROOT / "constructs" / "acknowledge.py").read_text()
    assert f"MIN_REASON_LENGTH = {MIN_REASON_LENGTH}\n" in source


def test_sheriff_and_compiler_read_a_synth_result(spec: DeploymentSpec) -> None:
    cost = CostEstimate(
        region="us-east-1", lines=COSTS, total_usd=224.23, prices_as_of="2025-01",
        price_source="test", assumptions=(),
    )  # fmt: skip
    result = SynthResult(
        deployment_id=DEPLOYMENT, stack_name=STACK, template_file=f"cdk.out/{STACK}.template.json",
        template_bytes=21000, resources=RESOURCES, cost=cost, provisioning_seconds=900,
        critical_path=[], findings=[asdict(SSH_TO_THE_WORLD), asdict(NO_SUCH_INSTANCE_TYPE)],
        notes=["The app pins Python 3.11."],
    )  # fmt: skip

    sheriff_inputs = SheriffInput.from_synth(result, spec, operator_cidr="203.0.113.7/32")
    plan_inputs = CompilerInput.from_synth(spec, result)

    assert sheriff_inputs.findings == (SSH_TO_THE_WORLD, NO_SUCH_INSTANCE_TYPE)
    assert plan_inputs.cost_lines == COSTS and plan_inputs.total_usd == 224.23
    assert plan_inputs.notes == ("The app pins Python 3.11.",)


def test_sheriff_tools_answer_from_the_notes_and_the_spec(ssh_spec: DeploymentSpec) -> None:
    inputs = SheriffInput(findings=(SSH_TO_THE_WORLD,), spec=ssh_spec)

    assert "spec setting: compute.instance_type" in tool(Sheriff(), inputs, "rule_notes")("E3628")
    assert "web_tier.py" in tool(Sheriff(), inputs, "acknowledgements_of")("AwsSolutions-EC28")
    setting = tool(Sheriff(), inputs, "spec_setting")("access.ssh_cidr")
    assert setting == "access.ssh_cidr = '198.51.100.0/24' (user (--ssh-cidr))"


def sheriff_item(finding: Finding, **extra: Any) -> dict[str, Any]:
    return {
        "rule": finding.rule,
        "resource": finding.resource,
        "what": "SSH on the instances is open to every address on the internet.",
        "why_it_matters": "Bots try passwords and exploits on port 22 all day.",
        "fix": "Allow only the operator's own address.",
        **extra,
    }


def test_sheriff_uses_a_valid_model_answer_and_explains_what_it_left_out(
    ssh_spec: DeploymentSpec,
) -> None:
    inputs = SheriffInput(
        findings=(SSH_TO_THE_WORLD, NO_SUCH_INSTANCE_TYPE), spec=ssh_spec,
        operator_cidr="203.0.113.7/32",
    )  # fmt: skip
    change = {"path": "access.ssh_cidr", "value": "203.0.113.7/32"}
    model_says = {
        "summary": "SSH is open to a whole /24; narrow it to your address.",
        "findings": [sheriff_item(SSH_TO_THE_WORLD, spec_changes=[change])],
    }

    result, advisor = ask(
        Sheriff(),
        inputs,
        tool_round("spec_setting", {"path": "access.ssh_cidr"}),
        enough(),
        answer(SecurityReview, model_says),
    )

    assert result.source == "model" and result.provenance == "model fake"
    review = result.value
    assert review.summary == model_says["summary"]
    assert review.spec_changes() == {"access.ssh_cidr": "203.0.113.7/32"}
    assert [item.rule for item in review.findings] == ["AwsSolutions-EC23", "E3628"]
    assert review.findings[1].setting == "compute.instance_type"  # HiveMind's own, filled in
    (call,) = advisor.calls
    assert (call.source, call.input_tokens, call.output_tokens) == ("model", 3600, 450)


@pytest.mark.parametrize(
    ("item", "why"),
    [
        (
            sheriff_item(SSH_TO_THE_WORLD, rule="AwsSolutions-EC99"),
            "AwsSolutions-EC99 on .* is not one of the findings",
        ),
        (
            sheriff_item(
                SSH_TO_THE_WORLD, spec_changes=[{"path": "access.ssh_cidr", "value": "0.0.0.0/0"}]
            ),
            "the change would make the deployment spec invalid",
        ),
        (
            sheriff_item(
                SSH_TO_THE_WORLD, spec_changes=[{"path": "network.allow_ssh", "value": False}]
            ),
            "network.allow_ssh is not a deployment spec setting",
        ),
        (
            sheriff_item(
                SSH_TO_THE_WORLD,
                spec_changes=[{"path": "access.ssh_cidr", "value": "198.51.100.0/24"}],
            ),
            "already .*: no change",
        ),
        (
            sheriff_item(
                SSH_TO_THE_WORLD,
                acknowledgement={"rule_id": "AwsSolutions-EC23", "where": "x", "reason": "ok"},
            ),
            "too short",
        ),
    ],
    ids=["unknown-rule", "ssh-to-the-world", "unknown-setting", "no-op", "short-reason"],
)
def test_sheriff_rejects_an_answer_the_facts_do_not_support(
    ssh_spec: DeploymentSpec, item: dict[str, Any], why: str
) -> None:
    inputs = SheriffInput(findings=(SSH_TO_THE_WORLD,), spec=ssh_spec)

    result, advisor = ask(
        Sheriff(), inputs, enough(), answer(SecurityReview, {"summary": "s", "findings": [item]})
    )

    assert_fell_back(result, Sheriff(), inputs, why)
    assert advisor.calls[0].source == "fallback"


def test_sheriff_falls_back_on_an_answer_that_does_not_fit(ssh_spec: DeploymentSpec) -> None:
    inputs = SheriffInput(findings=(SSH_TO_THE_WORLD,), spec=ssh_spec)

    result, _advisor = ask(
        Sheriff(), inputs, enough(), answer(SecurityReview, {"findings": "all fine"})
    )

    assert_fell_back(result, Sheriff(), inputs, "does not fit SecurityReview")


# --- Janitor ----------------------------------------------------------------------------

BUCKET_NOT_EMPTY = "The bucket you tried to delete is not empty"
PROTECTED_DB = (
    "Cannot delete protected DB Instance, please disable deletion protection and try again."
)
SG_IN_USE = "resource sg-0a1b2c3d4e5f67890 has a dependent object"
ENI_IN_USE = "Network interface is currently in use. (Service: Ec2, Status Code: 400)"

TEMPLATE: dict[str, Any] = {
    "Resources": {
        "UploadsBucket": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Delete"},
        "DatabaseInstance": {
            "Type": "AWS::RDS::DBInstance",
            "DeletionPolicy": "Snapshot",
            "UpdateReplacePolicy": "Snapshot",
            "Properties": {"DeletionProtection": True, "MultiAZ": True},
        },
        "InstanceSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {}},
        "EndpointInterface": {"Type": "AWS::EC2::NetworkInterface", "Properties": {}},
        "AppLogs": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Retain"},
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
    }
}


def resource(
    logical_id: str, kind: str, physical: str, status: str, reason: str = ""
) -> StackResource:
    return StackResource(
        logical_id=logical_id, resource_type=kind, physical_id=physical, status=status,
        reason=reason,
    )  # fmt: skip


FAILED_DELETE = JanitorInput(
    stack_name=STACK,
    stack_status="DELETE_FAILED",
    template=TEMPLATE,
    resources=(
        resource("UploadsBucket", "AWS::S3::Bucket", "hm-notes-uploads-1a2b", "DELETE_FAILED",
                 BUCKET_NOT_EMPTY),
        resource("DatabaseInstance", "AWS::RDS::DBInstance", "hm-notes-db", "DELETE_FAILED",
                 PROTECTED_DB),
        resource("InstanceSecurityGroup", "AWS::EC2::SecurityGroup", "sg-0a1b2c3d4e5f67890",
                 "DELETE_FAILED", SG_IN_USE),
        resource("EndpointInterface", "AWS::EC2::NetworkInterface", "eni-0123456789abcdef0",
                 "DELETE_FAILED", ENI_IN_USE),
        resource("AppLogs", "AWS::Logs::LogGroup", "/hivemind/notes/app", "DELETE_SKIPPED"),
        resource("Vpc", "AWS::EC2::VPC", "vpc-0abc", "DELETE_COMPLETE"),
    ),
)  # fmt: skip


def test_janitor_finds_what_blocked_the_delete_and_how_to_clear_each() -> None:
    plan = Janitor().fallback(FAILED_DELETE)

    assert plan.can_proceed is False
    items = {item.logical_id: item for item in plan.items}
    assert set(items) == {
        "UploadsBucket", "DatabaseInstance", "InstanceSecurityGroup", "EndpointInterface",
        "AppLogs",
    }  # fmt: skip
    bucket = items["UploadsBucket"]
    assert (bucket.effect, bucket.cause) == ("blocks", "bucket_not_empty")
    assert bucket.evidence == f"reason: {BUCKET_NOT_EMPTY}"
    assert bucket.manual_step is not None
    assert bucket.manual_step.startswith("aws s3 rm s3://hm-notes-uploads-1a2b --recursive")
    database = items["DatabaseInstance"]
    assert (database.effect, database.cause) == ("blocks", "deletion_protection")
    assert database.template_change is not None
    assert database.template_change.attribute == "Properties.DeletionProtection"
    assert database.template_change.value is False
    assert database.manual_step is not None
    assert "--db-instance-identifier hm-notes-db --no-deletion-protection" in database.manual_step
    group = items["InstanceSecurityGroup"]
    assert group.cause == "dependent_object"
    assert group.manual_step is not None
    assert "Name=group-id,Values=sg-0a1b2c3d4e5f67890" in group.manual_step
    assert items["EndpointInterface"].cause == "in_use"
    logs = items["AppLogs"]
    assert (logs.effect, logs.cause, logs.evidence) == (
        "survives", "retained_by_policy", "status: DELETE_SKIPPED"
    )  # fmt: skip
    assert "4 resource(s) block deleting" in plan.summary
    assert "1 will outlive it: AppLogs" in plan.summary


def test_janitor_skips_what_is_already_gone_on_the_retry() -> None:
    gone = JanitorInput(
        stack_name=STACK,
        stack_status="DELETE_FAILED",
        template=TEMPLATE,
        resources=(
            resource("DatabaseInstance", "AWS::RDS::DBInstance", "hm-notes-db", "DELETE_FAILED",
                     "DBInstance hm-notes-db not found (Service: Rds, Status Code: 404)"),
        ),
    )  # fmt: skip

    (item,) = [i for i in Janitor().fallback(gone).items if i.effect == "blocks"]

    assert item.cause == "already_gone"
    assert item.manual_step is not None
    assert f"--stack-name {STACK} --retain-resources DatabaseInstance" in item.manual_step


def test_janitor_warns_before_the_delete_from_the_template() -> None:
    live = JanitorInput(
        stack_name=STACK,
        stack_status="CREATE_COMPLETE",
        template=TEMPLATE,
        resources=tuple(
            resource(logical_id, definition["Type"], f"phys-{logical_id}", "CREATE_COMPLETE")
            for logical_id, definition in TEMPLATE["Resources"].items()
        ),
    )

    plan = Janitor().fallback(live)

    found = {(i.logical_id, i.cause, i.effect) for i in plan.items}
    assert found == {
        ("DatabaseInstance", "deletion_protection", "blocks"),
        ("DatabaseInstance", "snapshot_kept", "survives"),
        ("AppLogs", "retained_by_policy", "survives"),
    }
    assert plan.can_proceed is False
    fixed = apply_template_changes(TEMPLATE, plan.template_changes())
    assert fixed["Resources"]["AppLogs"]["DeletionPolicy"] == "Delete"
    assert fixed["Resources"]["DatabaseInstance"]["Properties"]["DeletionProtection"] is False
    assert TEMPLATE["Resources"]["AppLogs"]["DeletionPolicy"] == "Retain"  # a copy was changed
    logs = next(i for i in plan.items if i.logical_id == "AppLogs")
    assert logs.manual_step == "aws logs delete-log-group --log-group-name phys-AppLogs"


def test_janitor_lets_a_clean_stack_go() -> None:
    clean = JanitorInput(
        stack_name=STACK,
        stack_status="CREATE_COMPLETE",
        template={"Resources": {"Vpc": TEMPLATE["Resources"]["Vpc"]}},
        resources=(resource("Vpc", "AWS::EC2::VPC", "vpc-0abc", "CREATE_COMPLETE"),),
    )

    plan = Janitor().fallback(clean)

    assert plan.can_proceed is True and plan.items == []
    assert plan.summary == f"Nothing blocks deleting {STACK}, and nothing outlives it."


def janitor_item(**changes: Any) -> dict[str, Any]:
    return {
        "logical_id": "UploadsBucket",
        "resource_type": "AWS::S3::Bucket",
        "physical_id": "hm-notes-uploads-1a2b",
        "effect": "blocks",
        "cause": "bucket_not_empty",
        "problem": "The uploads bucket still has files in it.",
        "evidence": f"reason: {BUCKET_NOT_EMPTY}",
        "manual_step": "aws s3 rm s3://hm-notes-uploads-1a2b --recursive",
        **changes,
    }


def test_janitor_uses_a_valid_model_answer_and_adds_the_failures_it_missed() -> None:
    model_says = {"can_proceed": False, "summary": "Empty the bucket.", "items": [janitor_item()]}

    result, _advisor = ask(
        Janitor(),
        FAILED_DELETE,
        tool_round("template_resource", {"logical_id": "UploadsBucket"}),
        enough(),
        answer(CleanupPlan, model_says),
    )

    assert result.source == "model"
    plan = result.value
    assert plan.summary == "Empty the bucket."
    assert plan.items[0].problem == "The uploads bucket still has files in it."
    covered = {i.logical_id for i in plan.items}
    assert {"DatabaseInstance", "InstanceSecurityGroup", "EndpointInterface"} <= covered


@pytest.mark.parametrize(
    ("plan", "why"),
    [
        (
            {"can_proceed": False, "summary": "s",
             "items": [janitor_item(logical_id="UploadsLambda")]},
            "UploadsLambda is not a resource",
        ),
        (
            {"can_proceed": False, "summary": "s",
             "items": [janitor_item(evidence="reason: Access Denied")]},
            "evidence for UploadsBucket is not in its facts",
        ),
        (
            {"can_proceed": True, "summary": "s", "items": []},
            "failed to delete: the deletion cannot proceed",
        ),
        (
            {"can_proceed": False, "summary": "s",
             "items": [janitor_item(physical_id="hm-other-bucket")]},
            "hm-other-bucket is not the physical id",
        ),
        (
            {"can_proceed": False, "summary": "s", "items": [janitor_item(
                template_change={"logical_id": "UploadsBucket", "attribute": "Properties.Nuke",
                                 "value": True})]},
            "Properties.Nuke is not a property",
        ),
    ],
    ids=["unknown-resource", "made-up-evidence", "verdict", "wrong-physical-id", "bad-change"],
)  # fmt: skip
def test_janitor_rejects_an_answer_the_stack_does_not_support(
    plan: dict[str, Any], why: str
) -> None:
    result, _advisor = ask(Janitor(), FAILED_DELETE, enough(), answer(CleanupPlan, plan))

    assert_fell_back(result, Janitor(), FAILED_DELETE, why)


def test_janitor_falls_back_on_an_answer_that_does_not_fit() -> None:
    plan = {"can_proceed": False, "summary": "s", "items": [janitor_item(cause="gremlins")]}

    result, _advisor = ask(Janitor(), FAILED_DELETE, enough(), answer(CleanupPlan, plan))

    assert_fell_back(result, Janitor(), FAILED_DELETE, "does not fit CleanupPlan")


# --- Compiler ---------------------------------------------------------------------------

# What synth made of flask-notes' production spec (a real synth's counts and cost lines).
RESOURCES = {
    "AWS::CloudWatch::Alarm": 5, "AWS::CloudWatch::Dashboard": 1, "AWS::EC2::EIP": 2,
    "AWS::EC2::FlowLog": 1, "AWS::EC2::Instance": 2, "AWS::EC2::InstanceConnectEndpoint": 1,
    "AWS::EC2::InternetGateway": 1, "AWS::EC2::KeyPair": 1, "AWS::EC2::LaunchTemplate": 1,
    "AWS::EC2::NatGateway": 2, "AWS::EC2::Route": 4, "AWS::EC2::RouteTable": 6,
    "AWS::EC2::SecurityGroup": 4, "AWS::EC2::SecurityGroupEgress": 2,
    "AWS::EC2::SecurityGroupIngress": 3, "AWS::EC2::Subnet": 6,
    "AWS::EC2::SubnetRouteTableAssociation": 6, "AWS::EC2::VPC": 1,
    "AWS::EC2::VPCGatewayAttachment": 1, "AWS::ElasticLoadBalancingV2::Listener": 1,
    "AWS::ElasticLoadBalancingV2::LoadBalancer": 1, "AWS::ElasticLoadBalancingV2::TargetGroup": 2,
    "AWS::IAM::InstanceProfile": 1, "AWS::IAM::Policy": 2, "AWS::IAM::Role": 2,
    "AWS::Logs::LogGroup": 2, "AWS::RDS::DBInstance": 2, "AWS::RDS::DBSubnetGroup": 2,
    "AWS::SecretsManager::Secret": 1, "AWS::SecretsManager::SecretTargetAttachment": 1,
    "AWS::CDK::Metadata": 1,
}  # fmt: skip
COSTS = tuple(
    CostLine(logical_id=i, resource_type=t, description=d, monthly_usd=usd)
    for i, t, d, usd in (
        ("DatabaseInstanceAA8A5FDE", "AWS::RDS::DBInstance",
         "db.t3.small PostgreSQL, Multi-AZ, 20 GiB gp3", 57.16),
        ("NetworkVpcpublicSubnet1NATGateway939C8F7E", "AWS::EC2::NatGateway",
         "NAT gateway, 730 h", 32.85),
        ("NetworkVpcpublicSubnet2NATGatewayCA65A467", "AWS::EC2::NatGateway",
         "NAT gateway, 730 h", 32.85),
        ("WebLoadBalancer8E8983B1", "AWS::ElasticLoadBalancingV2::LoadBalancer",
         "application load balancer, 730 h + 1 LCU assumed + 2 public IPv4 addresses", 29.565),
        ("DatabaseReadReplicaFA1999F7", "AWS::RDS::DBInstance",
         "db.t3.small PostgreSQL read replica, single-AZ, 20 GiB gp3", 28.58),
        ("WebBlue1D8CD25BC", "AWS::EC2::Instance", "t3.small instance, 730 h + 16 GiB gp3 volume",
         16.464),
        ("WebBlue21057509C", "AWS::EC2::Instance", "t3.small instance, 730 h + 16 GiB gp3 volume",
         16.464),
        ("NetworkVpcpublicSubnet1EIPC41EF705", "AWS::EC2::EIP",
         "Elastic IP (public IPv4 address), 730 h", 3.65),
        ("NetworkVpcpublicSubnet2EIPFC8511D4", "AWS::EC2::EIP",
         "Elastic IP (public IPv4 address), 730 h", 3.65),
        ("MonitoringDashboard0C3675C6", "AWS::CloudWatch::Dashboard", "CloudWatch dashboard", 3.0),
    )
)  # fmt: skip


@pytest.fixture(scope="module")
def plan_inputs(spec: DeploymentSpec) -> CompilerInput:
    return CompilerInput(
        spec=spec,
        resources=RESOURCES,
        cost_lines=COSTS,
        total_usd=sum(c.monthly_usd for c in COSTS),
    )


def test_compiler_explains_the_plan_from_the_spec_and_its_provenance(
    plan_inputs: CompilerInput,
) -> None:
    explained = Compiler().fallback(plan_inputs)

    assert explained.headline == (
        "production plan for flask-notes in us-east-1: 67 resources, about $224.23/month."
    )
    points = {p.title: p for p in explained.points}
    compute = points["Compute"]
    assert compute.text.startswith(
        "2 x t3.small across two availability zones, $32.93/month: the type is the production "
        "profile's instance type; the count is the production profile's instance count."
    )
    assert {(f.path, f.source) for f in compute.fields} >= {
        ("compute.count", Source.DEFAULT), ("compute.instance_type", Source.DEFAULT),
    }  # fmt: skip
    assert compute.change_with == "compute.instance_type and compute.count in hivemind.yaml"
    database = points["Database"]
    assert "postgres 16 on db.t3.small with 20 GB, Multi-AZ with a read replica" in database.text
    assert "detected in the repository (requirements.txt:2): depends on psycopg" in database.text
    assert "2 NAT gateway(s) with their Elastic IPs, $73.00/month" in points["Network"].text
    assert "plain HTTP on port 80" in points["Load balancer"].text
    assert points["Load balancer"].change_with is not None
    assert "access.certificate_arn" in points["Load balancer"].change_with
    assert "the biggest items: DBInstance $85.74, NatGateway $65.70" in points["Cost"].text


def test_compiler_credits_the_user_for_what_they_set(
    plan_inputs: CompilerInput, stage1: DeploymentSpec
) -> None:
    inputs = plan_inputs.model_copy(update={"spec": stage1})

    points = {p.title: p for p in Compiler().fallback(inputs).points}

    assert "the count is you set it (--stage-1)" in points["Compute"].text
    assert "Stage-1: one instance in a public subnet" in points["Profile"].text
    profile_ref = next(f for f in points["Profile"].fields if f.path == "profile")
    assert profile_ref.source == Source.USER


def plan_point(**changes: Any) -> dict[str, Any]:
    return {
        "title": "Compute",
        "text": "Two t3.small instances, one per availability zone, as production requires.",
        "fields": [
            {"path": "compute.count", "source": "default"},
            {"path": "compute.instance_type"},
        ],
        "change_with": "compute.count in hivemind.yaml",
        **changes,
    }


def test_compiler_uses_a_valid_model_answer_with_the_recorded_provenance(
    plan_inputs: CompilerInput,
) -> None:
    model_says = {"headline": "A redundant production plan.", "points": [plan_point()]}

    result, _advisor = ask(
        Compiler(),
        plan_inputs,
        tool_round("cost_of", {"resource_type": "AWS::EC2::Instance"}),
        enough(),
        answer(PlanExplanation, model_says),
    )

    assert result.source == "model"
    (point,) = result.value.points
    assert [(f.path, f.source) for f in point.fields] == [
        ("compute.count", Source.DEFAULT),
        ("compute.instance_type", Source.DEFAULT),  # filled in from the spec
    ]


@pytest.mark.parametrize(
    ("point", "why"),
    [
        (plan_point(fields=[{"path": "compute.autoscaling"}]), "not a deployment spec field"),
        (plan_point(fields=[{"path": "compute.count", "source": "user"}]), "is default, not user"),
        (plan_point(text="Two t3.large instances."), "t3.large is not in the plan"),
        (plan_point(fields=[]), "names no spec field"),
    ],
    ids=["unknown-field", "wrong-provenance", "made-up-size", "no-field"],
)
def test_compiler_rejects_an_answer_the_spec_does_not_support(
    plan_inputs: CompilerInput, point: dict[str, Any], why: str
) -> None:
    result, _advisor = ask(
        Compiler(),
        plan_inputs,
        enough(),
        answer(PlanExplanation, {"headline": "h", "points": [point]}),
    )

    assert_fell_back(result, Compiler(), plan_inputs, why)


def test_compiler_falls_back_on_an_answer_that_does_not_fit(plan_inputs: CompilerInput) -> None:
    result, _advisor = ask(
        Compiler(), plan_inputs, enough(), answer(PlanExplanation, {"headline": "h", "points": 3})
    )

    assert_fell_back(result, Compiler(), plan_inputs, "does not fit PlanExplanation")


# --- Provisioner ------------------------------------------------------------------------

NOT_SUPPORTED = (
    "Your requested instance type (t3.small) is not supported in your requested Availability "
    "Zone (us-east-1e). Please retry your request by not specifying an Availability Zone or "
    "choosing us-east-1a, us-east-1b. (Service: Ec2, Status Code: 400)"
)
CANCELLED = "Resource creation cancelled"


def event(
    seconds: float, logical_id: str, kind: str, status: str, reason: str = ""
) -> dict[str, Any]:
    """A DescribeStackEvents item, `seconds` after T0."""
    return {
        "LogicalResourceId": logical_id,
        "ResourceType": kind,
        "ResourceStatus": status,
        "ResourceStatusReason": reason or None,
        "Timestamp": T0 + timedelta(seconds=seconds),
    }


STACK_TYPE = "AWS::CloudFormation::Stack"
FAILED_CREATE = [
    event(0, STACK, STACK_TYPE, "CREATE_IN_PROGRESS", "User Initiated"),
    event(2, "Vpc", "AWS::EC2::VPC", "CREATE_IN_PROGRESS"),
    event(3, "Vpc", "AWS::EC2::VPC", "CREATE_IN_PROGRESS", "Resource creation Initiated"),
    event(15, "Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE"),
    event(16, "DatabaseInstance", "AWS::RDS::DBInstance", "CREATE_IN_PROGRESS"),
    event(18, "NatGateway1", "AWS::EC2::NatGateway", "CREATE_IN_PROGRESS"),
    event(40, "WebBlue1", "AWS::EC2::Instance", "CREATE_IN_PROGRESS"),
    # The same second: CloudFormation cancels the others as the instance fails.
    event(52, "DatabaseInstance", "AWS::RDS::DBInstance", "CREATE_FAILED", CANCELLED),
    event(52, "NatGateway1", "AWS::EC2::NatGateway", "CREATE_FAILED", CANCELLED),
    event(52, "WebBlue1", "AWS::EC2::Instance", "CREATE_FAILED", NOT_SUPPORTED),
    event(53, STACK, STACK_TYPE, "ROLLBACK_IN_PROGRESS",
          "The following resource(s) failed to create: [DatabaseInstance, NatGateway1, WebBlue1]. "
          "Rollback requested by user."),
    event(54, "DatabaseInstance", "AWS::RDS::DBInstance", "DELETE_IN_PROGRESS"),
    event(410, "DatabaseInstance", "AWS::RDS::DBInstance", "DELETE_COMPLETE"),
    event(411, "Vpc", "AWS::EC2::VPC", "DELETE_IN_PROGRESS"),
    event(420, "Vpc", "AWS::EC2::VPC", "DELETE_COMPLETE"),
    event(421, STACK, STACK_TYPE, "ROLLBACK_COMPLETE"),
]  # fmt: skip
FAILED_INPUT = ProvisionerInput.from_api(STACK, reversed(FAILED_CREATE))  # newest first


@pytest.mark.parametrize("order", ["newest first", "oldest first"])
def test_provisioner_finds_the_root_failure_not_the_cancellations(order: str) -> None:
    events = reversed(FAILED_CREATE) if order == "newest first" else FAILED_CREATE
    report = ProvisionerAgent().fallback(ProvisionerInput.from_api(STACK, events))

    assert report.outcome == "failed"
    root = report.root_failure
    assert root is not None
    assert (root.logical_id, root.status, root.reason) == (
        "WebBlue1",
        "CREATE_FAILED",
        NOT_SUPPORTED,
    )
    assert root.explanation == "The region or account does not support this setting."
    assert report.headline == (
        f"Creating {STACK} failed after 7m01s: WebBlue1 (EC2 Instance): {NOT_SUPPORTED}"
    )
    assert report.seconds == 421
    slowest = [(t.logical_id, t.action, t.seconds, t.status) for t in report.slowest[:3]]
    assert slowest == [
        ("DatabaseInstance", "delete", 356.0, "DELETE_COMPLETE"),
        ("DatabaseInstance", "create", 36.0, "CREATE_FAILED"),
        ("NatGateway1", "create", 34.0, "CREATE_FAILED"),
    ]


def test_provisioner_reads_only_the_latest_operation() -> None:
    earlier = [event(s - 3600, *rest) for s, *rest in (
        (0, STACK, STACK_TYPE, "CREATE_IN_PROGRESS", "User Initiated"),
        (30, "WebBlue1", "AWS::EC2::Instance", "CREATE_FAILED", NOT_SUPPORTED),
        (40, STACK, STACK_TYPE, "ROLLBACK_COMPLETE"),
    )]  # fmt: skip
    created = [
        event(0, STACK, STACK_TYPE, "CREATE_IN_PROGRESS", "User Initiated"),
        event(1, "Vpc", "AWS::EC2::VPC", "CREATE_IN_PROGRESS"),
        event(14, "Vpc", "AWS::EC2::VPC", "CREATE_COMPLETE"),
        event(15, "DatabaseInstance", "AWS::RDS::DBInstance", "CREATE_IN_PROGRESS"),
        event(615, "DatabaseInstance", "AWS::RDS::DBInstance", "CREATE_COMPLETE"),
        event(616, STACK, STACK_TYPE, "CREATE_COMPLETE"),
    ]

    report = ProvisionerAgent().fallback(ProvisionerInput.from_api(STACK, earlier + created))

    assert report.outcome == "succeeded" and report.root_failure is None
    assert report.headline == (
        f"Created {STACK} in 10m16s: 2 resources; "
        "slowest: DatabaseInstance (RDS DBInstance, 10m00s)"
    )


def provisioning(**changes: Any) -> dict[str, Any]:
    return {
        "outcome": "failed",
        "headline": "The stack failed: t3.small is not offered in us-east-1e.",
        "seconds": 421,
        "slowest": [{"logical_id": "DatabaseInstance", "resource_type": "AWS::RDS::DBInstance",
                     "action": "delete", "seconds": 356, "status": "DELETE_COMPLETE"}],
        "root_failure": {"logical_id": "WebBlue1", "resource_type": "AWS::EC2::Instance",
                         "status": "CREATE_FAILED", "reason": NOT_SUPPORTED,
                         "explanation": "That zone has no t3.small; let EC2 pick the zone."},
        **changes,
    }  # fmt: skip


def test_provisioner_uses_a_valid_model_answer() -> None:
    result, _advisor = ask(
        ProvisionerAgent(),
        FAILED_INPUT,
        tool_round("resource_events", {"logical_id": "WebBlue1"}),
        enough(),
        answer(ProvisioningReport, provisioning()),
    )

    assert result.source == "model"
    assert result.value.root_failure is not None
    assert result.value.root_failure.explanation.startswith("That zone has no t3.small")


@pytest.mark.parametrize(
    ("report", "why"),
    [
        (provisioning(root_failure={"logical_id": "DatabaseInstance",
                                    "resource_type": "AWS::RDS::DBInstance",
                                    "status": "CREATE_FAILED", "reason": CANCELLED,
                                    "explanation": "The database failed."}),
         "is a consequence, not a cause"),
        (provisioning(root_failure={"logical_id": "WebBlue1", "resource_type": "AWS::EC2::Instance",
                                    "status": "CREATE_FAILED",
                                    "reason": "The instance type is not supported.",
                                    "explanation": "x"}),
         "no event of WebBlue1 says"),
        (provisioning(root_failure={"logical_id": STACK, "resource_type": STACK_TYPE,
                                    "status": "ROLLBACK_COMPLETE", "reason": "",
                                    "explanation": "The stack rolled back."}),
         "the stack's own status is not the cause"),
        (provisioning(outcome="succeeded", root_failure=None), "events say failed"),
        (provisioning(slowest=[{"logical_id": "Vpc", "resource_type": "AWS::EC2::VPC",
                                "action": "create", "seconds": 300, "status": "CREATE_COMPLETE"}]),
         "Vpc took 13 s, not 300 s"),
    ],
    ids=[
        "cancellation-as-root", "paraphrased-reason", "stack-as-root", "wrong-outcome",
        "made-up-duration",
    ],
)  # fmt: skip
def test_provisioner_rejects_an_answer_the_events_do_not_support(
    report: dict[str, Any], why: str
) -> None:
    result, _advisor = ask(
        ProvisionerAgent(), FAILED_INPUT, enough(), answer(ProvisioningReport, report)
    )

    assert_fell_back(result, ProvisionerAgent(), FAILED_INPUT, why)


def test_provisioner_falls_back_on_an_answer_that_does_not_fit() -> None:
    result, _advisor = ask(
        ProvisionerAgent(),
        FAILED_INPUT,
        enough(),
        answer(ProvisioningReport, provisioning(outcome="exploded")),
    )

    assert_fell_back(result, ProvisionerAgent(), FAILED_INPUT, "does not fit ProvisioningReport")


# --- Deployer ---------------------------------------------------------------------------

FIRST, SECOND = "i-0a1b2c3d4e5f60001", "i-0a1b2c3d4e5f60002"


def release(instance_id: str, address: str, **seconds: float) -> InstanceRelease:
    return InstanceRelease(
        instance_id=instance_id,
        address=address,
        release_id="20261103T100000Z-3f2a9c1",
        commit="3f2a9c1",
        seconds=seconds,
        kept_releases=["20261103T100000Z-3f2a9c1"],
    )


RELEASES = (
    release(FIRST, "10.0.2.11", upload=1.2, build=48.3, start=2.1, healthy=3.4),
    release(SECOND, "10.0.3.12", upload=1.1, build=51.0, start=2.0, healthy=3.9),
)
PIP_FAILED = DeployFailed(
    f"build failed on {SECOND} (10.0.3.12)",
    where=f"deploy, build on {SECOND}",
    cause="ERROR: No matching distribution found for flask==9.9.9",
    details=[
        "exit code 1",
        "command: sudo -u hm-flask-notes -H bash -c 'python3.11 -m venv .venv && "
        ". .venv/bin/activate && pip install -r requirements.txt' (in /opt/hivemind/flask-...",
        "stderr: ERROR: Could not find a version that satisfies the requirement flask==9.9.9 "
        "(from versions: 0.1, 3.1.0)",
        "stderr: ERROR: No matching distribution found for flask==9.9.9",
    ],
)


def test_deployer_finds_the_slowest_step_and_suggests_a_lockfile(spec: DeploymentSpec) -> None:
    report = DeployerAgent().fallback(DeployerInput(releases=RELEASES, spec=spec))

    assert report.succeeded and report.failure is None
    assert report.slowest_step is not None
    assert (report.slowest_step.step, report.slowest_step.seconds) == ("build", 51.0)
    assert report.slowest_step.instance_id == SECOND
    assert report.slowest_step.mean_seconds == 49.6
    assert [t.step for t in report.steps] == ["build", "healthy", "start", "upload"]
    assert report.headline == (
        "Release 20261103T100000Z-3f2a9c1 runs on 2 instance(s); the slowest step was build "
        f"(51.0s on {SECOND})."
    )
    (note,) = report.notes
    assert note.startswith("The build takes 51s of 58s on the slowest instance")
    assert "lock file" in note and "wheels" in note


def test_deployer_explains_a_rolling_updates_drain_and_register(spec: DeploymentSpec) -> None:
    rolled = (
        release(FIRST, "10.0.2.11", drain=30.2, upload=0.3, build=8.1, start=1.6, register=16.1),
        release(SECOND, "10.0.3.12", drain=30.1, upload=0.3, build=7.4, start=1.5, register=16.0),
    )
    report = DeployerAgent().fallback(DeployerInput(releases=rolled, spec=spec))
    assert report.slowest_step is not None and report.slowest_step.step == "drain"
    assert any("draining (the target group's deregistration delay)" in n for n in report.notes)
    assert "deregistration delay" in STEPS["drain"] and "healthy" in STEPS["register"]


def test_deployer_points_at_an_instance_much_slower_than_the_others(spec: DeploymentSpec) -> None:
    slow = release(SECOND, "10.0.3.12", upload=1.1, build=130.0, start=2.0, healthy=3.9)

    report = DeployerAgent().fallback(DeployerInput(releases=(RELEASES[0], slow), spec=spec))

    assert any(
        n.startswith(f"{SECOND} took 130s for build, 2.7x as long as {FIRST}") for n in report.notes
    )


def test_deployer_explains_a_failed_build_from_its_stderr(spec: DeploymentSpec) -> None:
    failure = DeployFailure.from_error(PIP_FAILED)
    assert (failure.step, failure.instance_id, failure.exit_code) == ("build", SECOND, 1)
    inputs = DeployerInput(releases=RELEASES[:1], failure=failure, spec=spec)

    report = DeployerAgent().fallback(inputs)

    assert not report.succeeded
    assert report.headline == (
        f"The deploy failed at the build step on {SECOND}: "
        "ERROR: No matching distribution found for flask==9.9.9"
    )
    explained = report.failure
    assert explained is not None
    assert explained.what_the_step_does.startswith("building the release on the instance")
    assert explained.what_went_wrong.startswith("A Python dependency could not be installed")
    assert explained.evidence[-1] == "ERROR: No matching distribution found for flask==9.9.9"


def test_deployer_explains_an_app_that_never_answered(spec: DeploymentSpec) -> None:
    never = DeployFailed(
        f"health check failed on {FIRST} (10.0.2.11)",
        where=f"deploy, health check on {FIRST}",
        cause="the app did not answer at http://10.0.2.11:5000/health within 90 s: "
        "<urlopen error [Errno 111] Connection refused>",
        details=[
            "exit code 1",
            "command: sudo python3 -c '...'",
            "stderr: the app did not answer at http://10.0.2.11:5000/health within 90 s: "
            "<urlopen error [Errno 111] Connection refused>",
            "app log: [INFO] Listening at: http://127.0.0.1:8000 (1234)",
        ],
    )

    report = DeployerAgent().fallback(
        DeployerInput(failure=DeployFailure.from_error(never), spec=spec)
    )

    assert report.failure is not None
    assert report.failure.what_went_wrong == (
        "The app did not answer on its port: it must listen on 0.0.0.0 and the port HiveMind "
        "sets in $PORT (5000)."
    )
    assert "[INFO] Listening at: http://127.0.0.1:8000 (1234)" in report.failure.evidence


def test_deployer_reads_the_load_balancers_unhealthy_targets(spec: DeploymentSpec) -> None:
    unhealthy = TargetsUnhealthy(
        [TargetHealth(FIRST, "unhealthy", "Target.ResponseCodeMismatch",
                      "Health checks failed with these codes: [404]")],
        "the load balancer did not report every instance healthy within 300 s",
        where="deploy, load balancer health checks",
        cause=f"{FIRST} is unhealthy (Target.ResponseCodeMismatch Health checks failed with "
        "these codes: [404])",
        details=[f"app log of {FIRST}:", '  10.0.0.5 - - "GET /health HTTP/1.1" 404 207'],
    )  # fmt: skip

    failure = DeployFailure.from_error(unhealthy)
    report = DeployerAgent().fallback(DeployerInput(releases=RELEASES, failure=failure, spec=spec))

    assert (failure.step, failure.instance_id) == ("load balancer health check", FIRST)
    assert report.failure is not None
    assert "the health path must answer 200-399" in report.failure.what_went_wrong
    assert report.failure.evidence == ['10.0.0.5 - - "GET /health HTTP/1.1" 404 207']


def deploy_report(**changes: Any) -> dict[str, Any]:
    return {
        "succeeded": True,
        "headline": "Both instances run the release; the build was the slow part.",
        "slowest_step": {"step": "build", "seconds": 51.0, "instance_id": SECOND,
                         "mean_seconds": 49.65},
        "notes": ["pip compiles packages on each instance: pin versions with hashes."],
        **changes,
    }  # fmt: skip


def test_deployer_uses_a_valid_model_answer(spec: DeploymentSpec) -> None:
    inputs = DeployerInput(releases=RELEASES, spec=spec)

    result, _advisor = ask(
        DeployerAgent(),
        inputs,
        tool_round("step_times", {"step": "build"}),
        enough(),
        answer(DeployReport, deploy_report()),
    )

    assert result.source == "model"
    assert result.value.notes == [
        "pip compiles packages on each instance: pin versions with hashes."
    ]


@pytest.mark.parametrize(
    ("report", "why"),
    [
        (deploy_report(notes=["i-0deadbeef0000000 is slow."]), "i-0deadbeef0000000 is not one"),
        (deploy_report(slowest_step={"step": "upload", "seconds": 1.2, "instance_id": FIRST,
                                     "mean_seconds": 1.15}),
         "the slowest step is build, not upload"),
        (deploy_report(slowest_step={"step": "migrate", "seconds": 60, "instance_id": FIRST,
                                     "mean_seconds": 60}),
         "no instance has a 'migrate' step"),
        (deploy_report(succeeded=False), "succeeded disagrees"),
    ],
    ids=["unknown-instance", "not-the-slowest", "unknown-step", "verdict"],
)  # fmt: skip
def test_deployer_rejects_an_answer_the_timings_do_not_support(
    spec: DeploymentSpec, report: dict[str, Any], why: str
) -> None:
    inputs = DeployerInput(releases=RELEASES, spec=spec)

    result, _advisor = ask(DeployerAgent(), inputs, enough(), answer(DeployReport, report))

    assert_fell_back(result, DeployerAgent(), inputs, why)


def test_deployer_rejects_evidence_that_is_not_in_the_failure(spec: DeploymentSpec) -> None:
    inputs = DeployerInput(failure=DeployFailure.from_error(PIP_FAILED), spec=spec)
    made_up = deploy_report(
        succeeded=False,
        slowest_step=None,
        failure={"step": "build", "instance_id": SECOND, "what_the_step_does": "pip install",
                 "what_went_wrong": "flask 9.9.9 does not exist",
                 "evidence": ["ERROR: flask 9.9.9 was yanked"]},
    )  # fmt: skip

    result, _advisor = ask(DeployerAgent(), inputs, enough(), answer(DeployReport, made_up))

    assert_fell_back(result, DeployerAgent(), inputs, "is not in the failure's output")


def test_deployer_falls_back_on_an_answer_that_does_not_fit(spec: DeploymentSpec) -> None:
    inputs = DeployerInput(releases=RELEASES, spec=spec)

    result, _advisor = ask(
        DeployerAgent(), inputs, enough(), answer(DeployReport, {"headline": ["not", "text"]})
    )

    assert_fell_back(result, DeployerAgent(), inputs, "does not fit DeployReport")


# --- QA ---------------------------------------------------------------------------------

URL = "http://hivemind-notes-1234.us-east-1.elb.amazonaws.com"


def check(
    name: str, status: Literal["passed", "failed", "not_applicable"], detail: str
) -> CheckResult:
    return CheckResult(name=name, status=status, detail=detail, seconds=0.05)


PASSING_CHECKS = (
    check("http health", "passed", f"GET {URL}/health: HTTP 200 in 35 ms"),
    check("http /", "passed", f"GET {URL}/: HTTP 200 in 41 ms"),
    check("load balancer port 80", "passed", f"{URL[7:]}:80 accepts connections"),
    check(f"app port 5000 on {FIRST}", "passed", "10.0.2.11:5000 accepts connections"),
    check(f"app port 5000 on {SECOND}", "passed", "10.0.3.12:5000 accepts connections"),
    check("database", "passed", f"db.example:5432 accepts connections from {FIRST}"),
    check("tls", "not_applicable", "HTTPS is off (no certificate in the spec)"),
)
FAILING_CHECKS = (
    check("http health", "failed", f"GET {URL}/health: HTTP 502 in 12 ms"),
    *PASSING_CHECKS[1:4],
    check(f"app port 5000 on {SECOND}", "failed", "10.0.3.12:5000: [Errno 111] Connection refused"),
    *PASSING_CHECKS[5:],
)


def test_qa_passes_a_deployment_whose_checks_all_passed(spec: DeploymentSpec) -> None:
    verdict = QA().fallback(QAInput(checks=PASSING_CHECKS, deployment_id=DEPLOYMENT, spec=spec))

    assert verdict.passed and verdict.failing == []
    assert verdict.summary.startswith(
        f"All 6 applicable checks passed: http health (GET {URL}/health: HTTP 200 in 35 ms); "
    )
    assert verdict.summary.endswith(
        "Not applicable: tls (HTTPS is off (no certificate in the spec))."
    )


def test_qa_explains_failed_checks_cause_first(spec: DeploymentSpec) -> None:
    verdict = QA().fallback(QAInput(checks=FAILING_CHECKS, deployment_id=DEPLOYMENT, spec=spec))

    assert not verdict.passed
    assert [f.name for f in verdict.failing] == [f"app port 5000 on {SECOND}", "http health"]
    app_port, health = verdict.failing
    assert "not listening on port 5000" in app_port.explanation
    assert f"`hivemind status {DEPLOYMENT} --show-logs`" in app_port.next_step
    assert health.explanation.startswith("The load balancer got no valid answer")
    assert verdict.summary.startswith("2 of 6 applicable checks failed: app port 5000 on")


def qa_verdict(**changes: Any) -> dict[str, Any]:
    return {
        "passed": False,
        "summary": f"{SECOND} does not run the app, so the load balancer answers 502.",
        "failing": [{"name": f"app port 5000 on {SECOND}",
                     "explanation": "Nothing listens on 5000 there.",
                     "next_step": "Read that instance's app log."}],
        **changes,
    }  # fmt: skip


def test_qa_uses_a_valid_model_answer_and_adds_the_failures_it_missed(
    spec: DeploymentSpec,
) -> None:
    inputs = QAInput(checks=FAILING_CHECKS, deployment_id=DEPLOYMENT, spec=spec)

    result, _advisor = ask(QA(), inputs, answer(QAVerdict, qa_verdict()))

    assert result.source == "model"
    assert [f.name for f in result.value.failing] == [f"app port 5000 on {SECOND}", "http health"]
    assert result.value.failing[0].explanation == "Nothing listens on 5000 there."


@pytest.mark.parametrize(
    ("verdict", "why"),
    [
        (qa_verdict(passed=True), "2 check\\(s\\) failed: passed must be False"),
        (qa_verdict(failing=[{"name": "database", "explanation": "e", "next_step": "n"}]),
         "the check 'database' did not fail"),
        (qa_verdict(failing=[{"name": "redis", "explanation": "e", "next_step": "n"}]),
         "there is no check named 'redis'"),
    ],
    ids=["verdict", "passed-check-as-failing", "unknown-check"],
)  # fmt: skip
def test_qa_rejects_an_answer_the_checks_do_not_support(
    spec: DeploymentSpec, verdict: dict[str, Any], why: str
) -> None:
    inputs = QAInput(checks=FAILING_CHECKS, deployment_id=DEPLOYMENT, spec=spec)

    result, _advisor = ask(QA(), inputs, answer(QAVerdict, verdict))

    assert_fell_back(result, QA(), inputs, why)


def test_qa_falls_back_on_an_answer_that_does_not_fit(spec: DeploymentSpec) -> None:
    inputs = QAInput(checks=FAILING_CHECKS, deployment_id=DEPLOYMENT, spec=spec)

    result, _advisor = ask(QA(), inputs, answer(QAVerdict, {"passed": "perhaps"}))

    assert_fell_back(result, QA(), inputs, "does not fit QAVerdict")


# --- Ops --------------------------------------------------------------------------------

DB_DOWN = "OperationalError: could not connect to server: Connection refused"
ERRORS = (
    LogErrorGroup(
        pattern="HTTP 500: GET /notes", kind="http_5xx", count=140,
        sample='10.0.0.5 - - "GET /notes HTTP/1.1" 500 265',
        first_seen=T0, last_seen=T0 + timedelta(minutes=29), source=FIRST,
    ),
    LogErrorGroup(
        pattern=DB_DOWN, kind="exception", count=143,
        sample="psycopg2.OperationalError: could not connect to server: Connection refused",
        first_seen=T0, last_seen=T0 + timedelta(minutes=30), source=f"{FIRST}, {SECOND}",
        location="app.py:41 in list_notes",
    ),
)  # fmt: skip
UNHEALTHY = MetricAnomaly(
    metric="UnHealthyHostCount", resource="targetgroup/blue", value=2, z_score=8.1,
    at=T0 + timedelta(minutes=28), baseline=0,
)  # fmt: skip
CPU_DROP = MetricAnomaly(
    metric="CPUUtilization", resource=FIRST, value=1.2, z_score=-3.9, at=T0, unit="%", baseline=14,
)  # fmt: skip
OUTAGE = OpsInput(
    deployment_id=DEPLOYMENT, log_errors=ERRORS, anomalies=(CPU_DROP, UNHEALTHY),
    window_minutes=60, dashboard="hivemind-flask-notes",
)  # fmt: skip


def test_ops_ranks_an_outage_unhealthy_targets_first_then_the_cause_in_the_log() -> None:
    report = Ops().fallback(OUTAGE)

    assert report.health == "failing"
    subjects = [f.subject for f in report.findings]
    assert subjects == [
        "UnHealthyHostCount on targetgroup/blue", DB_DOWN, "HTTP 500: GET /notes",
        f"CPUUtilization on {FIRST}",
    ]  # fmt: skip
    assert [f.severity for f in report.findings] == ["critical", "warning", "warning", "info"]
    database = report.findings[1]
    assert "143 time(s) over 30 minute(s)" in database.what
    assert "(at app.py:41 in list_notes)" in database.what
    assert database.look_next.startswith(f"`hivemind status {DEPLOYMENT} --show-logs`")
    assert report.summary.startswith(f"{DEPLOYMENT} is failing in the last 60 minutes (1 critical")


def test_ops_calls_a_quiet_deployment_healthy_and_errors_alone_degraded() -> None:
    quiet = Ops().fallback(OpsInput(deployment_id=DEPLOYMENT, anomalies=(CPU_DROP,)))
    erring = Ops().fallback(OpsInput(deployment_id=DEPLOYMENT, log_errors=ERRORS[1:]))

    assert quiet.health == "healthy"
    assert erring.health == "degraded"
    assert Ops().fallback(OpsInput(deployment_id=DEPLOYMENT)).summary == (
        f"{DEPLOYMENT} is healthy: no log errors and no unusual metrics in the last 60 minutes."
    )


def ops_report(**changes: Any) -> dict[str, Any]:
    return {
        "health": "failing",
        "summary": "The database refuses connections; both targets are unhealthy.",
        "findings": [
            {"kind": "log", "subject": DB_DOWN, "severity": "critical",
             "what": "143 connection errors in 30 minutes.",
             "look_next": f"hivemind status {DEPLOYMENT} --show-logs"},
            {"kind": "metric", "subject": "UnHealthyHostCount on targetgroup/blue",
             "severity": "critical", "what": "2 unhealthy targets.",
             "look_next": "the target group's health"},
        ],
        **changes,
    }  # fmt: skip


def test_ops_uses_a_valid_model_answer() -> None:
    result, _advisor = ask(Ops(), OUTAGE, answer(HealthReport, ops_report()))

    assert result.source == "model"
    assert result.value.findings[0].subject == DB_DOWN


def test_ops_adds_the_critical_finding_a_model_left_out() -> None:
    report = ops_report()
    report["findings"] = report["findings"][:1]

    result, _advisor = ask(Ops(), OUTAGE, answer(HealthReport, report))

    assert result.source == "model"
    assert [f.subject for f in result.value.findings] == [
        DB_DOWN,
        "UnHealthyHostCount on targetgroup/blue",
    ]


@pytest.mark.parametrize(
    ("report", "why"),
    [
        (ops_report(findings=[{"kind": "log", "subject": "MemoryError", "severity": "critical",
                               "what": "w", "look_next": "n"}]),
         "'MemoryError' is not among the log findings"),
        (ops_report(findings=[{"kind": "metric", "subject": "CPUUtilization on i-0ffff",
                               "severity": "warning", "what": "w", "look_next": "n"}]),
         "is not among the metric findings"),
        (ops_report(health="healthy"), "the data says failing, not healthy"),
    ],
    ids=["unknown-log", "unknown-metric", "verdict"],
)  # fmt: skip
def test_ops_rejects_an_answer_the_data_does_not_support(report: dict[str, Any], why: str) -> None:
    result, _advisor = ask(Ops(), OUTAGE, answer(HealthReport, report))

    assert_fell_back(result, Ops(), OUTAGE, why)


def test_ops_falls_back_on_an_answer_that_does_not_fit() -> None:
    result, _advisor = ask(Ops(), OUTAGE, answer(HealthReport, ops_report(health="on fire")))

    assert_fell_back(result, Ops(), OUTAGE, "does not fit HealthReport")


# --- tools, as the Advisor hands them to a model ----------------------------------------


def test_every_tool_runs_as_a_model_calls_it(
    spec: DeploymentSpec, ssh_spec: DeploymentSpec, plan_inputs: CompilerInput
) -> None:
    from langchain_core.tools import StructuredTool

    cases: list[tuple[Agent[Any, Any], Any, str, dict[str, str], str]] = [
        (Sheriff(), SheriffInput(findings=(SSH_TO_THE_WORLD,), spec=ssh_spec), "rule_notes",
         {"rule": "AwsSolutions-EC23"}, "what: A security group accepts connections"),
        (Janitor(), FAILED_DELETE, "template_resource", {"logical_id": "DatabaseInstance"},
         '"DeletionProtection": true'),
        (Compiler(), plan_inputs, "cost_of", {"resource_type": "AWS::EC2::NatGateway"},
         "total $65.70/month"),
        (ProvisionerAgent(), FAILED_INPUT, "resource_events", {"logical_id": "WebBlue1"},
         f"CREATE_FAILED {NOT_SUPPORTED}"),
        (DeployerAgent(), DeployerInput(releases=RELEASES, spec=spec), "step_times",
         {"step": "build"}, f"{SECOND}: 51.0s"),
    ]  # fmt: skip
    for agent, inputs, name, args, expected in cases:
        structured = StructuredTool.from_function(tool(agent, inputs, name))

        assert expected in str(structured.invoke(args)), (agent.name, name)
