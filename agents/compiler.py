"""Compiler: why this plan. Each point ties what the stack builds to the spec fields
that decided it and where their values came from.

Called after synth, beside the plan a person confirms (`hivemind synth`, and the plan
`deploy` and `retry` show before they ask): "2 x t3.small across two AZs: the production
profile's default (hivemind.yaml can set compute.count)". The facts are the spec with
its provenance and what synth made of it: resource counts and the cost lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hivemind.cost import CostLine
from hivemind.spec import DeploymentSpec, Source, field_paths

from .base import Agent, Rejected

if TYPE_CHECKING:
    from hivemind.synth import SynthResult

# Words that name an EC2 instance type or an RDS instance class (t3.small, db.m6g.large).
_SIZE_NAME = re.compile(
    r"\b(?:db\.)?[a-z][a-z0-9-]*\d[a-z0-9-]*\.(?:nano|micro|small|medium|large|\d*xlarge|metal)\b"
)


class CompilerInput(BaseModel):
    """The spec, and the stack synth built from it."""

    model_config = ConfigDict(frozen=True)

    spec: DeploymentSpec
    resources: dict[str, int]  # resource type -> count
    cost_lines: tuple[CostLine, ...]
    total_usd: float
    notes: tuple[str, ...] = ()

    @classmethod
    def from_synth(cls, spec: DeploymentSpec, result: SynthResult) -> CompilerInput:
        return cls(
            spec=spec,
            resources=result.resources,
            cost_lines=result.cost.lines,
            total_usd=result.cost.total_usd,
            notes=tuple(result.notes),
        )

    def monthly(self, *resource_types: str) -> float:
        return math.fsum(
            c.monthly_usd for c in self.cost_lines if c.resource_type in resource_types
        )


class FieldRef(BaseModel):
    """A spec field a point rests on, and where its value came from."""

    path: str = Field(description="a dotted spec field, e.g. compute.count")
    source: Source | None = Field(
        None, description="where its value came from: default, detected, llm or user"
    )


class PlanPoint(BaseModel):
    """One reason the plan is what it is."""

    title: str = Field(description="a few words: Compute, Database, Network, ...")
    text: str = Field(description="what is built and why, in one or two sentences")
    fields: list[FieldRef] = Field(description="the spec fields that decide it")
    change_with: str | None = Field(
        None, description="how the operator changes it: the hivemind.yaml setting or flag"
    )


class PlanExplanation(BaseModel):
    """Compiler's answer: a headline and the points of the plan."""

    headline: str = Field(description="one sentence: the profile, size and monthly cost")
    points: list[PlanPoint]


