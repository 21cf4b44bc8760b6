"""Medic: why a deployment failed, with evidence, and the fix to apply before resuming.

A failed stage is described by a `Failure`: the error's headline and cause line,
CloudFormation's other status reasons, the failed SSH command's output, the load
balancer's health reason and the app's log tail. `classify` reads every line of it
against a table of rules (`RULES`) and returns a `Diagnosis`: one `Cause`, a plain
summary, the lines that show it (copied verbatim) and, where one exists, a `Fix`: a
change to the spec, the environment variables to give, a command to run, or the IAM
statement the operator lacks.

The rules are tried tier by tier. In the first tier, AWS's own reasons, the reason on
the earliest line wins, so the first root reason among several CloudFormation reasons
is the one reported; later tiers are tried in order. A line such as "Resource creation
cancelled" is a consequence of another resource's failure, never a cause, unless it is
all there is. `Medic` is the LLM agent around the same contract: `classify` is its
fallback and `Medic.check` holds a model's answer to the same standard (evidence found
verbatim, spec changes that make a valid spec, a port or an IAM action that the evidence
shows).

The corpus of real failure messages that measures `classify` lives in
`tests/data/medic_corpus.jsonl` (`read_corpus`); `bench/medic_accuracy.py` reports it.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, cast, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from hivemind.cost import DEFAULT_PRICES
from hivemind.errors import BadInputError
from hivemind.spec import (
    DEFAULT_ROOT_VOLUME_GB,
    ENV_VAR_PATTERN,
    PROVIDED_DATABASE_ENV_VARS,
    SUPPORTED_ENGINE_VERSIONS,
    AccessSpec,
    AppSpec,
    ComputeSpec,
    DatabaseSpec,
    DeploymentSpec,
    Provenance,
    Source,
    field_paths,
)

from .base import Agent, Rejected

Cause = Literal[
    "missing_permission",
    "service_quota",
    "capacity",
    "invalid_parameter",
    "wrong_port",
    "health_check_mismatch",
    "missing_env_var",
    "database_unreachable",
    "build_failure",
    "timeout",
    "throttling",
    "resources_exhausted",
    "unknown",
]
CAUSES: tuple[Cause, ...] = get_args(Cause)


class Failure(BaseModel):
    """What is known about a failed stage: everything Medic reads."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    deployment_id: str
    stage: str  # synth, bootstrap, provision, deploy, verify
    what: str  # the error's headline
    cause: str = ""  # the error's cause line (e.g. CloudFormation's status reason)
    details: list[str] = Field(default_factory=list)  # more reasons, one per line
    command_output: str = ""  # the failed SSH command's stderr/stdout tail
    health_reason: str = ""  # the load balancer's reason code and description
    app_log: list[str] = Field(default_factory=list)  # the app's log tail
    # Errors Ops found in the app's recent CloudWatch log ("3 x KeyError: 'X' (app.py:9)").
    log_errors: list[str] = Field(default_factory=list)
    # What the deployment's metrics showed meanwhile: memory or disk running out
    # ("memory % i-0abc reached 97.4% at 10:41:05 UTC ...") and anomalies.
    metrics: list[str] = Field(default_factory=list)
    spec: DeploymentSpec | None = None


class PermissionFix(BaseModel):
    """The IAM statement the operator's identity lacks."""

    action: str = Field(description="the IAM action, e.g. ec2:RunInstances")
    resource: str = Field("*", description="the resource ARN from the message, or *")
    statement: dict[str, object] = Field(description="the IAM policy statement to add")


class Fix(BaseModel):
    """A concrete fix: a change to the spec, a command for the user, or both."""

    explanation: str = Field(description="what the fix does and why, in one or two sentences")
    spec_changes: dict[str, str | int | bool | None] = Field(
        default_factory=dict,
        description="dotted spec paths to new values, e.g. {'compute.instance_type': "
        "'t3a.small'}; empty when the fix is not a spec change",
    )
    env_needed: list[str] = Field(
        default_factory=list,
        description="environment variables whose values the user must give (the fix asks)",
    )
    command: str | None = Field(None, description="a command for the user to run, if any")
    permission: PermissionFix | None = None


class Diagnosis(BaseModel):
    """Medic's answer: the cause, the evidence (verbatim lines), and the fix if any."""

    cause: Cause
    summary: str = Field(description="the cause in plain words, one sentence")
    evidence: list[str] = Field(
        description="lines copied exactly from the failure's text that show the cause"
    )
    fix: Fix | None = None


# --- the failure as lines ----------------------------------------------------------------

# CloudFormation's words for a resource stopped because another one failed, and for the
# stack's summary of what failed: neither says why.
CANCELLED = re.compile(r"Resource (?:creation|update|deletion) cancelled", re.IGNORECASE)
CONSEQUENCE = re.compile(
    CANCELLED.pattern + r"|The following resource\(s\) failed to (?:create|update|delete)",
    re.IGNORECASE,
)
MAX_EVIDENCE = 5


@dataclass(frozen=True)
class Line:
    """One line of a failure's text, and the field it came from."""

    source: str  # cause, details, command_output, health_reason, app_log, metrics, what
    text: str  # stripped, a verbatim substring of the field
    consequence: bool  # CloudFormation cancelled it because something else failed


def failure_lines(failure: Failure) -> list[Line]:
    """Every non-blank line Medic reads, in the order it weighs them: the cause line,
    the other reasons, the command's output, the health reason, the app log, what the
    metrics showed, the headline."""
    fields: list[tuple[str, Iterable[str]]] = [
        ("cause", [failure.cause]),
        ("details", failure.details),
        ("command_output", [failure.command_output]),
        ("health_reason", [failure.health_reason]),
        ("app_log", failure.app_log),
        ("metrics", failure.metrics),
        ("what", [failure.what]),
    ]
    lines: list[Line] = []
    for source, texts in fields:
        for text in texts:
            for raw in text.splitlines():
                stripped = raw.strip()
                if stripped:
                    consequence = CONSEQUENCE.search(stripped) is not None
                    lines.append(Line(source, stripped, consequence))
    return lines


def failure_text(failure: Failure) -> str:
    """All of the failure's text, as evidence must quote it."""
    return "\n".join(line.text for line in failure_lines(failure))


# --- rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    line: Line
    match: re.Match[str]


