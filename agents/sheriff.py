"""Sheriff: what each security and lint finding means, and the setting that fixes it.

Called after synth whenever the gates (cdk-nag's AwsSolutions rules, cfn-lint) report
findings: `hivemind synth` shows the review beside the findings, and a deploy the gates
stop shows it with its error. For each finding Sheriff says what is wrong and why it
matters in plain words, and where the fix lives:

* a deployment spec setting with a value that fixes it (`access.ssh_cidr` to the
  operator's /32, `profile: production` for a single-AZ database), proposed as a
  change that validates against `DeploymentSpec`;
* a setting only the operator can fill in (`access.certificate_arn` for HTTPS);
* an acknowledgement in `constructs/` (cdk-nag rules HiveMind accepts on purpose,
  each with its reason), read from the constructs' source so it never drifts;
* otherwise the construct to change, from the finding's own text.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hivemind.errors import BadInputError
from hivemind.gates import Finding
from hivemind.spec import DeploymentSpec, Provenance, Source, field_paths

from .base import Agent, Rejected

if TYPE_CHECKING:
    from hivemind.synth import SynthResult

# hivemind_constructs.acknowledge.MIN_REASON_LENGTH (importing it would start aws_cdk).
MIN_REASON_LENGTH = 20
SpecValue = str | int | bool | None


class SheriffInput(BaseModel):
    """The gates' findings and the spec they were found in."""

    model_config = ConfigDict(frozen=True)

    findings: tuple[Finding, ...]
    spec: DeploymentSpec
    operator_cidr: str | None = Field(
        None, description="the operator's own address as a /32, when known"
    )

    @classmethod
    def from_synth(
        cls, result: SynthResult, spec: DeploymentSpec, operator_cidr: str | None = None
    ) -> SheriffInput:
        """From a synth's result, whose findings are plain dicts (synth.json)."""
        return cls.model_validate(
            {"findings": result.findings, "spec": spec, "operator_cidr": operator_cidr}
        )


class SpecChange(BaseModel):
    """One deployment spec setting and the value that fixes the finding."""

    path: str = Field(description="a dotted deployment spec setting, e.g. access.ssh_cidr")
    value: SpecValue = Field(description="its new value (null removes an optional setting)")


class Acknowledgement(BaseModel):
    """Accepting a cdk-nag rule on purpose, with the reason, on one construct."""

    rule_id: str = Field(description="the rule as reported, e.g. AwsSolutions-RDS3")
    where: str = Field(description="the constructs/ file (and construct) that acknowledges it")
    reason: str = Field(description="why the rule does not apply there, at least 20 characters")


class FindingExplanation(BaseModel):
    """One finding in plain words, and where its fix lives."""

    rule: str = Field(description="the finding's rule, exactly as given")
    resource: str = Field(description="the finding's resource, exactly as given")
    what: str = Field(description="what is wrong, in plain words, one sentence")
    why_it_matters: str = Field(description="the risk or failure it causes, one sentence")
    fix: str = Field(description="what to do about it, one or two sentences")
    spec_changes: list[SpecChange] = Field(
        default_factory=list,
        description="spec settings and values that fix it; empty when no setting does",
    )
    setting: str | None = Field(
        None,
        description="a spec setting the operator must give a value for (e.g. "
        "access.certificate_arn), when no value can be proposed",
    )
    acknowledgement: Acknowledgement | None = Field(
        None, description="when the rule is accepted on purpose: where and why"
    )


class SecurityReview(BaseModel):
    """Sheriff's answer: a summary and one explanation per finding."""

    summary: str = Field(description="one or two sentences: what blocks the deploy and why")
    findings: list[FindingExplanation]

    def spec_changes(self) -> dict[str, SpecValue]:
        """Every proposed change, by path (check() has made sure they agree)."""
        return {c.path: c.value for item in self.findings for c in item.spec_changes}


@dataclass(frozen=True)
class Acknowledged:
    """An `acknowledge(...)` HiveMind's constructs make: the rule, where, and why."""

    rule_id: str
    file: str
    line: int
    construct: str
    reason: str

    @property
    def base_rule(self) -> str:
        return base_rule(self.rule_id)

    def describe(self) -> str:
        return f"{self.file}:{self.line} on {self.construct}: {self.reason!r}"