class Compiler(Agent[CompilerInput, PlanExplanation]):
    name: ClassVar[str] = "compiler"
    output = PlanExplanation
    prompt: ClassVar[str] = """
You are Compiler, the engineer who explains HiveMind's deployment plan. HiveMind turned a
typed deployment spec into one CloudFormation stack (VPC over two availability zones, an
Application Load Balancer, EC2 instances, optionally RDS, a CloudWatch dashboard,
optionally X-Ray). You are given the spec with each field's value and provenance (where
the value came from: HiveMind's default, detected in the repository, proposed by a
model, or set by the user in hivemind.yaml or a flag), the resources synth built, and
the estimated monthly cost per resource.

Write the points a careful engineer would make before someone confirms the plan: the
profile, the instances, the network (NAT gateways or public subnets), the database, the
load balancer and TLS, tracing, the region and the cost. Each point says what is built
and why, names the spec fields that decide it with their provenance exactly as given,
and says how to change it (the hivemind.yaml setting or the flag). Good: "2 x t3.small
across two AZs: the production profile's default; hivemind.yaml can set compute.count."
Only name instance types, classes and numbers that appear in the facts.
"""

    def describe(self, inputs: CompilerInput) -> str:
        spec = inputs.spec
        lines = ["Spec fields (value; provenance):"]
        for path in field_paths():
            lines.append(f"- {path} = {_value_at(spec, path)!r}; {_provenance(spec, path)}")
        lines.append("\nResources synthesized:")
        lines += [f"- {t}: {n}" for t, n in inputs.resources.items()]
        lines.append(f"\nEstimated monthly cost: ${inputs.total_usd:,.2f}")
        lines += [
            f"- {c.logical_id} ({c.resource_type}): ${c.monthly_usd:,.2f}: {c.description}"
            for c in inputs.cost_lines
        ]
        if inputs.notes or spec.notes:
            lines.append("\nNotes:")
            lines += [f"- {n}" for n in (*spec.notes, *inputs.notes)]
        return "\n".join(lines)

    def tools(self, inputs: CompilerInput) -> list[Callable[..., str]]:
        def cost_of(resource_type: str) -> str:
            """The cost lines of one resource type (e.g. AWS::EC2::NatGateway), with what
            was priced."""
            lines = [c for c in inputs.cost_lines if c.resource_type == resource_type]
            if not lines:
                return f"no cost lines for {resource_type}"
            total = math.fsum(c.monthly_usd for c in lines)
            body = "\n".join(
                f"{c.logical_id}: ${c.monthly_usd:,.2f} ({c.description})" for c in lines
            )
            return f"{body}\ntotal ${total:,.2f}/month"

        return [cost_of]

    def check(self, inputs: CompilerInput, proposal: PlanExplanation) -> PlanExplanation:
        """Every field must be a real spec field with the provenance it has (a missing
        source is filled in); every instance type or class named must be in the facts."""
        spec = inputs.spec
        paths = set(field_paths())
        facts = self.describe(inputs)
        points = []
        for point in proposal.points:
            if not point.fields:
                raise Rejected(f"the point {point.title!r} names no spec field")
            refs = []
            for ref in point.fields:
                if ref.path not in paths:
                    raise Rejected(f"{ref.path} is not a deployment spec field")
                recorded = spec.provenance.get(ref.path)
                actual = recorded.source if recorded else None
                if ref.source is not None and ref.source != actual:
                    raise Rejected(
                        f"{ref.path} is {actual.value if actual else 'unrecorded'}, "
                        f"not {ref.source.value}"
                    )
                refs.append(ref.model_copy(update={"source": actual}))
            for text in (proposal.headline, point.title, point.text, point.change_with or ""):
                for name in _SIZE_NAME.findall(text):
                    if name not in facts:
                        raise Rejected(f"{name} is not in the plan")
            points.append(point.model_copy(update={"fields": refs}))
        if not points:
            raise Rejected("the answer has no points")
        return proposal.model_copy(update={"points": points})

    def fallback(self, inputs: CompilerInput) -> PlanExplanation:
        spec = inputs.spec
        points = [
            _profile(spec),
            _compute(inputs),
            _network(inputs),
            _database(inputs),
            _front_door(inputs),
            _app(spec),
            _tracing(inputs),
            _cost(inputs),
        ]
        total = sum(n for t, n in inputs.resources.items() if t != "AWS::CDK::Metadata")
        headline = (
            f"{spec.profile} plan for {spec.app.name} in {spec.region}: {total} resources, "
            f"about ${inputs.total_usd:,.2f}/month."
        )
        return PlanExplanation(headline=headline, points=[p for p in points if p is not None])


def _value_at(spec: DeploymentSpec, path: str) -> Any:
    value: Any = spec
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _provenance(spec: DeploymentSpec, path: str) -> str:
    recorded = spec.provenance.get(path)
    return recorded.describe() if recorded else "unrecorded"


def _why(spec: DeploymentSpec, path: str) -> str:
    """Where a field's value came from, as a person says it."""
    recorded = spec.provenance.get(path)
    if recorded is None:
        return "as given in the spec"
    note = recorded.note
    where = f" ({recorded.evidence})" if recorded.evidence else ""
    if recorded.source == Source.USER:
        return f"you set it{where or ' (hivemind.yaml or a flag)'}"
    if recorded.source == Source.DETECTED:
        return f"detected in the repository{where}" + (f": {note}" if note else "")
    if recorded.source == Source.LLM:
        return f"proposed by a model{where}" + (f": {note}" if note else "")
    return note or "HiveMind's default"