@dataclass(frozen=True)
class Finding:
    """A rule's patterns matched: on which lines, in which failure."""

    failure: Failure
    hits: tuple[Hit, ...]
    lines: tuple[Line, ...]  # all of the failure's lines

    def first(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        """The pattern's first match on a matched line, else on any line."""
        for line in [h.line for h in self.hits] + list(self.lines):
            found = pattern.search(line.text)
            if found is not None:
                return found
        return None

    def line_with(self, pattern: re.Pattern[str]) -> str | None:
        for line in self.lines:
            if pattern.search(line.text):
                return line.text
        return None

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


@dataclass(frozen=True)
class Verdict:
    """What a rule concluded: the summary, the fix, and lines that add to the evidence."""

    summary: str
    fix: Fix | None = None
    evidence: tuple[str, ...] = ()


def _always(_failure: Failure) -> bool:
    return True


@dataclass(frozen=True)
class Rule:
    """Lines matching any of `patterns` (in a failure `when` accepts) show `cause`;
    `explain` writes the verdict, or returns None when the match is not the cause after
    all. Consequence lines match only a rule that asks for them."""

    cause: Cause
    patterns: tuple[re.Pattern[str], ...]
    explain: Callable[[Finding], Verdict | None]
    when: Callable[[Failure], bool] = _always
    consequences: bool = False

    def find(self, failure: Failure, lines: Sequence[Line]) -> Finding | None:
        if not self.when(failure):
            return None
        hits = []
        for line in lines:
            if line.consequence and not self.consequences:
                continue
            for pattern in self.patterns:
                found = pattern.search(line.text)
                if found is not None:
                    hits.append(Hit(line, found))
                    break
        return Finding(failure, tuple(hits), tuple(lines)) if hits else None


def _compile(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


def _retry(failure: Failure, extra: str = "") -> str:
    return f"hivemind retry {failure.deployment_id}{extra}"


def _build_step(failure: Failure) -> bool:
    """The failure is the on-box build's (DeployFailed names the step first)."""
    return failure.what.startswith("build failed")


def _not_build_step(failure: Failure) -> bool:
    return not _build_step(failure)


def _region(failure: Failure, text: str) -> str | None:
    if failure.spec is not None:
        return failure.spec.region
    found = re.search(r"arn:aws[\w-]*:[a-z0-9-]+:([a-z]{2}(?:-[a-z]+)+-\d):", text)
    if found is None:
        found = re.search(r"\b([a-z]{2}-[a-z]+-\d)[a-z]\b", text)  # an availability zone
    return found.group(1) if found else None


# missing_permission ----------------------------------------------------------------------

_NOT_AUTHORIZED = re.compile(
    r"(?:User: (?P<principal>arn:aws[\w-]*:(?:iam|sts)::\d{12}:\S+) )?"
    r"is not authorized to perform:? (?P<action>[a-z0-9-]+:[A-Za-z0-9*]+)"
    r"(?: on resource:? (?P<resource>\S+(?: \S+)?))?"
)
_API_ACTION = re.compile(r"\bAPI: (?P<action>[a-z0-9-]+:[A-Za-z0-9]+) You are not authorized")
_OPERATION = re.compile(r"\((?P<code>\w+)\) when calling the (?P<op>\w+) operation")
_SERVICE_OF = re.compile(r"\(Service: (?P<service>[A-Za-z0-9]+)[;,]")
_ENCODED = re.compile(r"Encoded authorization failure message: (?P<message>[\w-]+)")
_EXPLICIT_DENY = re.compile(
    r"with an explicit deny in (?:an? )?(?P<where>identity-based policy|service control policy"
    r"|permissions boundary|resource-based policy|session policy)"
)
_SERVICE_PREFIXES = {
    "ec2": "ec2",
    "amazonec2": "ec2",
    "rds": "rds",
    "amazonrds": "rds",
    "elasticloadbalancingv2": "elasticloadbalancing",
    "amazonelasticloadbalancing": "elasticloadbalancing",
    "iam": "iam",
    "amazonidentitymanagement": "iam",
    "secretsmanager": "secretsmanager",
    "awssecretsmanager": "secretsmanager",
    "ssm": "ssm",
    "awssimplesystemsmanagement": "ssm",
    "cloudwatch": "cloudwatch",
    "amazoncloudwatch": "cloudwatch",
    "cloudwatchlogs": "logs",
    "logs": "logs",
    "awslogs": "logs",
    "cloudformation": "cloudformation",
    "amazoncloudformation": "cloudformation",
    "s3": "s3",
    "amazons3": "s3",
}
# EC2 is the one service whose authorization error has its own code.
_SERVICE_OF_CODE = {"UnauthorizedOperation": "ec2", "Client.UnauthorizedOperation": "ec2"}


@functools.cache
def _known_actions() -> tuple[str, ...]:
    """The actions `hivemind iam-policy` grants."""
    from hivemind.iam_policy import policy_document

    actions: set[str] = set()
    for statement in policy_document()["Statement"]:
        listed = statement["Action"]
        actions.update([listed] if isinstance(listed, str) else listed)
    return tuple(sorted(actions))


def _action_of(finding: Finding) -> tuple[str | None, str, str | None]:
    """The IAM action, resource and principal a permission error names, as far as it
    names them."""
    named = finding.first(_NOT_AUTHORIZED)
    if named is not None:
        resource = (named.group("resource") or "").split(" ")[0].rstrip(".,;)\"'")
        return (
            named.group("action"),
            resource if resource.startswith("arn:") else "*",
            named.group("principal"),
        )
    api = finding.first(_API_ACTION)
    if api is not None:
        return api.group("action"), "*", None
    operation = finding.first(_OPERATION)
    if operation is None:
        return None, "*", None
    op, code = operation.group("op"), operation.group("code")
    service = _SERVICE_OF_CODE.get(code)
    service = service or _service_of(finding)
    if service is not None:
        return f"{service}:{op}", "*", None
    candidates = [a for a in _known_actions() if a.split(":", 1)[1] == op]
    return (candidates[0] if len(candidates) == 1 else None), "*", None


def _principal_name(principal: str | None) -> tuple[str, str] | None:
    """("user", name) or ("role", name) for an IAM user's, role's or assumed role's ARN."""
    if principal is None:
        return None
    kind, _, rest = principal.split(":", 5)[-1].partition("/")
    if kind in ("user", "role"):
        return kind, rest.rsplit("/", 1)[-1]
    if kind == "assumed-role":
        return "role", rest.split("/", 1)[0]
    return None


def _missing_permission(finding: Finding) -> Verdict:
    action, resource, principal = _action_of(finding)
    encoded = finding.first(_ENCODED)
    deny = finding.first(_EXPLICIT_DENY)
    who = _principal_name(principal)
    what = action or "an AWS action"
    if deny is not None:
        where = deny.group("where")
        command = None
        if who is not None and where == "identity-based policy":
            kind, name = who
            command = (
                f"aws iam list-attached-{kind}-policies --{kind}-name {name} && "
                f"aws iam list-{kind}-policies --{kind}-name {name}"
            )
        article = "an" if where[0] in "aeiou" else "a"
        return Verdict(
            f"An explicit Deny in {article} {where} stops {what}; no Allow can override it.",
            Fix(
                explanation=f"Remove or narrow the Deny of {what} in the {where} "
                f"(ask its owner if it is not yours); adding an Allow statement will not help.",
                command=command,
            ),
        )
    if action is None:
        command = (
            f"aws sts decode-authorization-message --encoded-message {encoded.group('message')}"
            if encoded is not None
            else "hivemind iam-policy"
        )
        return Verdict(
            "The AWS identity HiveMind runs as is not allowed to perform a call it needs.",
            Fix(
                explanation="The message does not name the action: "
                + (
                    "decode it to see which action and resource were refused."
                    if encoded is not None
                    else "attach the policy `hivemind iam-policy` prints to the identity."
                ),
                command=command,
            ),
        )
    statement: dict[str, object] = {"Effect": "Allow", "Action": [action], "Resource": resource}
    granted = action in _known_actions()
    if who is not None:
        kind, name = who
        document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
        policy_name = "hivemind-" + action.replace(":", "-").replace("*", "all")
        command = (
            f"aws iam put-{kind}-policy --{kind}-name {name} --policy-name {policy_name} "
            f"--policy-document '{document}'"
        )
    elif encoded is not None:
        command = (
            f"aws sts decode-authorization-message --encoded-message {encoded.group('message')}"
        )
    else:
        command = "hivemind iam-policy"
    already = (
        "`hivemind iam-policy` grants it already: attach that policy, or add this statement."
        if granted
        else "Add this statement to the policy printed by `hivemind iam-policy`."
    )
    return Verdict(
        f"The AWS identity HiveMind runs as is not allowed to perform {action}.",
        Fix(
            explanation=f"Allow {action} on {resource}. {already}",
            command=command,
            permission=PermissionFix(action=action, resource=resource, statement=statement),
        ),
    )


# service_quota ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """A Service Quotas quota: how to name it when asking for more."""

    pattern: re.Pattern[str]
    service: str
    code: str
    name: str
    default: int


QUOTAS: tuple[Quota, ...] = tuple(
    Quota(re.compile(pattern, re.IGNORECASE), service, code, name, default)
    for pattern, service, code, name, default in (
        (
            r"vCPU|VcpuLimitExceeded|InstanceLimitExceeded|more instances \(\d+\)",
            "ec2",
            "L-1216C47A",
            "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
            5,
        ),
        (
            r"AddressLimitExceeded|maximum number of addresses",
            "ec2",
            "L-0263D0A3",
            "EC2-VPC Elastic IPs",
            5,
        ),
        (r"VpcLimitExceeded|maximum number of VPCs", "vpc", "L-F678F1CE", "VPCs per Region", 5),
        (
            r"InternetGatewayLimitExceeded|maximum number of internet gateways",
            "vpc",
            "L-A4707A72",
            "Internet gateways per Region",
            5,
        ),
        (
            r"NatGatewayLimitExceeded|maximum number of NAT gateways",
            "vpc",
            "L-FE5A380F",
            "NAT gateways per Availability Zone",
            5,
        ),
        (
            r"SecurityGroupLimitExceeded|maximum number of security groups",
            "vpc",
            "L-E79EC296",
            "VPC security groups per Region",
            2500,
        ),
        (
            r"InstanceQuotaExceeded|DB Instance quota exceeded",
            "rds",
            "L-7B6409FD",
            "DB instances",
            40,
        ),
        (
            r"StorageQuotaExceeded|storage quota",
            "rds",
            "L-7ADDB58A",
            "Total storage for all DB instances",
            100000,
        ),
        (
            r"TooManyTargetGroups|maximum number of target groups",
            "elasticloadbalancing",
            "L-B22855CB",
            "Target Groups per Region",
            3000,
        ),
        (
            r"TooManyLoadBalancers|maximum number of load balancers",
            "elasticloadbalancing",
            "L-53DA6B97",
            "Application Load Balancers per Region",
            50,
        ),
    )
)
_RESOURCE_TYPE = re.compile(r"\(AWS::(?P<service>\w+)::\w+\)")


def _service_of(finding: Finding) -> str | None:
    """The AWS service a message is about, by its service prefix (ec2, rds, iam ...)."""
    said = finding.first(_SERVICE_OF)
    if said is not None and said.group("service").lower() in _SERVICE_PREFIXES:
        return _SERVICE_PREFIXES[said.group("service").lower()]
    typed = finding.first(_RESOURCE_TYPE)
    if typed is not None:
        return _SERVICE_PREFIXES.get(typed.group("service").lower())
    return None


_CURRENT_LIMIT = re.compile(r"(?:current (?:vCPU |instance )?limit of|limit of) (\d+)")


def _service_quota(finding: Finding) -> Verdict:
    matched = "\n".join(h.line.text for h in finding.hits)
    quota = next((q for q in QUOTAS if q.pattern.search(matched)), None)
    region = _region(finding.failure, finding.text)
    on_region = f" --region {region}" if region else ""
    if quota is None:
        service = _service_of(finding)
        return Verdict(
            "An AWS service quota of this account is used up.",
            Fix(
                explanation="Find the quota the message names in the Service Quotas console "
                "(https://console.aws.amazon.com/servicequotas/home) and request an increase, "
                "or remove resources you no longer use.",
                command=(
                    f"aws service-quotas list-service-quotas --service-code {service}{on_region}"
                    if service
                    else None
                ),
            ),
        )
    current = _CURRENT_LIMIT.search(matched)
    # Twice what the account has, and at least AWS's usual default for a new account.
    desired = max(2 * int(current.group(1)), quota.default) if current else 2 * quota.default
    smaller = (
        " Or deploy with --stage-1, which has no NAT gateways and so needs no Elastic IPs."
        if quota.code == "L-0263D0A3"
        else ""
    )
    return Verdict(
        f"The account's quota '{quota.name}' ({quota.service}) is used up.",
        Fix(
            explanation=f"Request a higher '{quota.name}' quota (about {desired}), then retry; "
            f"https://console.aws.amazon.com/servicequotas/home/services/{quota.service}/quotas/"
            f"{quota.code} shows the current value.{smaller}",
            command=f"aws service-quotas request-service-quota-increase --service-code "
            f"{quota.service} --quota-code {quota.code} --desired-value {desired}{on_region}",
        ),
    )


# capacity --------------------------------------------------------------------------------

_SIZE = r"(?:nano|micro|small|medium|large|\d*xlarge|metal)"
INSTANCE_TYPE = re.compile(rf"\b((?:db\.)?[a-z][a-z0-9-]*\d[a-z0-9-]*\.{_SIZE})\b")
# Families of the same size classes to try instead, first that HiveMind can price wins.
EC2_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "t2": ("t3", "t3a"),
    "t3": ("t3a", "t4g"),
    "t3a": ("t3", "t4g"),
    "t4g": ("t3", "t3a"),
    "m4": ("m5", "m6i"),
    "m5": ("m6i", "m7g"),
    "m6i": ("m5", "m7g"),
    "m7g": ("m6i", "m5"),
    "c4": ("c5", "c6i"),
    "c5": ("c6i",),
    "c6i": ("c5",),
    "r4": ("r5", "r6i"),
    "r5": ("r6i",),
    "r6i": ("r5",),
}
RDS_ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "t2": ("t3", "t4g"),
    "t3": ("t4g",),
    "t4g": ("t3",),
    "m4": ("m5", "m6g"),
    "m5": ("m6g",),
    "m6g": ("m5",),
    "r4": ("r5", "r6g"),
    "r5": ("r6g",),
    "r6g": ("r5",),
}
_ENGINE_IN_TEXT = re.compile(r"Engine=(postgres|mysql)\b|\bfor (postgres|mysql)\b")