def base_rule(rule: str) -> str:
    """`AwsSolutions-IAM4[Policy::...]` → `AwsSolutions-IAM4`."""
    return rule.split("[", 1)[0].strip()


@functools.cache
def acknowledgements() -> tuple[Acknowledged, ...]:
    """Every acknowledgement in HiveMind's constructs, read from their source."""
    found = importlib.util.find_spec("hivemind_constructs")
    folders = list(found.submodule_search_locations or []) if found else []
    out: list[Acknowledged] = []
    for folder in folders:
        for path in sorted(Path(folder).glob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (OSError, SyntaxError):
                continue
            out.extend(_acknowledgements_in(tree, f"constructs/{path.name}"))
    return tuple(out)


def _acknowledgements_in(tree: ast.AST, file: str) -> Iterable[Acknowledged]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_acknowledge(node) and len(node.args) >= 3:
            rule, reason = _literal(node.args[1]), _literal(node.args[2])
            if rule and reason:
                yield Acknowledged(rule, file, node.lineno, ast.unparse(node.args[0]), reason)
        elif isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple):
            # for rule, why in ((rule, why), ...): acknowledge(construct, rule, why)
            call = next(
                (n for n in ast.walk(node) if isinstance(n, ast.Call) and _is_acknowledge(n)),
                None,
            )
            if call is None or not call.args:
                continue
            for pair in node.iter.elts:
                if isinstance(pair, ast.Tuple) and len(pair.elts) == 2:
                    rule, reason = _literal(pair.elts[0]), _literal(pair.elts[1])
                    if rule and reason:
                        construct = ast.unparse(call.args[0])
                        line = pair.elts[0].lineno
                        yield Acknowledged(rule, file, line, construct, reason)


def _is_acknowledge(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Name) and call.func.id == "acknowledge"