def _refs(spec: DeploymentSpec, *paths: str) -> list[FieldRef]:
    known = set(field_paths())
    return [
        FieldRef(path=p, source=spec.provenance[p].source if p in spec.provenance else None)
        for p in paths
        if p in known
    ]


def _profile(spec: DeploymentSpec) -> PlanPoint:
    if spec.profile == "production":
        text = (
            "Production: at least two instances in two availability zones behind the load "
            "balancer, private subnets with a NAT gateway per zone, and a Multi-AZ database "
            f"with a read replica, 7-day backups and deletion protection ({_why(spec, 'profile')})."
        )
        change = "--stage-1 (or profile: stage-1 in hivemind.yaml) for one small, cheaper instance"
    else:
        text = (
            "Stage-1: one instance in a public subnet, no NAT gateway, and a single-AZ "
            "database without replica or backups, to try the app cheaply "
            f"({_why(spec, 'profile')})."
        )
        change = "--profile production (profile: production in hivemind.yaml) to keep it up"
    return PlanPoint(title="Profile", text=text, fields=_refs(spec, "profile"), change_with=change)


def _compute(inputs: CompilerInput) -> PlanPoint:
    spec = inputs.spec
    compute = spec.compute
    where = "across two availability zones" if compute.count > 1 else "in one availability zone"
    monthly = inputs.monthly("AWS::EC2::Instance")
    text = (
        f"{compute.count} x {compute.instance_type} {where}, ${monthly:,.2f}/month: the type "
        f"is {_why(spec, 'compute.instance_type')}; the count is {_why(spec, 'compute.count')}."
    )
    if compute.standby_count:
        text += f" {compute.standby_count} standby instance(s) wait for the next release."
    return PlanPoint(
        title="Compute",
        text=text,
        fields=_refs(spec, "compute.instance_type", "compute.count", "profile"),
        change_with="compute.instance_type and compute.count in hivemind.yaml",
    )


def _network(inputs: CompilerInput) -> PlanPoint:
    spec = inputs.spec
    nat = inputs.resources.get("AWS::EC2::NatGateway", 0)
    if nat:
        text = (
            f"The instances run in private subnets and reach the internet through {nat} NAT "
            f"gateway(s) with their Elastic IPs, "
            f"${inputs.monthly('AWS::EC2::NatGateway', 'AWS::EC2::EIP'):,.2f}/month; the deploy "
            "reaches them over SSH through an EC2 Instance Connect Endpoint, no port open to "
            "the internet."
        )
        return PlanPoint(
            title="Network",
            text=text,
            fields=_refs(spec, "profile"),
            change_with="the stage-1 profile has no NAT gateways (public subnets)",
        )
    ssh = spec.access.ssh_cidr
    reach = f"SSH only from {ssh} ({_why(spec, 'access.ssh_cidr')})" if ssh else "no SSH rule"
    text = (
        "The instances run in public subnets with no NAT gateway (no hourly NAT cost); they "
        f"accept the app port from the load balancer only, and {reach}."
    )
    return PlanPoint(
        title="Network",
        text=text,
        fields=_refs(spec, "profile", "access.ssh_cidr"),
        change_with="access.ssh_cidr (--ssh-cidr) for the SSH rule",
    )


def _database(inputs: CompilerInput) -> PlanPoint:
    spec = inputs.spec
    db = spec.database
    if db.engine == "none":
        return PlanPoint(
            title="Database",
            text=f"No managed database: {_why(spec, 'database.engine')}.",
            fields=_refs(spec, "database.engine"),
            change_with="database.engine: postgres or mysql in hivemind.yaml",
        )
    count = inputs.resources.get("AWS::RDS::DBInstance", 0)
    shape = (
        "Multi-AZ with a read replica, 7-day backups and deletion protection"
        if spec.profile == "production"
        else "single-AZ, no replica, no backups, deleted with the stack"
    )
    text = (
        f"{db.engine} {db.engine_version} on {db.instance_class} with {db.storage_gb} GB, "
        f"{shape}: {count} DB instance(s), ${inputs.monthly('AWS::RDS::DBInstance'):,.2f}/month. "
        f"The engine was {_why(spec, 'database.engine')}; the class is "
        f"{_why(spec, 'database.instance_class')}. The password is generated in Secrets "
        "Manager and never leaves AWS."
    )
    return PlanPoint(
        title="Database",
        text=text,
        fields=_refs(
            spec,
            "database.engine",
            "database.engine_version",
            "database.instance_class",
            "database.storage_gb",
            "profile",
        ),
        change_with="database.instance_class and database.storage_gb in hivemind.yaml",
    )