def _engine(finding: Finding) -> str:
    spec = finding.failure.spec
    if spec is not None and spec.database.engine in DEFAULT_PRICES.rds_instance_hourly:
        return spec.database.engine
    said = finding.first(_ENGINE_IN_TEXT)
    return next((g for g in said.groups() if g), "postgres") if said else "postgres"


def alternative_type(
    kind: Literal["ec2", "rds"], failing: str, engine: str = "postgres"
) -> str | None:
    """Another instance type (or RDS class) of the same size that HiveMind can price."""
    if kind == "rds":
        priced: Mapping[str, float] = DEFAULT_PRICES.rds_instance_hourly.get(engine, {})
        family, _, size = failing.removeprefix("db.").partition(".")
        options = [f"db.{f}.{size}" for f in RDS_ALTERNATIVES.get(family, ())]
    else:
        priced = DEFAULT_PRICES.ec2_instance_hourly
        family, _, size = failing.partition(".")
        options = [f"{f}.{size}" for f in EC2_ALTERNATIVES.get(family, ())]
    return next((o for o in options if o in priced and o != failing), None)


def _capacity(finding: Finding) -> Verdict:
    failure = finding.failure
    named = finding.first(INSTANCE_TYPE)
    matched = "\n".join(h.line.text for h in finding.hits)
    database = bool(re.search(r"DBInstance|database|\bRDS\b|\(Service: (?:Amazon)?Rds", matched))
    failing = named.group(1) if named else None
    if failing is None and failure.spec is not None:
        failing = (
            failure.spec.database.instance_class if database else failure.spec.compute.instance_type
        )
    if failing is None:
        return Verdict(
            "AWS has no capacity for the requested instance type in that availability zone.",
            Fix(
                explanation="Choose another instance type of the same size, or retry later.",
                command=_retry(failure),
            ),
        )
    is_db = failing.startswith("db.")
    path = "database.instance_class" if is_db else "compute.instance_type"
    other = alternative_type("rds" if is_db else "ec2", failing, _engine(finding))
    what = "DB instance class" if is_db else "instance type"
    summary = f"AWS cannot give this deployment a {failing} there (no capacity, or not offered)."
    if other is None:
        return Verdict(
            summary,
            Fix(
                explanation=f"Choose another {what} of the same size for {path}, or retry later.",
                command=_retry(failure),
            ),
        )
    return Verdict(
        summary,
        Fix(
            explanation=f"Use {other}, a {what} of the same size that HiveMind can price, "
            f"then retry.",
            spec_changes={path: other},
        ),
    )


# invalid_parameter -----------------------------------------------------------------------

_ENGINE_VERSION = re.compile(
    r"Cannot find version (?P<version>[\w.]+) for (?P<engine>postgres|mysql)"
)
_BAD_INSTANCE_TYPE = re.compile(r"Invalid value '(?P<value>[^']+)' for InstanceType")
_BAD_DB_CLASS = re.compile(r"Invalid DB Instance class: (?P<value>[\w.-]+)")
_NOT_BOOTSTRAPPED = re.compile(r"Has the environment been bootstrapped|cdk bootstrap")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def other_engine_version(engine: str, failing: str) -> str | None:
    """A supported major version other than the one `failing` (e.g. 15.19) belongs to:
    HiveMind's default for the engine, else the newest other one."""
    from hivemind.resolve import ENGINE_VERSION_DEFAULTS

    supported = SUPPORTED_ENGINE_VERSIONS.get(engine, ())
    major = next((v for v in supported if failing == v or failing.startswith(v + ".")), None)
    default = ENGINE_VERSION_DEFAULTS.get(engine)
    if default is not None and default != major:
        return default
    others = sorted((v for v in supported if v != major), key=_version_key)
    return others[-1] if others else None


def _invalid_parameter(finding: Finding) -> Verdict:
    failure = finding.failure
    version = finding.first(_ENGINE_VERSION)
    if version is not None:
        engine, failing = version.group("engine"), version.group("version")
        other = other_engine_version(engine, failing)
        if other is not None:
            return Verdict(
                f"RDS does not offer {engine} {failing} in this region.",
                Fix(
                    explanation=f"Build {engine} {other} instead, a version HiveMind supports; "
                    "RDS applies minor updates itself.",
                    spec_changes={"database.engine_version": other},
                ),
            )
    typo = finding.first(_BAD_INSTANCE_TYPE)
    if typo is not None:
        close = difflib.get_close_matches(
            typo.group("value"), DEFAULT_PRICES.ec2_instance_hourly, n=1, cutoff=0.6
        )
        if close and close[0] != typo.group("value"):
            return Verdict(
                f"EC2 has no instance type {typo.group('value')!r}.",
                Fix(
                    explanation=f"Did you mean {close[0]}? It is the closest type HiveMind knows.",
                    spec_changes={"compute.instance_type": close[0]},
                ),
            )
    db_class = finding.first(_BAD_DB_CLASS)
    if db_class is not None:
        priced = DEFAULT_PRICES.rds_instance_hourly.get(_engine(finding), {})
        close = difflib.get_close_matches(db_class.group("value"), priced, n=1, cutoff=0.6)
        if close and close[0] != db_class.group("value"):
            return Verdict(
                f"RDS has no DB instance class {db_class.group('value')!r}.",
                Fix(
                    explanation=f"Did you mean {close[0]}? It is the closest class HiveMind knows.",
                    spec_changes={"database.instance_class": close[0]},
                ),
            )
    if finding.first(_NOT_BOOTSTRAPPED) is not None:
        return Verdict(
            "The account and region are not bootstrapped for the CDK.",
            Fix(
                explanation="Bootstrap them (an S3 bucket and the CDK's roles), then retry.",
                command="cdk bootstrap",
            ),
        )
    spec_file = (
        f'"${{HIVEMIND_HOME:-$HOME/.hivemind}}/deployments/{failure.deployment_id}/spec.json"'
    )
    return Verdict(
        "AWS refused a value in the request as invalid.",
        Fix(
            explanation="Synthesize the spec again: its gates (cfn-lint) name the value AWS "
            "refuses; change it in hivemind.yaml or with a flag, then retry.",
            command=f"hivemind synth --spec {spec_file}",
        ),
    )


# missing_env_var -------------------------------------------------------------------------

_ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_ENVIRON_CONTEXT = re.compile(r"environ\b|<frozen os>|os\.py\", line \d+, in __getitem__|getenv")
_ENV_PATTERNS: tuple[tuple[re.Pattern[str], Callable[[str], str]], ...] = tuple(
    (re.compile(pattern), convert)
    for pattern, convert in (
        (rf"os\.environ\[['\"](?P<name>{_ENV_NAME})['\"]\]", str),
        (rf"[Mm]issing (?:required )?environment variable:? [`'\"]?(?P<name>{_ENV_NAME})", str),
        (
            rf"[Ee]nvironment variable [`'\"$]?(?P<name>{_ENV_NAME})[`'\"]? (?:is not set|is not "
            r"defined|is required|not set|must be set|is missing|is undefined|is empty)",
            str,
        ),
        (rf"process\.env\.(?P<name>{_ENV_NAME}) is (?:undefined|not set|required)", str),
        (
            r"\b(?P<name>[A-Z][A-Z0-9]*_[A-Z0-9_]+|[A-Z]{3,}) (?:must be set|is not set|not set"
            r"|is not defined|is missing|env var is required|environment variable is required)",
            str,
        ),
        (rf"Set the (?P<name>{_ENV_NAME}) environment variable", str),
        (r"The (?P<name>[A-Z][A-Z0-9_]+) setting must not be empty", str),
        (r"Missing `(?P<name>secret_key_base)` for '\w+' environment", str.upper),
        (
            r"Could not resolve placeholder '(?P<name>[A-Za-z_][\w.-]*)'",
            lambda name: re.sub(r"[.-]", "_", name).upper(),
        ),
    )
)
_KEY_ERROR = re.compile(rf"KeyError: '(?P<name>{_ENV_NAME})'")
_SETTINGS_ERROR = re.compile(r"validation errors? for \w*Settings\b")
_FIELD_MISSING = re.compile(r"^Field required \[type=missing")
_FIELD_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_ENVALID_HEADER = re.compile(r"Missing environment variables:")
_ENVALID_ITEM = re.compile(rf"^(?P<name>{_ENV_NAME}): (?:undefined|\"\")")


def _env_names(finding: Finding) -> tuple[list[str], list[str]]:
    """The variables the evidence shows missing, and the lines that show them."""
    names: list[str] = []
    shown: list[str] = []

    def add(name: str, line: str) -> None:
        if name not in names:
            names.append(name)
        if line not in shown:
            shown.append(line)

    lines = [line.text for line in finding.lines]
    environ = any(_ENVIRON_CONTEXT.search(text) for text in lines)
    for index, text in enumerate(lines):
        for pattern, convert in _ENV_PATTERNS:
            found = pattern.search(text)
            if found is not None:
                add(convert(found.group("name")), text)
                break
        key = _KEY_ERROR.search(text)
        if key is not None and environ:
            add(key.group("name"), text)
        settings_field = index > 0 and _FIELD_NAME.match(lines[index - 1]) is not None
        if (
            settings_field
            and _FIELD_MISSING.search(text)
            and any(_SETTINGS_ERROR.search(t) for t in lines[:index])
        ):
            add(lines[index - 1].upper(), lines[index - 1])
            shown.append(text)
        if _ENVALID_ITEM.match(text) and any(_ENVALID_HEADER.search(t) for t in lines[:index]):
            add(_ENVALID_ITEM.match(text).group("name"), text)  # type: ignore[union-attr]
    return names, shown


_ENV_TRIGGERS = _compile(
    *(p.pattern for p, _ in _ENV_PATTERNS),
    _KEY_ERROR.pattern,
    _SETTINGS_ERROR.pattern,
    _ENVALID_HEADER.pattern,
)


def _missing_env_var(finding: Finding) -> Verdict | None:
    names, shown = _env_names(finding)
    if not names:
        return None  # a KeyError that is not an environment variable's
    spec = finding.failure.spec
    listed = ", ".join(names)
    note = ""
    no_database = spec is not None and spec.database.engine == "none"
    if no_database and any(n in PROVIDED_DATABASE_ENV_VARS for n in names):
        note = (
            " HiveMind sets the database's variables only when it provisions one: set "
            "database.engine (postgres or mysql), or give the value."
        )
    return Verdict(
        f"The app stops because the environment variable {listed} is not set.",
        Fix(
            explanation=f"Give a value for {listed} in the app's environment, then retry.{note}",
            env_needed=names,
        ),
        evidence=tuple(shown),
    )


# database_unreachable --------------------------------------------------------------------

_DB_PATTERNS = _compile(
    r"connection to server (?:at|on socket) .* failed",
    r"could not connect to server",
    r"password authentication failed for user",
    r"database \"[^\"]+\" does not exist",
    r"no pg_hba\.conf entry",
    r"Can't connect to MySQL server on",
    r"\((?:2002|2003|2005|2013), ",
    r"Access denied for user '",
    r"Unknown database '",
    r"\(1049, ",
    r"(?:ECONNREFUSED|ETIMEDOUT|EHOSTUNREACH) \S+:(?:5432|3306)\b",
    r"Can't reach database server at",
    r"SequelizeConnection(?:Refused)?Error",
    r"PSQLException: Connection to \S+ refused",
    r"Communications link failure",
    r"PG::ConnectionBad",
    r"ActiveRecord::ConnectionNotEstablished",
    r"dial tcp \S+:(?:5432|3306): ",
    r":(?:5432|3306)\b.*(?:timed out|refused|unreachable|No route to host)",
)
_DB_HOST = re.compile(
    r"server at \"?(?P<a>[\w.-]+)\"?|server on '(?P<b>[\w.-]+)'|ECONNREFUSED (?P<c>[\w.-]+):"
    r"|database server at `(?P<d>[\w.-]+)|Connection to (?P<e>[\w.-]+):\d+ refused"
    r"|dial tcp (?P<f>[\w.-]+):|on socket"
)
_DB_AUTH = re.compile(r"password authentication failed|Access denied for user|\(1045, ")
_DB_NAME = re.compile(r"Unknown database|\(1049, |database \"[^\"]+\" does not exist")
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


def _database_engine_of(text: str) -> str:
    if re.search(r"MySQL|mysql|:3306\b|\((?:1045|1049|2003|2005), ", text):
        return "mysql"
    return "postgres"


def _database_unreachable(finding: Finding) -> Verdict:
    failure, spec = finding.failure, finding.failure.spec
    matched = "\n".join(h.line.text for h in finding.hits)
    host_match = finding.first(_DB_HOST)
    host = next((g for g in host_match.groups() if g), "") if host_match else ""
    local = host in _LOCAL_HOSTS or (host_match is not None and "on socket" in host_match.group(0))
    if spec is not None and spec.database.engine == "none":
        from hivemind.resolve import ENGINE_VERSION_DEFAULTS, PROFILE_DEFAULTS

        engine = _database_engine_of(matched)
        defaults = PROFILE_DEFAULTS[spec.profile]
        return Verdict(
            "The app needs a database, and this deployment has none.",
            Fix(
                explanation=f"Provision {engine} with the deployment: HiveMind then gives the app "
                "DATABASE_URL and DB_HOST/DB_PORT/DB_NAME/DB_USER/DB_PASSWORD.",
                spec_changes={
                    "database.engine": engine,
                    "database.engine_version": ENGINE_VERSION_DEFAULTS[engine],
                    "database.instance_class": defaults["database.instance_class"],
                    "database.storage_gb": defaults["database.storage_gb"],
                },
            ),
        )
    if _DB_AUTH.search(matched):
        return Verdict(
            "The database refused the app's user name or password.",
            Fix(
                explanation="Have the app use the credentials HiveMind writes to its environment "
                "(DATABASE_URL, or DB_USER and DB_PASSWORD from the database's secret) instead "
                "of its own.",
                command=_retry(failure),
            ),
        )
    if _DB_NAME.search(matched):
        return Verdict(
            "The database the app asks for does not exist on the server.",
            Fix(
                explanation="HiveMind creates the database named in DB_NAME (and DATABASE_URL); "
                "have the app read it instead of a name of its own.",
                command=_retry(failure),
            ),
        )
    if local:
        return Verdict(
            f"The app connects to a database on {host or 'a local socket'}, not to the "
            "deployment's database.",
            Fix(
                explanation="Have the app read DATABASE_URL (or DB_HOST and DB_PORT), which "
                "HiveMind writes to its environment, instead of a local address.",
                command=_retry(failure),
            ),
        )
    return Verdict(
        "The app cannot reach the database.",
        Fix(
            explanation="The database's security group admits the app's instances only, on "
            "its port; check the app reads DATABASE_URL or DB_HOST, and retry once the "
            "database is available.",
            command=_retry(failure),
        ),
    )


# build_failure ---------------------------------------------------------------------------

_BUILD_PATTERNS = _compile(
    r"^npm (?:ERR!|error) ",
    r"ERR_PNPM_",
    r"^error Command failed with exit code",
    r"Could not find a version that satisfies the requirement",
    r"No matching distribution found for",
    r"error: subprocess-exited-with-error",
    r"Failed building wheel for",
    r"ModuleNotFoundError: No module named",
    r"Error: Cannot find module '",
    r"error: failed to compile",
    r"^Failed to compile\.?$",
    r"\berror TS\d+:",
    r"\[ERROR\] Failed to execute goal",
    r"^BUILD FAILURE$",
    r"FAILURE: Build failed with an exception",
    r"^go: .*(?:cannot find module|module .* not found|missing go\.sum entry)",
    r"no required module provides package",
    r"Gem::MissingSpecVersionError",
    r"Could not find gem '",
    r"Bundler::GemNotFound",
    r"An error occurred while installing",
    r"^SyntaxError: ",
    r"\bSyntaxError: invalid syntax",
)
_BUILD_SUBJECTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), template)
    for pattern, template in (
        (r"No matching distribution found for (?P<x>\S+)", "pip cannot find {x} on the index"),
        (r"404 Not Found - GET \S+/(?P<x>[^/\s]+)(?: - |$)", "npm cannot find the package {x}"),
        (r"No module named '(?P<x>[\w.]+)'", "the Python module {x} is not installed"),
        (r"Cannot find module '(?P<x>[^']+)'", "the Node module {x} is not installed"),
        (r"Could not find gem '(?P<x>[^']+)'", "Bundler cannot find the gem {x}"),
        (r"no required module provides package (?P<x>[^;\s]+)", "Go has no module for {x}"),
        (r"Failed building wheel for (?P<x>\S+)", "pip cannot build {x}"),
        (r"Failed to execute goal (?P<x>\S+)", "Maven's {x} failed"),
    )
)
_REMOTE_SCRIPT = re.compile(r"bash -c '(?P<script>[^']+)'")