def _literal(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f"AwsSolutions-IAM4[Policy::...{policy}]"
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append("{" + ast.unparse(value.value) + "}")
        return "".join(parts)
    return None


# --- the knowledge table: what each rule HiveMind's stacks can trigger means ----------


@dataclass(frozen=True)
class RuleNote:
    what: str
    why: str
    fix: str = ""  # empty: the remedy is worked out per finding, or the finding's own fix


_DEPLOY_FAILS = "CloudFormation would reject the template, so the deploy fails before it starts."
RULES: dict[str, RuleNote] = {
    # cdk-nag AwsSolutions
    "AwsSolutions-EC23": RuleNote(
        "A security group accepts connections from any address on the internet "
        "(0.0.0.0/0 or ::/0).",
        "Whatever listens behind it is scanned and attacked within minutes; only the load "
        "balancer's HTTP and HTTPS ports should be open to everyone.",
    ),
    "AwsSolutions-EC26": RuleNote(
        "An EBS volume is created without encryption.",
        "The data at rest, and every snapshot of it, is readable by anyone who gets a copy.",
        "Encrypt the volume in the construct (HiveMind's launch template sets encrypted=True "
        "in constructs/web_tier.py).",
    ),
    "AwsSolutions-EC27": RuleNote(
        "A security group has no description.",
        "Operators read the description to know what a group is for; without one, rules "
        "get widened or deleted by mistake.",
        "Give the security group a description where the construct creates it.",
    ),
    "AwsSolutions-EC28": RuleNote(
        "An EC2 instance has no detailed (1-minute) monitoring.",
        "Basic monitoring reports every 5 minutes, so short CPU spikes go unseen.",
    ),
    "AwsSolutions-EC29": RuleNote(
        "An EC2 instance outside an Auto Scaling group has no termination protection.",
        "One mistaken terminate removes the instance at once.",
    ),
    "AwsSolutions-ELB1": RuleNote(
        "A Classic Load Balancer serves HTTP traffic.",
        "Classic Load Balancers lack the health checks, HTTP/2 and TLS policies of an "
        "Application Load Balancer.",
        "Use an Application Load Balancer (HiveMind's web tier builds one).",
    ),
    "AwsSolutions-ELB2": RuleNote(
        "The load balancer writes no access logs.",
        "Without access logs there is no record of who requested what, for an audit or "
        "for tracing an error back to a request.",
    ),
    "AwsSolutions-ELB5": RuleNote(
        "A load balancer listener takes plain HTTP instead of HTTPS.",
        "Traffic between users and the load balancer (passwords, session cookies) can be "
        "read and changed on the way.",
    ),
    "AwsSolutions-RDS2": RuleNote(
        "The database's storage is not encrypted.",
        "The data at rest and its backups are readable by anyone who gets a copy.",
    ),
    "AwsSolutions-RDS3": RuleNote(
        "The database runs in one availability zone, with no Multi-AZ standby.",
        "If the zone or the instance fails, the database is down until RDS replaces it.",
    ),
    "AwsSolutions-RDS8": RuleNote(
        "The database's security group accepts connections from any address.",
        "The database is then one leaked or guessed password away from anyone.",
        "Allow the app's security group only (constructs/database.py: allow_from).",
    ),
    "AwsSolutions-RDS10": RuleNote(
        "The database has no deletion protection.",
        "One mistaken delete, of the instance or of the whole stack, removes the data.",
    ),
    "AwsSolutions-RDS11": RuleNote(
        "The database listens on its engine's default port.",
        "Scanners try default ports first.",
    ),
    "AwsSolutions-RDS13": RuleNote(
        "The database keeps no automated backups.",
        "There is no point-in-time restore after a bad migration or a dropped table.",
    ),
    "AwsSolutions-SMG4": RuleNote(
        "The database secret is never rotated automatically.",
        "A leaked password stays valid until someone changes it by hand.",
    ),
    "AwsSolutions-IAM4": RuleNote(
        "An IAM role uses an AWS managed policy.",
        "AWS managed policies are broad and change without notice; a policy of your own "
        "grants exactly what the job needs.",
    ),
    "AwsSolutions-IAM5": RuleNote(
        "An IAM policy grants wildcard (*) actions or resources.",
        "A wildcard grants more than the job needs, so a stolen credential can do more harm.",
        "Scope the grant to the resource it is for (e.g. secret.grant_read(role)); if the "
        "wildcard is needed, acknowledge that one finding (AwsSolutions-IAM5[Action::...]) "
        "with the reason.",
    ),
    "AwsSolutions-VPC7": RuleNote(
        "The VPC has no flow log.",
        "Without flow logs there is no record of network traffic to investigate an incident.",
        "Add a flow log to the VPC (constructs/network.py adds one to CloudWatch Logs).",
    ),
    "AwsSolutions-S1": RuleNote(
        "The S3 bucket writes no server access logs.",
        "There is no record of who read or changed which object.",
        "Give the bucket server_access_logs_bucket, or acknowledge the rule with the reason.",
    ),
    "AwsSolutions-S2": RuleNote(
        "The S3 bucket does not block public access.",
        "One wrong policy or ACL makes its objects readable by the whole internet.",
        "Set block_public_access=BlockPublicAccess.BLOCK_ALL on the bucket.",
    ),
    "AwsSolutions-S10": RuleNote(
        "The S3 bucket accepts requests without TLS.",
        "Objects can be read or changed on the way over plain HTTP.",
        "Set enforce_ssl=True on the bucket (a policy denying aws:SecureTransport false).",
    ),
    "AwsSolutions-KMS5": RuleNote(
        "A KMS key does not rotate automatically.",
        "A key that never rotates protects more data for longer if it is ever exposed.",
        "Set enable_key_rotation=True on the key.",
    ),
    # cfn-lint
    "E3002": RuleNote(
        "A resource has a property CloudFormation does not know.",
        _DEPLOY_FAILS,
        "This is a construct bug in HiveMind, not a setting: report it with the synth output.",
    ),
    "E3012": RuleNote(
        "A property has a value of the wrong type.",
        _DEPLOY_FAILS,
    ),
    "E3628": RuleNote(
        "The EC2 instance type is not offered in this region.",
        "CloudFormation would fail to create the instances.",
    ),
    "E3025": RuleNote(
        "The database instance class is not offered for this engine or region.",
        "CloudFormation would fail to create the database.",
    ),
    "E3062": RuleNote(
        "The database instance class is not offered for this engine and version.",
        "CloudFormation would fail to create the database.",
    ),
    "E3691": RuleNote(
        "The database engine version is not one RDS offers.",
        "CloudFormation would fail to create the database.",
    ),
    "W3691": RuleNote(
        "The database engine version is deprecated.",
        "RDS stops creating instances of deprecated versions and upgrades existing ones "
        "on its own schedule.",
    ),
    "E1159": RuleNote(
        "The ACM certificate ARN is malformed.",
        _DEPLOY_FAILS,
    ),
    "E3676": RuleNote(
        "An HTTPS listener has no certificate.",
        _DEPLOY_FAILS,
    ),
    "E3024": RuleNote(
        "A tag is malformed (key or value too long, or a duplicate key).",
        _DEPLOY_FAILS,
    ),
    "E3680": RuleNote(
        "An Application Load Balancer has fewer than two subnets.",
        _DEPLOY_FAILS,
        "The network construct must give the load balancer a subnet in each of two "
        "availability zones (constructs/network.py, AZ_COUNT).",
    ),
    "E3719": RuleNote(
        "The database's backup retention does not fit its configuration.",
        _DEPLOY_FAILS,
    ),
    "W3010": RuleNote(
        "An availability zone is written into the template.",
        "The template then only works in that one region.",
        "Let the construct pick the zones (constructs/network.py uses max_azs).",
    ),
    "W3011": RuleNote(
        "A resource sets DeletionPolicy without UpdateReplacePolicy, or the reverse.",
        "When an update replaces it, the old copy is deleted or kept differently than on "
        "stack deletion, which can lose data.",
        "Set both policies on the resource (RemovalPolicy in CDK sets both).",
    ),
}
_SETTING_RULES = {
    "AwsSolutions-ELB5": "access.certificate_arn",
    "E1159": "access.certificate_arn",
    "E3676": "access.certificate_arn",
    "E3628": "compute.instance_type",
    "E3025": "database.instance_class",
    "E3062": "database.instance_class",
    "E3691": "database.engine_version",
    "W3691": "database.engine_version",
    "E3024": "tags",
    "E3719": "profile",
}
# Rules whose stage-1 acknowledgement says "production does this": the profile fixes them.
_PRODUCTION_FIXES = ("AwsSolutions-RDS3", "AwsSolutions-RDS10", "AwsSolutions-RDS13")
_TLS_WORDS = ("https", "tls", "ssl", "certificate", "secure")


class Sheriff(Agent[SheriffInput, SecurityReview]):
    name: ClassVar[str] = "sheriff"
    output = SecurityReview
    prompt: ClassVar[str] = """
You are Sheriff, HiveMind's security reviewer. HiveMind compiles a typed deployment spec
into an AWS CDK stack (VPC, Application Load Balancer, EC2 instances, RDS, CloudWatch)
and runs two gates on it: cdk-nag's AwsSolutions rules and cfn-lint. You are given the
findings the gates reported and the spec. For every finding, explain to an application
developer who is not a security specialist:

- what: what is wrong, in one plain sentence (no rule ids, no jargon without meaning);
- why_it_matters: the concrete risk or failure, in one sentence;
- fix: what to do, in one or two sentences;
- spec_changes: when a deployment spec setting fixes it, the dotted path and the value
  (e.g. access.ssh_cidr to the operator's address as a /32 when SSH is open to the
  world; profile production, with compute.count at least 2, for a single-AZ database
  without backups). Only use settings from the spec's list; the change is validated
  against the spec and thrown away if it does not fit;
- setting: when a setting fixes it but only the operator knows the value (e.g.
  access.certificate_arn for HTTPS), name the setting and leave spec_changes empty;
- acknowledgement: when HiveMind accepts the rule on purpose (the acknowledgements_of
  tool lists where and why), give the rule id, the constructs/ file and the reason.

Use `rule` and `resource` exactly as given, one explanation per finding. A good answer
is short, specific to this deployment, and never proposes a change that weakens it.
"""

    def describe(self, inputs: SheriffInput) -> str:
        spec = inputs.spec
        lines = [f"Findings ({len(inputs.findings)}):"]
        for f in inputs.findings:
            lines.append(
                f"- rule={f.rule} resource={f.resource} tool={f.tool} level={f.level}\n"
                f"  message: {f.message}\n  fix: {f.fix}"
            )
        lines.append(
            f"\nThe spec: app {spec.app.name} ({spec.app.language}), profile {spec.profile}, "
            f"region {spec.region}, {spec.compute.count} x {spec.compute.instance_type}, "
            f"database {spec.database.engine}, certificate_arn {spec.access.certificate_arn}, "
            f"ssh_cidr {spec.access.ssh_cidr}."
        )
        if inputs.operator_cidr:
            lines.append(f"The operator's own address: {inputs.operator_cidr}")
        lines.append("Spec settings: " + ", ".join(field_paths()))
        return "\n".join(lines)

    def tools(self, inputs: SheriffInput) -> list[Callable[..., str]]:
        def rule_notes(rule: str) -> str:
            """HiveMind's notes on a cdk-nag or cfn-lint rule: what it checks, why it
            matters, and the spec setting that fixes it, if any."""
            note = RULES.get(base_rule(rule))
            if note is None:
                return f"no notes on {rule}; use the finding's own message and fix"
            setting = _SETTING_RULES.get(base_rule(rule))
            text = f"what: {note.what}\nwhy: {note.why}"
            text += f"\nfix: {note.fix}" if note.fix else ""
            return text + (f"\nspec setting: {setting}" if setting else "")

        def acknowledgements_of(rule: str) -> str:
            """Where HiveMind's constructs acknowledge (accept on purpose) a cdk-nag rule,
            and the reason each gives."""
            found = [a for a in acknowledgements() if a.base_rule == base_rule(rule)]
            if not found:
                return f"HiveMind's constructs do not acknowledge {rule} anywhere"
            return "\n".join(f"{a.rule_id}: {a.describe()}" for a in found)

        def spec_setting(path: str) -> str:
            """A deployment spec setting's current value and where the value came from."""
            if path not in field_paths():
                return f"{path} is not a spec setting; the settings are {', '.join(field_paths())}"
            why = inputs.spec.provenance.get(path)
            origin = why.describe() if why else "unrecorded"
            return f"{path} = {_value_at(inputs.spec, path)!r} ({origin})"

        return [rule_notes, acknowledgements_of, spec_setting]

    def check(self, inputs: SheriffInput, proposal: SecurityReview) -> SecurityReview:
        """Every explanation must be of a given finding, every setting real, every
        acknowledgement of the finding's rule with a reason, and the spec changes
        together must validate and change something. Findings the answer left out get
        HiveMind's own explanation."""
        known = {(f.rule, f.resource): f for f in inputs.findings}
        explained: set[tuple[str, str]] = set()
        paths = set(field_paths())
        changes: dict[str, SpecValue] = {}
        for item in proposal.findings:
            key = (item.rule, item.resource)
            if key not in known:
                raise Rejected(f"{item.rule} on {item.resource} is not one of the findings")
            if key in explained:
                raise Rejected(f"{item.rule} on {item.resource} is explained twice")
            explained.add(key)
            if item.setting is not None and item.setting not in paths:
                raise Rejected(f"{item.setting} is not a deployment spec setting")
            ack = item.acknowledgement
            if ack is not None:
                if base_rule(ack.rule_id) != base_rule(item.rule):
                    raise Rejected(f"acknowledging {ack.rule_id} does not answer {item.rule}")
                if len(ack.reason.strip()) < MIN_REASON_LENGTH:
                    raise Rejected(f"the reason to acknowledge {item.rule} is too short")
            for change in item.spec_changes:
                if change.path not in paths:
                    raise Rejected(f"{change.path} is not a deployment spec setting")
                if change.path in changes and changes[change.path] != change.value:
                    raise Rejected(f"two different values proposed for {change.path}")
                changes[change.path] = change.value
        if changes:
            _validated(inputs.spec, changes)
        missing = [f for key, f in known.items() if key not in explained]
        if not missing:
            return proposal
        filled = proposal.findings + [explain(f, inputs) for f in missing]
        return proposal.model_copy(update={"findings": filled})

    def fallback(self, inputs: SheriffInput) -> SecurityReview:
        items = [explain(f, inputs) for f in inputs.findings]
        return SecurityReview(summary=_summary(inputs.findings, items), findings=items)


def _validated(spec: DeploymentSpec, changes: dict[str, SpecValue]) -> DeploymentSpec:
    """The spec with `changes`; Rejected when they do not fit or change nothing."""
    provenance = Provenance(source=Source.LLM, note="proposed by Sheriff")
    try:
        changed = spec.with_changes(changes, provenance)
    except BadInputError as error:
        raise Rejected(f"{error.what}: {error.cause or ''}".rstrip(": ")) from None
    for path in changes:
        if _value_at(changed, path) == _value_at(spec, path):
            raise Rejected(f"{path} is already {_value_at(spec, path)!r}: no change")
    return changed


def _value_at(spec: DeploymentSpec, path: str) -> Any:
    value: Any = spec
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _summary(findings: Iterable[Finding], items: list[FindingExplanation]) -> str:
    findings = list(findings)
    if not findings:
        return "The security and lint gates found nothing."
    blocking = [f for f in findings if f.level in ("error", "warning")]
    fixable = sum(1 for i in items if i.spec_changes or i.setting)
    rules = sorted({base_rule(f.rule) for f in blocking})
    text = (
        f"{len(blocking)} of {len(findings)} finding(s) block the deploy"
        + (f" ({', '.join(rules)})" if rules else "")
        + "."
    )
    if fixable:
        text += f" {fixable} can be fixed with a spec setting (hivemind.yaml or a flag)."
    return text


def explain(finding: Finding, inputs: SheriffInput) -> FindingExplanation:
    """HiveMind's own explanation of one finding: the knowledge table, else its text."""
    rule = base_rule(finding.rule)
    note = RULES.get(rule)
    if note is None:
        what = finding.message
        if finding.tool == "cdk-nag":
            why = finding.fix or "cdk-nag's AWS Solutions rules flag it as a security risk."
        elif finding.level == "error":
            why = _DEPLOY_FAILS
        else:
            why = "CloudFormation accepts it, but it is likely a mistake."
        note = RuleNote(what, why)
    item = FindingExplanation(
        rule=finding.rule,
        resource=finding.resource,
        what=note.what,
        why_it_matters=note.why,
        fix=note.fix or _generic_fix(finding),
    )
    return _remedy(finding, inputs, item)


def _generic_fix(finding: Finding) -> str:
    if finding.tool == "cdk-nag":
        return (
            f"Change the construct behind {finding.resource}; if the rule does not apply, "
            f"acknowledge {finding.rule} on it with the reason (hivemind_constructs."
            "acknowledge.acknowledge)."
        )
    return f"Change the construct behind {finding.resource}. cfn-lint says: {finding.fix}"


def _remedy(finding: Finding, inputs: SheriffInput, item: FindingExplanation) -> FindingExplanation:
    """Fill in the spec change, setting or acknowledgement that answers the finding."""
    spec = inputs.spec
    rule = base_rule(finding.rule)
    updates: dict[str, Any] = {}
    acks = [a for a in acknowledgements() if a.base_rule == rule]
    if rule == "AwsSolutions-EC23" and "LoadBalancer" not in finding.resource:
        acks = []  # HiveMind opens only the load balancer to the world on purpose

    if rule == "AwsSolutions-EC23":
        updates = _open_to_world(finding, inputs, acks)
    elif rule in _PRODUCTION_FIXES and spec.profile == "stage-1":
        changes: dict[str, SpecValue] = {
            "profile": "production",
            "compute.count": max(2, spec.compute.count),
        }
        updates["spec_changes"] = _if_valid(spec, changes)
        updates["fix"] = (
            "The stage-1 profile does this on purpose to save cost; the production profile "
            "gives the database Multi-AZ, 7-day backups and deletion protection "
            "(--profile production, or profile: production in hivemind.yaml)."
        )
    elif rule in _SETTING_RULES or _is_plain_http_listener(finding):
        setting = _SETTING_RULES.get(rule, "access.certificate_arn")
        updates["setting"] = setting
        updates["fix"] = _setting_fix(setting, spec)
        default = _profile_default(spec, setting)
        if default is not None and default != _value_at(spec, setting):
            updates["spec_changes"] = _if_valid(spec, {setting: default})

    if spec.profile == "production":
        # stage-1's acknowledgements ("production does this") do not cover production
        acks = [a for a in acks if "stage-1" not in a.reason]
    ack = _closest(acks, finding.resource) if acks else None
    if ack is None and rule in _PRODUCTION_FIXES and spec.profile == "production":
        updates.setdefault(
            "fix",
            "The production profile turns this on for the database (constructs/database.py); "
            "a finding here means the construct did not: report it with the synth output.",
        )
    if ack is not None and "acknowledgement" not in updates and not updates.get("spec_changes"):
        updates["acknowledgement"] = Acknowledgement(
            rule_id=ack.rule_id, where=f"{ack.file}:{ack.line} ({ack.construct})", reason=ack.reason
        )
        updates.setdefault(
            "fix",
            f"HiveMind accepts this rule on purpose ({ack.file}:{ack.line}): {ack.reason}. "
            f"It shows up here because that acknowledgement does not cover {finding.resource}; "
            "acknowledge it on that construct too, with its own reason, or fix the construct.",
        )
    return item.model_copy(update=updates)


def _open_to_world(
    finding: Finding, inputs: SheriffInput, acks: list[Acknowledged]
) -> dict[str, Any]:
    spec = inputs.spec
    resource = finding.resource
    if "LoadBalancer" in resource and acks:
        return {}  # public on purpose: the acknowledgement explains it
    if spec.access.ssh_cidr is None:
        return {
            "fix": f"No spec setting opens {resource} to the world (access.ssh_cidr is not "
            "set): the construct that adds the rule must allow the load balancer's security "
            "group, or an address range, instead of 0.0.0.0/0."
        }
    target = inputs.operator_cidr if inputs.operator_cidr != spec.access.ssh_cidr else None
    changes = _if_valid(spec, {"access.ssh_cidr": target})
    if target is not None:
        fix = f"Allow SSH from your own address only: access.ssh_cidr {target}."
    else:
        fix = (
            "Remove the SSH rule (access.ssh_cidr unset: the deploy then allows only your "
            "own address), or give your address as a /32, e.g. --ssh-cidr 203.0.113.7/32."
        )
    return {"spec_changes": changes, "setting": "access.ssh_cidr", "fix": fix}


def _is_plain_http_listener(finding: Finding) -> bool:
    text = f"{finding.resource} {finding.message}".lower()
    return "listener" in text and any(word in text for word in _TLS_WORDS)


def _setting_fix(setting: str, spec: DeploymentSpec) -> str:
    current = _value_at(spec, setting)
    fixes = {
        "access.certificate_arn": "Set access.certificate_arn in hivemind.yaml to an ACM "
        f"certificate for your domain in {spec.region} (arn:aws:acm:{spec.region}:ACCOUNT:"
        "certificate/ID), and access.domain to that domain: the load balancer then serves "
        "HTTPS on 443 and redirects port 80.",
        "compute.instance_type": f"Choose an instance type offered in {spec.region} "
        f"(compute.instance_type, now {current}), or another region.",
        "database.instance_class": f"Choose a DB instance class offered for {spec.database.engine} "
        f"{spec.database.engine_version} (database.instance_class, now {current}).",
        "database.engine_version": "Choose another major version (database.engine_version, now "
        f"{current}); constructs/database.py maps each major version to the exact one it builds.",
        "tags": "Fix the tag in hivemind.yaml (tags): keys 1-128 characters, values up to 256.",
        "profile": "The profile decides the database's backups: stage-1 keeps none, "
        "production keeps 7 days.",
    }
    return fixes.get(setting, f"Change {setting} (now {current!r}).")


def _profile_default(spec: DeploymentSpec, setting: str) -> SpecValue:
    """The profile's default for a setting that has one (instance type, DB class)."""
    from hivemind.resolve import PROFILE_DEFAULTS  # lazy: pulls in the repo analyzer

    value = PROFILE_DEFAULTS.get(spec.profile, {}).get(setting)
    if setting == "database.instance_class" and spec.database.engine == "none":
        return None
    return value if isinstance(value, str | int | bool) else None


def _if_valid(spec: DeploymentSpec, changes: dict[str, SpecValue]) -> list[SpecChange]:
    """The changes as proposals when they validate and change something; else none."""
    try:
        _validated(spec, changes)
    except Rejected:
        return []
    return [SpecChange(path=path, value=value) for path, value in changes.items()]


def _closest(acks: list[Acknowledged], resource: str) -> Acknowledged | None:
    """The acknowledgement meant for the finding's construct: the only one there is, or
    the one whose construct shares the most words with the resource's path (none if no
    construct does)."""
    if len({(a.construct, a.reason) for a in acks}) == 1:
        return acks[0]
    words = set(_words(resource))
    scored = [(len(words & set(_words(a.construct))), a) for a in acks]
    best = max(scored, key=lambda pair: pair[0], default=(0, None))
    return best[1] if best[0] > 0 else None


def _words(text: str) -> list[str]:
    """`Database/ReadReplica/Resource` → database, read, replica, resource."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w and w != "self"]