def _front_door(inputs: CompilerInput) -> PlanPoint:
    spec = inputs.spec
    app = spec.app
    if app.port is None:
        return PlanPoint(
            title="Load balancer",
            text=f"No load balancer: the app serves no port ({_why(spec, 'app.port')}).",
            fields=_refs(spec, "app.port"),
            change_with="app.port in hivemind.yaml if the app does listen",
        )
    monthly = inputs.monthly("AWS::ElasticLoadBalancingV2::LoadBalancer")
    if spec.access.certificate_arn:
        tls = (
            f"HTTPS on 443 for {spec.access.domain} with your certificate; port 80 redirects to it"
        )
        change = "access.certificate_arn and access.domain in hivemind.yaml"
    else:
        tls = "plain HTTP on port 80 (no certificate)"
        change = (
            "access.certificate_arn (an ACM certificate) and access.domain (its domain) "
            "in hivemind.yaml for HTTPS"
        )
    text = (
        f"An Application Load Balancer, ${monthly:,.2f}/month, serves {tls}, and forwards to "
        f"port {app.port} ({_why(spec, 'app.port')}); it checks {app.health_path} "
        f"({_why(spec, 'app.health_path')})."
    )
    return PlanPoint(
        title="Load balancer",
        text=text,
        fields=_refs(
            spec, "access.certificate_arn", "access.domain", "app.port", "app.health_path"
        ),
        change_with=change,
    )


def _app(spec: DeploymentSpec) -> PlanPoint:
    app = spec.app
    build = f"built with `{app.build_command}`, " if app.build_command else ""
    text = (
        f"{app.language} {app.runtime_version}"
        + (f" ({app.framework})" if app.framework else "")
        + f", {build}started with `{app.start_command}` as a systemd service; the start "
        f"command is {_why(spec, 'app.start_command')}."
    )
    if app.env_vars:
        text += f" You must provide: {', '.join(app.env_vars)}."
    return PlanPoint(
        title="App",
        text=text,
        fields=_refs(
            spec, "app.language", "app.runtime_version", "app.build_command", "app.start_command"
        ),
        change_with="app.build_command and app.start_command in hivemind.yaml",
    )


def _tracing(inputs: CompilerInput) -> PlanPoint:
    spec = inputs.spec
    if spec.xray:
        text = (
            "X-Ray tracing is on: the instances run the X-Ray daemon and may write traces "
            f"({_why(spec, 'xray')})."
        )
    else:
        text = (
            "No X-Ray tracing; logs and metrics still go to the CloudWatch dashboard "
            f"({_why(spec, 'xray')})."
        )
    return PlanPoint(title="Tracing", text=text, fields=_refs(spec, "xray"), change_with="--xray")


def _cost(inputs: CompilerInput) -> PlanPoint:
    spec = inputs.spec
    by_type: dict[str, float] = {}
    for line in inputs.cost_lines:
        by_type[line.resource_type] = by_type.get(line.resource_type, 0.0) + line.monthly_usd
    biggest = sorted(by_type.items(), key=lambda item: (-item[1], item[0]))[:3]
    items = ", ".join(f"{t.split('::')[-1]} ${usd:,.2f}" for t, usd in biggest)
    text = (
        f"About ${inputs.total_usd:,.2f}/month on demand in {spec.region} "
        f"({_why(spec, 'region')})" + (f"; the biggest items: {items}." if items else ".")
    )
    return PlanPoint(
        title="Cost",
        text=text,
        fields=_refs(spec, "region", "profile"),
        change_with="--region, or the stage-1 profile for the smallest plan",
    )