def _build_command(failure: Failure, text: str) -> str | None:
    spec = failure.spec
    if spec is not None and spec.app.build_command:
        where = "" if spec.app.subdir == "." else f"cd {spec.app.subdir} && "
        return where + spec.app.build_command
    remote = _REMOTE_SCRIPT.search(text)
    return remote.group("script") if remote else None


def _build_failure(finding: Finding) -> Verdict:
    failure = finding.failure
    subject = next(
        (
            template.format(x=found.group("x").rstrip(".,"))
            for pattern, template in _BUILD_SUBJECTS
            if (found := finding.first(pattern)) is not None
        ),
        None,
    )
    command = _build_command(failure, finding.text)
    why = f"The build failed: {subject}." if subject else "The app's build command failed."
    return Verdict(
        why,
        Fix(
            explanation="Reproduce the build on your machine with the same command, fix the "
            "app (its dependencies or code), then retry; the retry resumes at the deploy stage.",
            command=command,
        ),
    )


def _failed_build_step(finding: Finding) -> Verdict:
    verdict = _build_failure(finding)
    extra = tuple(line.text for line in finding.lines if line.source in ("cause", "command_output"))
    return Verdict(verdict.summary, verdict.fix, extra[:2])


# wrong_port ------------------------------------------------------------------------------

LISTENING = _compile(
    # HiveMind's own probe, from the sockets the app's processes hold.
    r"^the app listens on [^\s,]*:(?P<port>\d{2,5})\b",
    r"[Ll]istening (?:on|at):? (?:https?|tcp)://[^\s/]*:(?P<port>\d{2,5})\b",
    r"[Ll]istening (?:on|at) (?:port )?:?(?P<port>\d{2,5})\b",
    r"[Ll]istening on (?:\S+ )?port (?P<port>\d{2,5})\b",
    r"(?:[Ss]erver|[Aa]pp) (?:is )?(?:running|started|listening) (?:on|at) "
    r"(?:(?:https?://)?[\w.\[\]:-]*:)?(?:port )?(?P<port>\d{2,5})\b",
    r"Running on https?://[^\s/]*:(?P<port>\d{2,5})\b",
    r"Uvicorn running on https?://[^\s/]*:(?P<port>\d{2,5})\b",
    r"(?:Tomcat|Jetty|Netty|Undertow) started on port(?:\(s\))?:? (?P<port>\d{2,5})\b",
    r"Listening and serving HTTP on [^\s]*:(?P<port>\d{2,5})\b",
    r"http server started on \S*:(?P<port>\d{2,5})\b",
    r"started server on [^\s,]*:(?P<port>\d{2,5})\b",
    r"\bLocal:\s+https?://[^\s/]*:(?P<port>\d{2,5})\b",
)
_HEALTH_FAILED = re.compile(
    r"Target\.(?:FailedHealthChecks|Timeout)|Health checks failed|did not answer at"
    r"|where the load balancer checks it"
    r"|[Cc]onnection refused|did not report every instance healthy"
)
# Listeners beside the app's own: their port is not the one to check.
_SIDE_LISTENER = re.compile(
    r"\bmetrics\b|prometheus|\bdebugger\b|\badmin\b|management|ws://", re.IGNORECASE
)
_PROBED_PORT = re.compile(r"did not answer at https?://[^\s/]*:(?P<port>\d+)")


def _expected_port(finding: Finding) -> int | None:
    spec = finding.failure.spec
    if spec is not None and spec.app.port is not None:
        return spec.app.port
    probed = finding.first(_PROBED_PORT)
    return int(probed.group("port")) if probed else None


# An app log's address on the loopback interface; HiveMind's probe marks such an address
# "(this instance only)", whatever it is (in the sandbox every instance is a 127.x address).
_LOOPBACK = re.compile(r"//(?:127\.0\.0\.1|localhost):|\(this instance only\)")


def _loopback_only(finding: Finding, port: int, health: str) -> Verdict | None:
    """The app listens on the right port, but on an address only the instance itself
    reaches (as HiveMind's probe saw its sockets)."""
    probe = finding.line_with(re.compile(rf":{port} \(this instance only\)"))
    if probe is None:
        return None
    return Verdict(
        f"The app listens on port {port} on the loopback address only: the load balancer "
        "cannot reach it.",
        Fix(
            explanation="Have the app bind 0.0.0.0 (every address), e.g. gunicorn's --bind "
            "0.0.0.0:$PORT or app.listen(port, '0.0.0.0'), then retry.",
            command=_retry(finding.failure),
        ),
        evidence=(probe, health),
    )


def _wrong_port(finding: Finding) -> Verdict | None:
    expected = _expected_port(finding)
    health = finding.line_with(_HEALTH_FAILED)
    if expected is None or health is None:
        return None
    ports = [int(h.match.group("port")) for h in finding.hits]
    if expected in ports:
        return _loopback_only(finding, expected, health)
    served = [h for h in finding.hits if not _SIDE_LISTENER.search(h.line.text)]
    if not served:
        return None
    line, actual = served[0].line.text, int(served[0].match.group("port"))
    local = _LOOPBACK.search(line) is not None
    loopback = (
        " It also listens on the loopback address only: have it bind 0.0.0.0 (or read $PORT "
        "and HOST)."
        if local
        else ""
    )
    return Verdict(
        f"The app listens on port {actual}, but HiveMind checks it on port {expected}.",
        Fix(
            explanation=f"Set app.port to {actual}, the port the app listens on, so the load "
            f"balancer checks and forwards there.{loopback}",
            spec_changes={"app.port": actual},
        ),
        evidence=(health,),
    )


# health_check_mismatch -------------------------------------------------------------------

_WRONG_ANSWER = _compile(
    r"the app answers \S+ with HTTP (?P<code>4\d\d), but the load balancer",
    r"Target\.ResponseCodeMismatch",
)
_OTHER_PATHS = re.compile(r"^other paths: (?P<paths>.+)$")
_PATH_ANSWER = re.compile(r"(?P<path>/\S*) -> (?P<code>\d{3})\b")


def answering_paths(line: str) -> dict[str, str]:
    """The paths an "other paths: /health -> 200, / -> 404" line shows answering as the
    load balancer wants (200-399), in the order tried, with their status codes."""
    found = _OTHER_PATHS.search(line)
    if found is None:
        return {}
    return {
        m.group("path"): m.group("code")
        for m in _PATH_ANSWER.finditer(found.group("paths"))
        if 200 <= int(m.group("code")) < 400
    }


# The health check's Host header is the instance's address, which a host check refuses.
_DISALLOWED_HOST = re.compile(r"Invalid HTTP_HOST header|DisallowedHost")


def _health_check_mismatch(finding: Finding) -> Verdict:
    failure, spec = finding.failure, finding.failure.spec
    refused = finding.line_with(_DISALLOWED_HOST)
    if refused is not None:
        return Verdict(
            "The app refuses the load balancer's health check: its Host header is the "
            "instance's private address, which the app's allowed hosts leave out.",
            Fix(
                explanation="Let the app accept the instance's own address as a Host: the "
                "load balancer's health check sends it. For Django, add it to ALLOWED_HOSTS "
                "when the app starts (socket.gethostbyname(socket.gethostname())), then retry.",
                command=_retry(failure),
            ),
            evidence=(refused,),
        )
    current = spec.app.health_path if spec is not None else None
    listed = finding.line_with(_OTHER_PATHS)
    good = {p: code for p, code in answering_paths(listed or "").items() if p != current}
    summary = (
        f"The app answers, but not at its health path {current}: the load balancer's "
        "health check wants 200-399."
        if current
        else "The app answers, but not healthily at its health path: the load balancer's "
        "health check wants 200-399."
    )
    if listed is None or not good:
        return Verdict(
            summary,
            Fix(
                explanation="Give the app a route that answers 200 at app.health_path, or set "
                "app.health_path to a path it does answer (`--set app.health_path=/PATH`).",
                command=_retry(failure),
            ),
        )
    path, code = next(iter(good.items()))
    return Verdict(
        summary,
        Fix(
            explanation=f"Set app.health_path to {path}, which the app answers with {code}, "
            "so the load balancer checks there.",
            spec_changes={"app.health_path": path},
        ),
        evidence=(listed,),
    )


# timeout ---------------------------------------------------------------------------------

_TIMEOUT_PATTERNS = _compile(
    r"did not report every instance healthy within (?P<seconds>\d+) s",
    r"never became healthy",
    r"did not answer at \S+ within \d+ s",
    r"Resource timed out waiting for",
    r"Exceeded attempts to wait",
    r"HandlerErrorCode: NotStabilized",
    r"did not stabilize",
    r"Failed to receive \d+ resource signal",
    r"exceeded the (?:specified )?timeout",
    r"\btimed out\b",
    r"Connection timed out",
    r"Target\.Timeout",
    r"has not printed its SSH host key|no host key in its console output after",
)
_HEALTH_WAIT = re.compile(r"did not report every instance healthy within (?P<seconds>\d+) s")


def _timeout(finding: Finding) -> Verdict | None:
    failure = finding.failure
    wait = finding.first(_HEALTH_WAIT)
    if wait is not None:
        if "ResponseCodeMismatch" in failure.health_reason:
            return None  # the app answered, with the wrong status: not a matter of time
        longer = max(600, 2 * int(wait.group("seconds")))
        return Verdict(
            "The load balancer did not see the app healthy before HiveMind stopped waiting.",
            Fix(
                explanation="If the app is slow to start, wait longer; if its log shows it "
                "failing, fix that first.",
                command=_retry(failure, f" --health-timeout {longer}"),
            ),
        )
    if finding.first(re.compile(r"over SSH|SSH host key")) is not None:
        return Verdict(
            "HiveMind timed out reaching an instance over SSH.",
            Fix(
                explanation="Check that the stack's SSH rule allows your address (--ssh-cidr) "
                "and that the instance is running, then retry.",
                command=_retry(failure),
            ),
        )
    return Verdict(
        "An operation did not finish in the time allowed.",
        Fix(
            explanation="Retry; if it times out again, look at what it was waiting for.",
            command=_retry(failure),
        ),
    )


def _only_consequences(failure: Failure) -> bool:
    """Every reason given is a consequence: nothing else failed first that we can see."""
    reasons = [
        line for line in failure_lines(failure) if line.source in ("cause", "details") and line.text
    ]
    return bool(reasons) and all(line.consequence for line in reasons)


def _cancelled(finding: Finding) -> Verdict:
    return Verdict(
        "CloudFormation cancelled the resources' creation without another failure to blame: "
        "the stack ran out of time or was cancelled.",
        Fix(
            explanation="Retry; if it is cancelled again, look at the stack's events in the "
            "CloudFormation console for the resource that held it up.",
            command=_retry(finding.failure),
        ),
    )


# throttling ------------------------------------------------------------------------------


def _throttling(finding: Finding) -> Verdict:
    return Verdict(
        "AWS throttled HiveMind's API calls (too many requests at once).",
        Fix(
            explanation="Nothing is wrong with the deployment: wait a few minutes and retry.",
            command=_retry(finding.failure),
        ),
    )


# resources_exhausted ---------------------------------------------------------------------

_OUT_OF_MEMORY = _compile(
    r"Out of memory: Kill(?:ed)? process",
    r"invoked oom-killer|killed by the OOM killer|Failed with result 'oom-kill'",
    r"\bMemoryError\b",
    r"JavaScript heap out of memory|Reached heap limit Allocation failed",
    r"java\.lang\.OutOfMemoryError",
    r"fatal error: runtime: out of memory",
    r"[Cc]annot allocate memory|\bENOMEM\b",
    r"Killed signal terminated program",
    r"was sent SIGKILL! Perhaps out of memory",
    r"^memory % \S+ reached \d",
)
_OUT_OF_DISK = _compile(
    r"No space left on device",
    r"\bENOSPC\b",
    r"\[Errno 28\]",
    r"^disk % \S+ reached \d",
)
_DATABASE_FULL = re.compile(
    r"\bDiskFull\b|could not extend file|free storage capacity for DB Instance"
    r"|storage-full|\(1114, .The table '[^']+' is full"
)
# Instance sizes in order; within the families HiveMind prices, each size has twice the
# memory of the one before it.
_SIZES = ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge")


def larger_type(instance_type: str) -> str | None:
    """The next size of the same family that HiveMind can price (twice the memory)."""
    family, _, size = instance_type.partition(".")
    if size not in _SIZES:
        return None
    priced = DEFAULT_PRICES.ec2_instance_hourly
    bigger = (f"{family}.{s}" for s in _SIZES[_SIZES.index(size) + 1 :])
    return next((t for t in bigger if t in priced), None)


def _resources_exhausted(finding: Finding) -> Verdict:
    failure, spec = finding.failure, finding.failure.spec
    during = " while building" if _build_step(failure) else ""
    if finding.first(_DATABASE_FULL) is not None:
        storage = spec.database.storage_gb if spec is not None else None
        if storage is None:
            return Verdict(
                "The database ran out of storage.",
                Fix(
                    explanation="Give the database more storage (database.storage_gb), then retry.",
                    command=_retry(failure),
                ),
            )
        more = min(2 * storage, 65536)
        return Verdict(
            f"The database ran out of its {storage} GiB of storage.",
            Fix(
                explanation=f"Give the database {more} GiB (RDS grows storage in place), "
                "then retry.",
                spec_changes={"database.storage_gb": more},
            ),
        )
    if any(p.search(h.line.text) for h in finding.hits for p in _OUT_OF_DISK):
        size = spec.compute.root_volume_gb if spec is not None else DEFAULT_ROOT_VOLUME_GB
        more = min(2 * size, 16384)
        return Verdict(
            f"An instance ran out of disk space{during} ({size} GiB root volume).",
            Fix(
                explanation=f"Give each instance a {more} GiB root volume (the instances are "
                "replaced with the larger disk), then retry.",
                spec_changes={"compute.root_volume_gb": more},
            ),
        )
    current = spec.compute.instance_type if spec is not None else None
    summary = f"The app ran out of memory{during}" + (f" on {current}." if current else ".")
    bigger = larger_type(current) if current else None
    if bigger is None:
        return Verdict(
            summary,
            Fix(
                explanation="Choose an instance type with more memory for "
                "compute.instance_type, or make the app use less, then retry.",
                command=_retry(failure),
            ),
        )
    return Verdict(
        summary,
        Fix(
            explanation=f"Use {bigger}, the next size of the same family, with twice the "
            "memory, then retry.",
            spec_changes={"compute.instance_type": bigger},
        ),
    )


# the table -------------------------------------------------------------------------------

# Tiers, tried in order. Within the first tier (AWS's own reasons) the rule whose match
# is on the earliest line wins; within the others, the first rule that matches.
RULES: tuple[tuple[Rule, ...], ...] = (
    (
        Rule(
            "missing_permission",
            _compile(
                r"is not authorized to perform",
                r"You are not authorized to perform this operation",
                r"UnauthorizedOperation",
                r"\bAccessDenied(?:Exception)?\b",
                r"\bAuthorizationError\b",
            ),
            _missing_permission,
        ),
        Rule(
            "service_quota",
            _compile(
                r"(?<!Request)(?<!Rate)LimitExceeded",
                r"more vCPU capacity than your current vCPU limit",
                r"You have requested more instances",
                r"maximum number of [\w -]+ (?:has been|was) reached",
                r"InstanceQuotaExceeded|StorageQuotaExceeded|DB Instance quota exceeded",
                r"storage quota for this account has been exceeded",
                r"TooManyTargetGroups|TooManyLoadBalancers",
                r"\bquota (?:has been )?exceeded\b",
            ),
            _service_quota,
        ),
        Rule(
            "capacity",
            _compile(
                r"InsufficientInstanceCapacity|InsufficientDBInstanceCapacity",
                r"do not have sufficient [\w.]+ capacity",
                r"\bInsufficient capacity\b",
                r"no availability zones with sufficient capacity",
                r"is not supported in your requested Availability Zone",
                r"RDS does not support creating a DB instance with the following combination",
                r"DB [Ii]nstance class \S+ (?:is )?not (?:available|supported) in",
                r"(?:Error Code: |\(|^)Unsupported\b.*(?:instance type|configuration)",
                r"requested configuration is currently not supported",
            ),
            _capacity,
        ),
        Rule(
            "throttling",
            _compile(
                r"\bThrottl(?:ing|ed)",
                r"Rate exceeded",
                r"RequestLimitExceeded|Request limit exceeded",
                r"TooManyRequestsException|429 Too Many Requests",
                r"\bSlowDown\b",
            ),
            _throttling,
            when=_not_build_step,
        ),
        Rule(
            "invalid_parameter",
            _compile(
                r"InvalidParameter(?:Value|Combination)?\b",
                r"\(ValidationError\)|\bValidationError: (?:Template|Parameters?|Stack)",
                r"\bError ?Code: (?:ValidationError|InvalidRequest)\b",
                r"Template format error",
                r"\d+ validation errors? detected",
                r"failed to satisfy constraint",
                r"Invalid value for parameter|Invalid value '[^']*' for",
                r"\bParameters?:? \[?'?[A-Za-z0-9]+'?\]? must (?:be|have)",
                r"The parameter \w+ cannot be used with the parameter",
                r"Cannot find version \S+ for (?:postgres|mysql)",
                r"Invalid DB Instance class",
                r"Unable to fetch parameters \[",
                r"Invalid request provided|HandlerErrorCode: InvalidRequest",
                r"InvalidAMIID|InvalidSubnetID|InvalidGroup\.NotFound|InvalidKeyPair",
                r"Has the environment been bootstrapped",
            ),
            _invalid_parameter,
        ),
    ),
    (
        Rule(
            "resources_exhausted",
            (*_OUT_OF_MEMORY, *_OUT_OF_DISK, _DATABASE_FULL),
            _resources_exhausted,
        ),
    ),
    (Rule("missing_env_var", _ENV_TRIGGERS, _missing_env_var),),
    (Rule("database_unreachable", _DB_PATTERNS, _database_unreachable),),
    (Rule("build_failure", _BUILD_PATTERNS, _build_failure),),
    (Rule("wrong_port", LISTENING, _wrong_port),),
    (Rule("health_check_mismatch", _WRONG_ANSWER, _health_check_mismatch),),
    (Rule("timeout", _TIMEOUT_PATTERNS, _timeout, when=_not_build_step),),
    (Rule("build_failure", _compile(r"^build failed on "), _failed_build_step, when=_build_step),),
    (
        Rule(
            "timeout",
            (CANCELLED,),
            _cancelled,
            when=_only_consequences,
            consequences=True,
        ),
    ),
)


_QUOTED_AS = re.compile(r"^(?:stderr|app log): ")


def _distinct(lines: Iterable[str]) -> list[str]:
    """Lines without repeats; a line the details also quote as "stderr: ..." or
    "app log: ..." is kept once, in its plain form."""
    kept: list[str] = []
    for text in lines:
        plain = _QUOTED_AS.sub("", text)
        if plain in kept:
            continue
        quoted = [k for k in kept if _QUOTED_AS.sub("", k) == plain]
        if quoted:
            kept[kept.index(quoted[0])] = plain
        else:
            kept.append(text)
    return kept


def _diagnosis(rule: Rule, finding: Finding, verdict: Verdict) -> Diagnosis:
    matched = _distinct(h.line.text for h in finding.hits)[:MAX_EVIDENCE]
    evidence = _distinct([*matched, *verdict.evidence])
    return Diagnosis(cause=rule.cause, summary=verdict.summary, evidence=evidence, fix=verdict.fix)


def classify(failure: Failure) -> Diagnosis:
    """The failure's cause by HiveMind's rules: deterministic, with verbatim evidence."""
    lines = failure_lines(failure)
    for index, tier in enumerate(RULES):
        found = [(rule, f) for rule in tier if (f := rule.find(failure, lines)) is not None]
        if index == 0:
            # The first root reason wins: order by the earliest matched line.
            found.sort(key=lambda pair: lines.index(pair[1].hits[0].line))
        for rule, finding in found:
            verdict = rule.explain(finding)
            if verdict is not None:
                return _diagnosis(rule, finding, verdict)
    return _unknown(failure, lines)


def _unknown(failure: Failure, lines: Sequence[Line]) -> Diagnosis:
    reasons = [
        line.text
        for line in lines
        if line.source in ("cause", "details", "command_output", "health_reason")
        and not line.consequence
    ]
    said = [line.text for line in lines if line.source in ("cause", "details")]
    evidence = reasons[:1] or said[:1] or ([failure.what.strip()] if failure.what.strip() else [])
    return Diagnosis(
        cause="unknown",
        summary="HiveMind's rules do not recognise this failure; the evidence is its cause line.",
        evidence=evidence,
    )


# --- spec changes ------------------------------------------------------------------------


def apply_spec_changes(
    spec: DeploymentSpec, changes: Mapping[str, object], evidence: str
) -> DeploymentSpec:
    """`spec` with Medic's changes set, each with the user's provenance (the operator
    accepts the fix) and `evidence`; BadInputError for an unknown path or a value the
    spec does not accept."""
    provenance = Provenance(source=Source.USER, evidence=evidence, note="Medic's fix")
    return spec.with_changes(changes, provenance)


_SECTIONS: dict[str, type[BaseModel]] = {
    "app": AppSpec,
    "database": DatabaseSpec,
    "compute": ComputeSpec,
    "access": AccessSpec,
}


def _check_value(path: str, value: object) -> None:
    """Without a spec to apply it to, a value can still be checked against its field."""
    section, _, leaf = path.partition(".")
    model = _SECTIONS.get(section) if leaf else DeploymentSpec
    info = model.model_fields.get(leaf or section) if model is not None else None
    if info is None:
        raise BadInputError(f"{path} is not a deployment spec setting")
    try:
        TypeAdapter(cast(Any, Annotated[info.annotation, info])).validate_python(value)
    except ValidationError as exc:
        raise BadInputError(
            f"{path} = {value!r} is not valid", cause=str(exc.errors()[0]["msg"])
        ) from None


# --- the agent ---------------------------------------------------------------------------

_PROMPT = """
You are Medic, HiveMind's diagnostician. A stage of a deployment to AWS failed: synth,
bootstrap, provision (CloudFormation creating a VPC, load balancer, EC2 instances, RDS),
deploy (the app uploaded, built and started over SSH as a systemd service, then the load
balancer's health checks) or verify (QA checks). Read the failure and answer with one
Diagnosis.

Causes (pick exactly one):
- missing_permission: AWS refused a call for lack of IAM permission (AccessDenied,
  UnauthorizedOperation, "is not authorized to perform").
- service_quota: an account quota or limit is used up (LimitExceeded, vCPU limit,
  maximum number of addresses/VPCs reached, DB instance or storage quota).
- capacity: AWS has no capacity for, or does not offer, the instance type or DB instance
  class in that availability zone.
- invalid_parameter: AWS refused a value (InvalidParameterValue/Combination, template or
  parameter validation errors, an engine version RDS does not offer).
- wrong_port: the app listens on a port other than the spec's app.port while the health
  checks fail.
- health_check_mismatch: the app answers the load balancer's health check with a 4xx where
  it wants 200-399 (Target.ResponseCodeMismatch): a wrong app.health_path, or the app
  refusing the check's Host header (Django's ALLOWED_HOSTS) or asking for a login.
- missing_env_var: the app stops because an environment variable is not set.
- database_unreachable: the app cannot connect or log in to its database.
- build_failure: the build step (pip, npm, mvn, go, bundle) failed.
- timeout: something did not finish in time (health checks never healthy, SSH timed out,
  a resource never stabilized).
- throttling: AWS throttled the calls (Throttling, Rate exceeded, RequestLimitExceeded).
- resources_exhausted: the app or its build ran out of memory (MemoryError, "JavaScript
  heap out of memory", the OOM killer, memory % at 90% or more) or of disk ("No space
  left on device", ENOSPC, disk % at 90% or more), or the database of storage.
- unknown: none of these is shown by the text.

Rules:
- "Resource creation cancelled" is a consequence of another resource's failure: report the
  first root reason, not the cancellation.
- A throttling or timeout message inside a failed build's output is a build_failure.
- evidence: 1 to 5 lines copied exactly from the failure, the ones that show the cause.
- fix: only when a concrete one exists. spec_changes use the dotted paths listed under
  "Spec" (e.g. {"app.port": 5000}, {"compute.instance_type": "t3a.small"}); an instance
  type or DB class must be one of those the priced_types tool lists. For
  resources_exhausted give the instances more memory (the next size of the same family,
  compute.instance_type), a larger root volume (compute.root_volume_gb) or the database
  more storage (database.storage_gb). For health_check_mismatch set
  app.health_path to a path the evidence shows answering 200-399. For wrong_port set
  app.port to the port the app's log shows. For missing_env_var list the variables in
  env_needed. For missing_permission give permission.action exactly as the message names
  it and permission.statement {"Effect": "Allow", "Action": [action], "Resource": ...}.
  A command must be one the user can run (e.g. `hivemind retry <id>`).
- The tool hivemind_rules shows what HiveMind's own rules concluded: a second opinion that
  may be wrong.
"""


def _describe_spec(spec: DeploymentSpec | None) -> list[str]:
    if spec is None:
        return ["Spec: not known"]
    values = {
        "app.language": spec.app.language,
        "app.framework": spec.app.framework,
        "app.port": spec.app.port,
        "app.health_path": spec.app.health_path,
        "app.build_command": spec.app.build_command,
        "app.start_command": spec.app.start_command,
        "app.env_vars": ", ".join(spec.app.env_vars) or "(none)",
        "database.engine": spec.database.engine,
        "database.engine_version": spec.database.engine_version,
        "database.instance_class": spec.database.instance_class,
        "compute.instance_type": spec.compute.instance_type,
        "compute.count": spec.compute.count,
        "profile": spec.profile,
        "region": spec.region,
    }
    return ["Spec:"] + [f"  {path} = {value}" for path, value in values.items()]


class Medic(Agent[Failure, Diagnosis]):
    """Why a stage failed, with evidence from the failure's own text, and the fix."""

    name: ClassVar[str] = "medic"
    prompt: ClassVar[str] = _PROMPT
    output = Diagnosis

    def describe(self, inputs: Failure) -> str:
        parts = [
            f"Deployment {inputs.deployment_id}: the {inputs.stage} stage failed.",
            f"Headline: {inputs.what}",
        ]
        if inputs.cause:
            parts.append(f"Cause: {inputs.cause}")
        if inputs.details:
            parts += ["Other reasons and details:"] + [f"  {d}" for d in inputs.details]
        if inputs.command_output:
            parts += ["Command output (tail):", inputs.command_output]
        if inputs.health_reason:
            parts.append(f"Load balancer health: {inputs.health_reason}")
        if inputs.app_log:
            parts += ["App log (tail):"] + [f"  {line}" for line in inputs.app_log]
        if inputs.log_errors:
            parts += ["Errors in the app's recent log, grouped:"]
            parts += [f"  {line}" for line in inputs.log_errors]
        if inputs.metrics:
            parts += ["The deployment's metrics meanwhile:"]
            parts += [f"  {line}" for line in inputs.metrics]
        return "\n".join(parts + _describe_spec(inputs.spec))

    def fallback(self, inputs: Failure) -> Diagnosis:
        return classify(inputs)

    def tools(self, inputs: Failure) -> list[Callable[..., str]]:
        def hivemind_rules() -> str:
            """HiveMind's own rule-based diagnosis of this failure, as JSON."""
            return classify(inputs).model_dump_json(indent=1)

        def priced_types(kind: str) -> str:
            """The instance types HiveMind can price: kind 'ec2' for compute.instance_type,
            'rds' for database.instance_class (for the spec's database engine)."""
            if kind == "rds":
                spec = inputs.spec
                engine = spec.database.engine if spec is not None else "postgres"
                return ", ".join(DEFAULT_PRICES.rds_instance_hourly.get(engine, {}))
            return ", ".join(DEFAULT_PRICES.ec2_instance_hourly)

        return [hivemind_rules, priced_types]

    def check(self, inputs: Failure, proposal: Diagnosis) -> Diagnosis:
        check_diagnosis(inputs, proposal)
        return proposal


def _squash(text: str) -> str:
    return " ".join(text.split())


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def check_diagnosis(failure: Failure, diagnosis: Diagnosis) -> None:
    """Raise Rejected unless the diagnosis holds against the failure's own text."""
    text = _squash(failure_text(failure))
    if not diagnosis.evidence:
        raise Rejected("it quotes no evidence")
    for line in diagnosis.evidence:
        if not line.strip() or _squash(line) not in text:
            raise Rejected(f"its evidence {line[:120]!r} is not in the failure's text")
    quoted = "\n".join(diagnosis.evidence)
    fix = diagnosis.fix
    if diagnosis.cause == "unknown" and fix is not None and fix.spec_changes:
        raise Rejected("an unknown cause comes with no spec change")
    if fix is None:
        if diagnosis.cause == "wrong_port":
            raise Rejected("a wrong port needs the port the app listens on (app.port)")
        return
    if fix.spec_changes:
        if failure.spec is not None:
            try:
                apply_spec_changes(failure.spec, fix.spec_changes, evidence=quoted[:200])
            except BadInputError as error:
                raise Rejected(
                    f"its spec change is not valid: {error.what}; {error.cause}"
                ) from None
        else:
            known = set(field_paths())
            for path, value in fix.spec_changes.items():
                if path not in known:
                    raise Rejected(f"{path} is not a deployment spec setting")
                try:
                    _check_value(path, value)
                except BadInputError as error:
                    raise Rejected(f"its spec change is not valid: {error.what}") from None
    if diagnosis.cause == "wrong_port" and "app.port" not in fix.spec_changes:
        spec_port = failure.spec.app.port if failure.spec is not None else None
        if spec_port is None or f":{spec_port} (this instance only)" not in quoted:
            raise Rejected("a wrong port needs the port the app listens on (app.port)")
    elif diagnosis.cause == "wrong_port":
        port = fix.spec_changes.get("app.port")
        if not isinstance(port, int) or isinstance(port, bool):
            raise Rejected("a wrong port needs the port the app listens on (app.port)")
        if re.search(rf"(?<!\d){port}(?!\d)", quoted) is None:
            raise Rejected(f"port {port} does not appear in its evidence")
        if failure.spec is not None and failure.spec.app.port == port:
            raise Rejected(f"port {port} is the spec's port already")
    if diagnosis.cause == "health_check_mismatch" and "app.health_path" in fix.spec_changes:
        chosen = fix.spec_changes["app.health_path"]
        shown = {p for line in diagnosis.evidence for p in answering_paths(line)}
        if chosen not in shown:
            raise Rejected(f"its evidence does not show {chosen!r} answering 200-399")
    if diagnosis.cause == "resources_exhausted" and failure.spec is not None:
        _check_more(failure.spec, fix.spec_changes)
    for name in fix.env_needed:
        if not re.fullmatch(ENV_VAR_PATTERN, name):
            raise Rejected(f"{name!r} is not an environment variable's name")
        if _alnum(name) not in _alnum(quoted):
            raise Rejected(f"the variable {name} does not appear in its evidence")
    if fix.permission is not None:
        action = fix.permission.action
        operation = action.split(":", 1)[-1]
        if not operation or operation.lower() not in quoted.lower():
            raise Rejected(f"the action {action} does not appear in its evidence")
        listed = fix.permission.statement.get("Action")
        actions = [listed] if isinstance(listed, str) else listed
        if not isinstance(actions, list) or action not in actions:
            raise Rejected(f"its statement does not allow {action}")
        if fix.permission.statement.get("Effect") != "Allow":
            raise Rejected("its statement does not Allow")


def _check_more(spec: DeploymentSpec, changes: Mapping[str, object]) -> None:
    """A fix for an exhausted resource must give more of it, not less or the same."""
    volume = changes.get("compute.root_volume_gb")
    if isinstance(volume, int) and volume <= spec.compute.root_volume_gb:
        raise Rejected(f"a {volume} GiB root volume is no larger than the spec's")
    storage = changes.get("database.storage_gb")
    if isinstance(storage, int) and storage <= (spec.database.storage_gb or 0):
        raise Rejected(f"{storage} GiB of database storage is no more than the spec's")
    kind = changes.get("compute.instance_type")
    if isinstance(kind, str):
        now = spec.compute.instance_type.partition(".")[2]
        then = kind.partition(".")[2]
        if now in _SIZES and then in _SIZES and _SIZES.index(then) <= _SIZES.index(now):
            raise Rejected(f"{kind} is no larger than {spec.compute.instance_type}")


# --- the corpus --------------------------------------------------------------------------

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "medic_corpus.jsonl"
# The spec every corpus entry's "spec" overrides apply to: a stage-1 Flask app with
# PostgreSQL, as `hivemind spec show` would resolve it.
CORPUS_DEPLOYMENT_ID = "shop-k2j4m6p7q3"
CORPUS_BASE_SPEC: dict[str, Any] = {
    "app": {
        "name": "shop",
        "language": "python",
        "framework": "flask",
        "runtime_version": "3.12",
        "build_command": "pip install -r requirements.txt",
        "start_command": "gunicorn app:app",
        "port": 8000,
        "health_path": "/health",
    },
    "database": {
        "engine": "postgres",
        "engine_version": "16",
        "instance_class": "db.t3.micro",
        "storage_gb": 20,
    },
    "compute": {"instance_type": "t3.micro", "count": 1},
    "profile": "stage-1",
    "region": "us-east-1",
}


class ExpectedFix(BaseModel):
    """What a corpus entry's fix must contain (only the keys given are checked)."""

    model_config = ConfigDict(extra="forbid")

    spec_changes: dict[str, str | int | bool | None] | None = None
    env_needed: list[str] | None = None
    action: str | None = None
    command_contains: str | None = None
    explanation_contains: str | None = None


class Expected(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cause: Cause
    fix: ExpectedFix | None = None  # null: no fix expected

    def mismatches(self, diagnosis: Diagnosis) -> list[str]:
        """How `diagnosis` differs from what is expected; empty when it does not."""
        wrong = []
        if diagnosis.cause != self.cause:
            wrong.append(f"cause {diagnosis.cause}, expected {self.cause}")
        fix, want = diagnosis.fix, self.fix
        if want is None:
            if fix is not None:
                wrong.append("a fix, expected none")
            return wrong
        if fix is None:
            return [*wrong, "no fix"]
        if want.spec_changes is not None and fix.spec_changes != want.spec_changes:
            wrong.append(f"spec_changes {fix.spec_changes}, expected {want.spec_changes}")
        if want.env_needed is not None and fix.env_needed != want.env_needed:
            wrong.append(f"env_needed {fix.env_needed}, expected {want.env_needed}")
        if want.action is not None:
            action = fix.permission.action if fix.permission else None
            if action != want.action:
                wrong.append(f"action {action}, expected {want.action}")
        if want.command_contains is not None and want.command_contains not in (fix.command or ""):
            wrong.append(f"command {fix.command!r} lacks {want.command_contains!r}")
        if (
            want.explanation_contains is not None
            and want.explanation_contains not in fix.explanation
        ):
            wrong.append(f"explanation lacks {want.explanation_contains!r}")
        return wrong


class CorpusEntry(BaseModel):
    """One real failure message, where it comes from, and the diagnosis it must get."""

    model_config = ConfigDict(extra="forbid")

    id: str
    origin: str
    stage: str
    failure: dict[str, Any]
    expected: Expected

    def to_failure(self) -> Failure:
        """The entry's Failure, its spec the base spec with the entry's overrides (a
        "spec" of null: no spec)."""
        data = dict(self.failure)
        overrides = data.pop("spec", {})
        spec = None
        if overrides is not None:
            base = DeploymentSpec.model_validate(CORPUS_BASE_SPEC)
            spec = apply_spec_changes(base, overrides, f"corpus {self.id}") if overrides else base
        data.setdefault("deployment_id", CORPUS_DEPLOYMENT_ID)
        return Failure.model_validate({"stage": self.stage, **data, "spec": spec})


def read_corpus(path: Path = CORPUS) -> list[CorpusEntry]:
    """The corpus entries, one JSON object a line; blank lines are skipped."""
    entries = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if line.strip():
            try:
                entries.append(CorpusEntry.model_validate_json(line))
            except ValidationError as error:
                raise ValueError(f"{path}:{number}: {error}") from None
    return entries
