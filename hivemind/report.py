"""Deployment reports: what a deployment is, how it got there, and what to do next.

`build_report` reads one deployment's state and spec (and, when given, its event log
and what AWS billed) and returns a `Report`: a title and sections, each a list of
blocks (paragraphs, lists, tables, code, the architecture diagram). Nothing in it is
invented: every value comes from the record or the spec, and what is not known is
said to be unknown. The same `Report` renders as Markdown (`Report.markdown`, what
`report.md` holds) and as a standalone HTML page (`render_html`: no script, nothing
fetched from anywhere; the Mermaid diagram as its source next to a plain-HTML account
of the same architecture). Every value taken from the record is escaped for the
format it lands in.

`write_report` writes `report.md` (or `report.html`) into the record's folder.
"""

from __future__ import annotations

import html
import math
import re
import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from hivemind.cost import ENGINE_NAMES, HOURS_PER_MONTH
from hivemind.deployer.access import KEY_FILE, KNOWN_HOSTS_FILE, SSH_USER, ssh_folder, ssh_port
from hivemind.deployer.layout import Layout
from hivemind.deployment_ids import TAG_DEPLOYMENT_ID
from hivemind.records import (
    EVENTS_FILE,
    IN_PROGRESS,
    STALE_FAILURE,
    DeploymentRecord,
    DeploymentState,
    RecordStore,
    Status,
    write_atomically,
)
from hivemind.render import render
from hivemind.spec import COLORS, DeploymentSpec, field_paths
from hivemind.spec_report import _show, _value

Format = Literal["markdown", "html"]
REPORT_FILES: Final[Mapping[str, str]] = {"markdown": "report.md", "html": "report.html"}
# How the stack is built (hivemind_constructs.network.AZ_COUNT and
# hivemind_constructs.stack.NAT_GATEWAYS; tests/test_report.py keeps them equal), used
# only where the record cannot say: before the stack exists, and where instances sit
# (the web tier places them in the zones in turn).
AVAILABILITY_ZONES: Final = 2
PLANNED_NAT_GATEWAYS: Final[Mapping[str, int]] = {"stage-1": 0, "production": 2}
DATABASE_PORTS: Final[Mapping[str, int]] = {"postgres": 5432, "mysql": 3306}
EVENT_LINES: Final = 30
_ENDED = (Status.DESTROYED, Status.ROLLED_BACK)
_TEARDOWN_STAGES = ("destroy", "rollback")


# --- the document -------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    """Literal text shown as code: a command, a path, an id."""

    text: str


@dataclass(frozen=True)
class Link:
    text: str
    url: str


Inline = str | Code | Link
Text = tuple[Inline, ...]


@dataclass(frozen=True)
class Paragraph:
    text: Text


@dataclass(frozen=True)
class Bullets:
    items: tuple[Text, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Text, ...], ...]
    numeric: frozenset[int] = frozenset()  # right-aligned columns


@dataclass(frozen=True)
class CodeBlock:
    text: str
    language: str = ""


@dataclass(frozen=True)
class Subheading:
    text: str


def para(*parts: Inline) -> Paragraph:
    return Paragraph(parts)


def row(*cells: Inline | Text) -> tuple[Text, ...]:
    return tuple(cell if isinstance(cell, tuple) else (cell,) for cell in cells)


@dataclass(frozen=True)
class Node:
    """One box of the architecture diagram; `lines` are its label, plain text."""

    key: str
    lines: tuple[str, ...]
    shape: Literal["box", "round", "database", "stadium"] = "box"


@dataclass(frozen=True)
class Group:
    """A boundary around nodes: the VPC, an availability zone."""

    key: str
    title: str
    members: tuple[Node | Group, ...]


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""
    dotted: bool = False


_MERMAID_SHAPES: Final[Mapping[str, tuple[str, str]]] = {
    "box": ("[", "]"),
    "round": ("(", ")"),
    "database": ("[(", ")]"),
    "stadium": ("([", "])"),
}


@dataclass(frozen=True)
class Diagram:
    """The deployment's architecture: a Mermaid flowchart, or the same in words."""

    caption: str
    members: tuple[Node | Group, ...]
    edges: tuple[Edge, ...]

    def nodes(self) -> dict[str, Node]:
        found: dict[str, Node] = {}

        def walk(members: Iterable[Node | Group]) -> None:
            for member in members:
                if isinstance(member, Group):
                    walk(member.members)
                else:
                    found[member.key] = member

        walk(self.members)
        return found

    def mermaid(self) -> str:
        lines = ["flowchart LR"]

        def emit(members: Iterable[Node | Group], depth: int) -> None:
            pad = "    " * depth
            for member in members:
                if isinstance(member, Group):
                    lines.append(f'{pad}subgraph {member.key}["{_mermaid_text(member.title)}"]')
                    emit(member.members, depth + 1)
                    lines.append(f"{pad}end")
                else:
                    label = "<br/>".join(_mermaid_text(line) for line in member.lines)
                    opening, closing = _MERMAID_SHAPES[member.shape]
                    lines.append(f'{pad}{member.key}{opening}"{label}"{closing}')

        emit(self.members, 1)
        for edge in self.edges:
            arrow = "-.->" if edge.dotted else "-->"
            label = f'|"{_mermaid_text(edge.label)}"|' if edge.label else ""
            lines.append(f"    {edge.source} {arrow}{label} {edge.target}")
        return "\n".join(lines)

    def connections(self) -> list[str]:
        """Each edge in words: `Users → Application Load Balancer: HTTP :80`."""
        names = {key: node.lines[0] for key, node in self.nodes().items()}
        return [
            f"{names[e.source]} → {names[e.target]}" + (f": {e.label}" if e.label else "")
            for e in self.edges
        ]


Block = Paragraph | Bullets | Table | CodeBlock | Subheading | Diagram


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    blocks: tuple[Block, ...]

    def markdown(self) -> str:
        body = "\n\n".join(_md_block(block) for block in self.blocks)
        return f"## {_md_plain(self.title)}\n\n{body}\n"


@dataclass(frozen=True)
class Report:
    title: str
    sections: tuple[Section, ...]

    def markdown(self) -> str:
        return "\n".join([f"# {_md_plain(self.title)}\n", *(s.markdown() for s in self.sections)])

    def section(self, key: str) -> Section:
        return next(s for s in self.sections if s.key == key)


@dataclass(frozen=True)
class ActualCosts:
    """What AWS billed for the deployment over a period, by service: Cost Explorer's
    figures, grouped by service and filtered on the deployment's id tag."""

    start: str  # first day, inclusive (YYYY-MM-DD)
    end: str  # last day, exclusive
    by_service: Mapping[str, float] = field(default_factory=dict)
    source: str = "AWS Cost Explorer"

    @property
    def total_usd(self) -> float:
        return math.fsum(self.by_service.values())


# --- the report of one deployment ---------------------------------------------------


def build_report(
    state: DeploymentState,
    spec: DeploymentSpec,
    *,
    events: Sequence[str] | None = None,
    actual_costs: ActualCosts | None = None,
    record_folder: Path | None = None,
    ssh_port: int = 22,
    now: datetime | None = None,
) -> Report:
    """The report of one deployment. A function of its arguments alone, except that
    `now` (to tell how long a deployment has been failed) defaults to the clock and
    `record_folder` (where its SSH key is) to the record store's folder for its id."""
    facts = _Facts(
        state,
        spec,
        record_folder or RecordStore().record(state.deployment_id).folder,
        ssh_port,
        now or datetime.now(UTC),
    )
    return Report(
        f"{state.deployment_id}: {state.app} ({_status(state.status)})",
        (
            Section("summary", "Summary", _summary(facts)),
            Section("timeline", "Timeline", _timeline(facts, events or [])),
            Section("architecture", "Architecture", (architecture(state, spec),)),
            Section("resources", "Resources", _resources(facts)),
            Section("configuration", "Configuration", _configuration(spec)),
            Section("verification", "Verification", _verification(facts)),
            Section("access", "Access", _access(facts)),
            Section("costs", "Costs", _costs(facts, actual_costs)),
            Section("next-steps", "Next steps and troubleshooting", _next_steps(facts)),
        ),
    )


def render_report(
    state: DeploymentState,
    spec: DeploymentSpec,
    *,
    events: list[str] | None = None,
    actual_costs: ActualCosts | None = None,
    record_folder: Path | None = None,
    ssh_port: int = 22,
    now: datetime | None = None,
) -> str:
    """The report as Markdown (see `build_report`)."""
    return build_report(
        state,
        spec,
        events=events,
        actual_costs=actual_costs,
        record_folder=record_folder,
        ssh_port=ssh_port,
        now=now,
    ).markdown()


def report_of(record: DeploymentRecord, *, actual_costs: ActualCosts | None = None) -> Report:
    """The report of a recorded deployment: its state, spec and event log as they are
    on disk now (not checked against AWS; `hivemind status` does that)."""
    events = record.folder / EVENTS_FILE
    return build_report(
        record.load(),
        record.spec(),
        events=events.read_text("utf-8").splitlines() if events.is_file() else [],
        actual_costs=actual_costs,
        record_folder=record.folder,
        ssh_port=ssh_port(),
    )


def report_text(report: Report, fmt: Format) -> str:
    return report.markdown() if fmt == "markdown" else render_html(report)


def write_report(
    record: DeploymentRecord, *, fmt: Literal["markdown", "html"] = "markdown"
) -> Path:
    """Write the deployment's report into its record folder (`report.md`, or
    `report.html`), atomically; returns the file's path."""
    path = record.folder / REPORT_FILES[fmt]
    write_atomically(path, report_text(report_of(record), fmt))
    return path


def keep_report(record: DeploymentRecord, log: Callable[[str], None] | None = None) -> None:
    """Write the Markdown report after a command changed the deployment (deploy, retry,
    update, upgrade, destroy). Best effort: a report that cannot be written is logged,
    never allowed to fail the command that did the work."""
    try:
        write_report(record)
    except Exception as problem:
        (log or record.log)(f"report: not written ({type(problem).__name__}: {problem})")


@dataclass(frozen=True)
class _Facts:
    state: DeploymentState
    spec: DeploymentSpec
    folder: Path
    ssh_port: int
    now: datetime

    @property
    def id(self) -> str:
        return self.state.deployment_id

    @property
    def ended(self) -> bool:
        return self.state.status in _ENDED

    def failure(self) -> str:
        """`Failed at the deploy stage: <its error>`."""
        stage = self.state.failed_stage or "unknown"
        result = self.state.stage(stage)
        return f"Failed at the {stage} stage" + (
            f": {result.error}" if result and result.error else "."
        )

    def failed_for(self) -> timedelta | None:
        return self.state.failed_for(self.now)


def _summary(facts: _Facts) -> tuple[Block, ...]:
    state, spec = facts.state, facts.spec
    status = _status(state.status)
    if state.status == Status.DEPLOYED:
        opening = (
            para(f"{spec.app.name} is deployed and answers at ", Link(state.url, state.url), ".")
            if state.url
            else para(f"{spec.app.name} is deployed; it serves no HTTP port, so it has no URL.")
        )
    elif state.status in (Status.FAILED, Status.ROLLBACK_FAILED):
        opening = para(f"The deployment is {status}. {facts.failure()}")
    elif state.status in IN_PROGRESS:
        opening = para(
            f"The deployment is {status}: a HiveMind process is changing it, or was "
            "interrupted while it did."
        )
    else:
        opening = para(f"The deployment is {status}.")
    rows = [
        row("status", status),
        row("app", f"{spec.app.name} ({spec.app.language}{_framework(spec)})"),
        row("profile", state.profile),
        row("region", state.region),
        row("stack", Code(state.stack_name)),
        row("URL", Link(state.url, state.url) if state.url else "none"),
    ]
    if state.source:
        source = state.source
        commit = f" at {source.commit[:12]}" if source.commit else " (not a git repository)"
        rows.append(row("release", (Code(source.release_id), " from ", Code(source.ref), commit)))
    if state.monthly_usd:
        rows.append(row("estimated cost", f"{_usd(state.monthly_usd)} a month"))
    if state.failed_stage:
        rows.append(row("failed stage", state.failed_stage))
    if state.note:
        rows.append(row("note", state.note))
    rows += [row("created", _when(state.created_at)), row("updated", _when(state.updated_at))]
    return opening, Table(("", ""), tuple(rows))


def _timeline(facts: _Facts, events: Sequence[str]) -> tuple[Block, ...]:
    stages = facts.state.stages
    blocks: list[Block] = []
    if stages:
        rows = tuple(
            row(
                s.name,
                s.status,
                _when(s.started_at),
                _duration(s.seconds) if s.seconds is not None else "-",
                s.error or s.detail,
            )
            for s in stages
        )
        total = math.fsum(s.seconds or 0.0 for s in stages)
        blocks += [
            Table(("stage", "result", "started", "duration", "error"), rows, frozenset({3})),
            para(f"{len(stages)} stage runs, {_duration(total)} in all."),
        ]
    else:
        blocks.append(para("No stage has run yet."))
    if events:
        shown = list(events[-EVENT_LINES:])
        blocks += [
            Subheading("Event log"),
            para(f"The last {len(shown)} of {len(events)} lines of ", Code(EVENTS_FILE), ":"),
            CodeBlock("\n".join(shown)),
        ]
    return tuple(blocks)


def architecture(state: DeploymentState, spec: DeploymentSpec) -> Diagram:
    """The deployment's architecture: from the stack's outputs and resources where the
    record has them, else from the spec (what the stack will be)."""
    outputs = state.outputs
    created = bool(outputs)
    https = spec.access.certificate_arn is not None
    types = Counter(r.resource_type for r in state.resources)
    nats = types["AWS::EC2::NatGateway"] if state.resources else PLANNED_NAT_GATEWAYS[spec.profile]
    public = nats == 0  # without NAT the instances sit in public subnets
    outside: list[Node] = [Node("users", ("Users",), "stadium")]
    in_vpc: list[Node | Group] = []
    zones: list[list[Node | Group]] = [[] for _ in range(AVAILABILITY_ZONES)]
    edges: list[Edge] = []

    balancer = spec.app.port is not None and (not created or "LoadBalancerDns" in outputs)
    if balancer:
        listener = "HTTPS :443 (HTTP :80 redirects)" if https else "HTTP :80"
        dns = outputs.get("LoadBalancerDns")
        in_vpc.append(Node("alb", ("Application Load Balancer", listener, *_given(dns))))
        edges.append(Edge("users", "alb", "HTTPS :443" if https else "HTTP :80"))

    instances: list[tuple[int, str]] = []  # (zone, node key)
    active_color = outputs.get("ActiveColor", spec.compute.active_color)
    for color in COLORS:
        ids = _instance_ids(outputs, color) if created else None
        count = len(ids) if ids is not None else spec.compute.instances(color)
        active = color == active_color
        for zone in range(AVAILABILITY_ZONES):
            placed = ids[zone::AVAILABILITY_ZONES] if ids is not None else []
            here = len(range(zone, count, AVAILABILITY_ZONES))
            if here == 0:
                continue
            key = f"{color}_az{zone + 1}"
            role = "active" if active else "standby"
            size = f"{here} x {spec.compute.instance_type}"
            zones[zone].append(
                Node(
                    key, (f"{color} instances, AZ {zone + 1} ({role})", size, *_abbreviated(placed))
                )
            )
            instances.append((zone, key))
            if balancer:
                edges.append(
                    Edge("alb", key, f"HTTP :{spec.app.port}")
                    if active
                    else Edge("alb", key, "standby: no traffic", dotted=True)
                )

    for index in range(nats):
        zone = index % AVAILABILITY_ZONES
        zones[zone].append(Node(f"nat{index + 1}", (f"NAT gateway, AZ {zone + 1}",)))
    if nats:
        outside.append(Node("internet", ("Internet",), "round"))
        edges += [Edge(key, f"nat{zone % nats + 1}", "egress", True) for zone, key in instances]
        edges += [Edge(f"nat{i + 1}", "internet", dotted=True) for i in range(nats)]

    endpoint = outputs.get("ConnectEndpointId")
    if instances and (endpoint or (not created and not public)):
        outside.append(Node("operator", ("Operator",), "stadium"))
        in_vpc.append(Node("eice", ("EC2 Instance Connect Endpoint", *_given(endpoint))))
        edges.append(Edge("operator", "eice", "SSH tunnel"))
        edges += [Edge("eice", key, "SSH", dotted=True) for _zone, key in instances]
    elif instances and public and spec.access.ssh_cidr:
        outside.append(Node("operator", ("Operator",), "stadium"))
        label = f"SSH from {spec.access.ssh_cidr}"
        edges += [Edge("operator", key, label, dotted=True) for _zone, key in instances]

    database = spec.database
    if database.engine != "none":
        production = spec.profile == "production"
        address = outputs.get("DatabaseEndpoint")
        port = outputs.get("DatabasePort") or str(DATABASE_PORTS[database.engine])
        lines = (
            f"RDS {ENGINE_NAMES[database.engine]} {database.engine_version}",
            f"{database.instance_class} · {database.storage_gb} GiB",
            "Multi-AZ" if production else "single-AZ",
            *_given(f"{address}:{port}" if address else None),
        )
        in_vpc.append(Node("db", lines, "database"))
        edges += [Edge(key, "db", f"TCP :{port}") for _zone, key in instances]
        replica = outputs.get("DatabaseReplicaEndpoint")
        if replica or (not created and production):
            in_vpc.append(Node("replica", ("Read replica", *_given(replica)), "database"))
            edges.append(Edge("db", "replica", "replication", dotted=True))

    alarms = types["AWS::CloudWatch::Alarm"]
    watch = (
        "CloudWatch",
        *_given(outputs.get("DashboardName"), "dashboard "),
        *_given(outputs.get("AppLogGroup"), "logs "),
        *_given(f"{alarms} alarms" if alarms else None),
    )
    outside.append(Node("cloudwatch", watch, "round"))
    edges += [Edge(key, "cloudwatch", "logs, metrics", True) for _zone, key in instances]
    if spec.xray:
        group = outputs.get("XRayGroup")
        outside.append(Node("xray", ("X-Ray", *_given(group, "group ")), "round"))
        edges += [Edge(key, "xray", "traces", dotted=True) for _zone, key in instances]

    subnets = "public subnet" if public else "private subnet"
    for zone, members in enumerate(zones):
        if members:
            in_vpc.append(Group(f"az{zone + 1}", f"AZ {zone + 1} · {subnets}", tuple(members)))
    vpc_id = outputs.get("VpcId")
    vpc = Group("vpc", f"VPC {vpc_id}" if vpc_id else "VPC", tuple(in_vpc))
    if created and state.status in _ENDED:
        caption = "As it was deployed; none of it exists any more."
    elif created:
        caption = "As deployed: from the stack's outputs and resources."
    else:
        caption = "As planned from the spec: the stack has not been created."
    return Diagram(caption, (outside[0], vpc, *outside[1:]), tuple(edges))


def _given(value: str | None, prefix: str = "") -> tuple[str, ...]:
    return (f"{prefix}{value}",) if value else ()


def _instance_ids(outputs: Mapping[str, str], color: str) -> list[str] | None:
    value = outputs.get(f"{color.capitalize()}InstanceIds")
    if value is None:
        return None
    return [i for i in value.split(",") if i and i != "-"]


def _abbreviated(ids: list[str], most: int = 3) -> list[str]:
    if len(ids) <= most:
        return ids
    return [*ids[: most - 1], f"and {len(ids) - most + 1} more"]


def _resources(facts: _Facts) -> tuple[Block, ...]:
    state = facts.state
    if not state.resources:
        return (
            para(
                "No resources are recorded: HiveMind lists them from CloudFormation once the "
                "stack is created."
            ),
        )
    resources = sorted(state.resources, key=lambda r: (r.resource_type, r.logical_id))
    rows = [
        row(
            r.resource_type,
            Code(r.logical_id),
            Code(r.physical_id) if r.physical_id else "-",
            _usd(r.monthly_usd) if r.monthly_usd else "-",
        )
        for r in resources
    ]
    total = math.fsum(r.monthly_usd for r in resources)
    rows.append(row("Total", f"{len(resources)} resources", "", _usd(total)))
    verb = "were" if facts.ended else "are"
    return (
        para(f"{len(resources)} resources {verb} in the stack ", Code(state.stack_name), ":"),
        Table(("type", "logical id", "physical id", "$/month"), tuple(rows), frozenset({3})),
    )


def _configuration(spec: DeploymentSpec) -> tuple[Block, ...]:
    rows = []
    for path in field_paths():
        provenance = spec.provenance.get(path)
        why = provenance.describe() if provenance else "not recorded"
        rows.append(row(Code(path), _show(_value(spec, path)), why))
    blocks: list[Block] = [
        para(
            f"The deployment spec (schema v{spec.schema_version}), each value with where it "
            "came from: a default, detected (with its evidence), an LLM's proposal, or the user."
        ),
        Table(("field", "value", "provenance"), tuple(rows)),
    ]
    if spec.notes:
        blocks += [Subheading("Notes"), Bullets(tuple((note,) for note in spec.notes))]
    return tuple(blocks)


def _verification(facts: _Facts) -> tuple[Block, ...]:
    state = facts.state
    blocks: list[Block] = []
    if state.checks:
        counts = Counter(c.status for c in state.checks)
        summary = ", ".join(
            f"{counts[s]} {s.replace('_', ' ')}"
            for s in ("passed", "failed", "not_applicable")
            if counts[s]
        )
        rows = tuple(
            row(
                c.name,
                c.status.replace("_", " "),
                c.detail,
                _duration(c.seconds) if c.seconds is not None else "-",
            )
            for c in state.checks
        )
        blocks += [
            para(f"QA checks: {summary}."),
            Table(("check", "result", "detail", "time"), rows, frozenset({3})),
        ]
    else:
        blocks.append(para("No QA checks are recorded: the verify stage has not run."))
    blocks.append(Subheading("Releases on the instances"))
    if not state.releases:
        blocks.append(para("No release is recorded on any instance yet."))
        return tuple(blocks)
    steps = list(dict.fromkeys(step for r in state.releases for step in r.seconds))
    releases = tuple(
        row(
            Code(r.instance_id),
            r.address,
            Code(r.release_id),
            r.commit[:12] if r.commit else "-",
            *(_duration(r.seconds[s]) if s in r.seconds else "-" for s in steps),
            _duration(math.fsum(r.seconds.values())),
        )
        for r in state.releases
    )
    headers = ("instance", "address", "release", "commit", *steps, "total")
    blocks.append(Table(headers, releases, frozenset(range(4, len(headers)))))
    if state.history:
        blocks.append(Subheading("Releases in service, newest first"))
        served = tuple(
            row(
                Code(e.release_id),
                e.commit[:12] if e.commit else "-",
                e.version or "the checkout",
                e.how,
                e.at,
            )
            for e in reversed(state.history)
        )
        blocks.append(Table(("release", "commit", "asked for", "how", "since"), served))
    return tuple(blocks)


def _access(facts: _Facts) -> tuple[Block, ...]:
    state, spec, outputs = facts.state, facts.spec, facts.state.outputs
    if facts.ended:
        status = _status(state.status)
        return (para(f"Nothing to reach: the deployment is {status} and its SSH key deleted."),)
    items: list[Text] = []
    if state.url:
        items.append(("URL: ", Link(state.url, state.url)))
    elif spec.app.port is None:
        items.append(("URL: none (the app serves no HTTP port, so there is no load balancer)",))
    else:
        items.append(("URL: none yet (the stack has not been created)",))
    if outputs.get("DashboardName"):
        name = outputs["DashboardName"]
        items.append(("Dashboard: ", Link(name, dashboard_url(state.region, name))))
    if outputs.get("AppLogGroup"):
        tail = _sh(
            "aws logs tail {g} --follow --region {r}", g=outputs["AppLogGroup"], r=state.region
        )
        items.append(("Application logs: ", Code(tail)))
    if outputs.get("DatabaseEndpoint"):
        port = outputs.get("DatabasePort")
        address = outputs["DatabaseEndpoint"] + (f":{port}" if port else "")
        items.append(("Database: ", Code(address)))
    if outputs.get("DatabaseReplicaEndpoint"):
        items.append(("Read replica: ", Code(outputs["DatabaseReplicaEndpoint"])))
    if outputs.get("DatabaseSecretArn"):
        secret = Code(outputs["DatabaseSecretArn"])
        items.append(("Database credentials: in Secrets Manager, ", secret))
    return (Bullets(tuple(items)), Subheading("SSH"), *_ssh(facts))


def dashboard_url(region: str, dashboard: str) -> str:
    return (
        f"https://console.aws.amazon.com/cloudwatch/home?region={region}"
        f"#dashboards:name={dashboard}"
    )


def _ssh(facts: _Facts) -> list[Block]:
    state, spec = facts.state, facts.spec
    key = ssh_folder(facts.folder) / KEY_FILE
    known_hosts = ssh_folder(facts.folder) / KNOWN_HOSTS_FILE
    blocks: list[Block] = [
        para(
            "The deployment's own key is ",
            Code(str(key)),
            "; the instances' host keys, pinned from their console output, are in ",
            Code(str(known_hosts)),
            f". The login user is {SSH_USER}.",
        )
    ]
    if not state.releases:
        tag = f"Name=tag:{TAG_DEPLOYMENT_ID},Values={facts.id}"
        lookup = _sh("aws ec2 describe-instances --filters {t} --region {r}", t=tag, r=state.region)
        blocks.append(
            para(
                "No instance addresses are recorded yet: the deploy stage records them and "
                "pins the host keys. Meanwhile ",
                Code(lookup),
                " lists the instances.",
            )
        )
        return blocks
    port = facts.ssh_port
    pinned = _sh(
        "ssh -i {key} -o IdentitiesOnly=yes -o UserKnownHostsFile={known} "
        "-o StrictHostKeyChecking=yes",
        key=key,
        known=known_hosts,
    ) + (f" -p {port}" if port != 22 else "")
    endpoint = state.outputs.get("ConnectEndpointId")
    if endpoint:
        blocks.append(
            para(
                "The instances are in private subnets and open no SSH port to the internet: "
                "ssh reaches them through the stack's EC2 Instance Connect Endpoint ",
                Code(endpoint),
                " (you need ",
                Code("ec2-instance-connect:OpenTunnel"),
                " on it).",
            )
        )
        commands = []
        for release in state.releases:
            tunnel = _sh(
                "aws ec2-instance-connect open-tunnel --instance-id {i} "
                "--instance-connect-endpoint-id {e} --region {r}",
                i=release.instance_id,
                e=endpoint,
                r=state.region,
            ) + (f" --remote-port {port}" if port != 22 else "")
            proxy = shlex.quote(f"ProxyCommand={tunnel}")
            commands.append(f"{pinned} -o {proxy} {SSH_USER}@{release.address}")
        blocks.append(CodeBlock("\n".join(commands), "sh"))
        shortcut = _sh(
            "aws ec2-instance-connect ssh --instance-id {i} --connection-type eice "
            "--private-key-file {key} --os-user {user} --region {r}",
            i=state.releases[0].instance_id,
            key=key,
            user=SSH_USER,
            r=state.region,
        )
        blocks.append(
            para(
                "Or let the AWS CLI run ssh (it checks the host key against your own "
                "known_hosts, not the pinned one): ",
                Code(shortcut),
            )
        )
    else:
        if spec.access.ssh_cidr:
            reach: Text = (f"SSH is open to {spec.access.ssh_cidr} only.",)
        else:
            reach = (
                "The stack has no SSH rule (the spec names no ",
                Code("access.ssh_cidr"),
                "), so these are refused until one is added.",
            )
        blocks.append(para("The instances have public addresses. ", *reach))
        commands = [f"{pinned} {SSH_USER}@{r.address}" for r in state.releases]
        blocks.append(CodeBlock("\n".join(commands), "sh"))
    layout = Layout(spec.app.name)
    blocks.append(
        para(
            "On an instance: ",
            Code(f"sudo journalctl -u {layout.unit_name} -n 100"),
            " (the service), ",
            Code(f"sudo tail -n 100 {layout.log_file}"),
            " (the app's log); the running release is ",
            Code(layout.current),
            ".",
        )
    )
    return blocks


def _costs(facts: _Facts, actual: ActualCosts | None) -> tuple[Block, ...]:
    state = facts.state
    priced = sorted(
        (r for r in state.resources if r.monthly_usd), key=lambda r: (-r.monthly_usd, r.logical_id)
    )
    blocks: list[Block] = [Subheading("Estimate")]
    if state.monthly_usd or priced:
        total = state.monthly_usd or math.fsum(r.monthly_usd for r in priced)
        rows = [row(Code(r.logical_id), r.resource_type, _usd(r.monthly_usd)) for r in priced]
        rows.append(row("Total", "", _usd(total)))
        blocks += [
            para(
                f"Estimated when the stack was synthesized: {_usd(total)} a month "
                f"({HOURS_PER_MONTH} hours of on-demand use; charges by usage, such as data "
                "transfer and requests, are not counted). By resource:"
            ),
            Table(("resource", "type", "$/month"), tuple(rows), frozenset({2})),
        ]
    else:
        spec_file = facts.folder / "spec.json"
        blocks.append(
            para(
                "No estimate is recorded: it is recorded when the stack is created (",
                Code(_sh("hivemind synth --spec {s}", s=spec_file)),
                " shows it beforehand).",
            )
        )
    blocks.append(Subheading("Actual costs"))
    if actual is None:
        blocks.append(
            para(
                "Not known yet. AWS Cost Explorer shows them filtered on the tag ",
                Code(f"{TAG_DEPLOYMENT_ID}={facts.id}"),
                " once that tag is activated as a cost allocation tag.",
            )
        )
    else:
        billed = sorted(actual.by_service.items(), key=lambda item: (-item[1], item[0]))
        rows = [row(service, _usd(amount)) for service, amount in billed]
        rows.append(row("Total", _usd(actual.total_usd)))
        blocks += [
            para(
                f"Billed from {actual.start} to {actual.end} (the end excluded; {actual.source}):"
            ),
            Table(("service", "USD"), tuple(rows), frozenset({1})),
        ]
    return tuple(blocks)


def _next_steps(facts: _Facts) -> tuple[Block, ...]:
    state, spec, id_ = facts.state, facts.spec, facts.id
    first: list[Block] = []
    items: list[Text] = []
    if state.status in (Status.FAILED, Status.ROLLBACK_FAILED):
        stage = state.failed_stage or "unknown"
        first.append(para(facts.failure()))
        if stage in _TEARDOWN_STAGES or state.status == Status.ROLLBACK_FAILED:
            items += [
                (Code(f"hivemind destroy {id_}"), " again: it deletes what is left, past what "
                 "is already gone, and names anything it cannot remove with the command that "
                 "does"),
                (Code(f"hivemind find-orphans --region {state.region}"), " lists resources "
                 "tagged with a deployment id that no deployment on this machine owns"),
            ]  # fmt: skip
        else:
            status = f"hivemind status {id_}"
            if _cli_offers("status", "--show-logs"):
                status += " --show-logs"
            items += [
                *_stage_advice(facts, stage),
                (Code(f"hivemind retry {id_}"), f" resumes at the {stage} stage once the "
                 "cause is fixed"),
                (Code(status), " shows where it stands, checked against AWS"),
                (Code(f"hivemind rollback {id_}"), " tears it all down instead"),
            ]  # fmt: skip
        failed_for = facts.failed_for()
        if failed_for is not None and failed_for > STALE_FAILURE:
            cost = f" (about {_usd(state.monthly_usd)} a month)" if state.monthly_usd else ""
            items.append(
                (
                    f"It has been failed for {_age(failed_for)}, and whatever its stack holds "
                    f"still costs money{cost}. If it is not needed, ",
                    Code(f"hivemind destroy {id_}"),
                    " removes it.",
                )
            )
    elif state.status == Status.DEPLOYED:
        if _cli_offers("update"):
            items.append(
                (Code(f"hivemind update {id_}"), " puts a new release in service, blue-green")
            )
            previous = [e.release_id for e in state.history[:-1]]
            kept = [
                r for r in reversed(previous)
                if state.releases and all(r in i.kept_releases for i in state.releases)
            ]  # fmt: skip
            if kept and kept[0] != state.history[-1].release_id:
                items.append(
                    (Code(f"hivemind update {id_} --version {kept[0]}"), " switches back to "
                     "the release before, still kept on the instances, without a build")
                )  # fmt: skip
        else:
            diff = _sh(
                "hivemind synth --spec {s} --deployment-id {i}", s=facts.folder / "spec.json", i=id_
            )
            items.append((Code(diff), " shows what a changed spec would change in the stack"))
        if spec.profile == "stage-1" and _cli_offers("upgrade"):
            items.append(
                (Code(f"hivemind upgrade {id_} --to-production"), " makes it redundant: "
                 "instances in two AZs, NAT, a Multi-AZ database with a read replica")
            )  # fmt: skip
        items.append((Code(f"hivemind status {id_}"), " checks it against AWS"))
        if state.outputs.get("DashboardName"):
            name = state.outputs["DashboardName"]
            items.append(
                ("Watch it on its dashboard, ", Link(name, dashboard_url(state.region, name)))
            )
        saving = f", saving {_usd(state.monthly_usd)} a month" if state.monthly_usd else ""
        items.append((Code(f"hivemind destroy {id_}"), f" removes it all{saving}"))
    elif facts.ended:
        if state.resources:
            kinds = Counter(r.resource_type for r in state.resources)
            removed = ", ".join(f"{n} x {kind}" for kind, n in sorted(kinds.items()))
            saved = math.fsum(r.monthly_usd for r in state.resources)
            first.append(para(f"Removed: {removed}. That saves {_usd(saved)} a month (estimated)."))
        else:
            first.append(para("Nothing was created" + (f" ({state.note})." if state.note else ".")))
        if state.resources and spec.database.engine != "none" and spec.profile == "production":
            snapshots = _sh("aws rds describe-db-snapshots --region {r}", r=state.region)
            first.append(
                para(
                    "Production databases leave a final snapshot unless destroyed with "
                    "--skip-snapshot; ",
                    Code(snapshots),
                    " lists the snapshots.",
                )
            )
        items.append(
            (Code(f"hivemind find-orphans --region {state.region}"), " double-checks that "
             "nothing tagged with its id is left")
        )  # fmt: skip
    elif state.status in IN_PROGRESS:
        items.append(
            (Code(f"hivemind status {id_}"), " tells whether a process still holds it; if it "
             "was interrupted, the record is corrected from the stack")
        )  # fmt: skip
    else:
        items.append((Code(f"hivemind status {id_}"), " shows where it stands"))
    return (*first, Bullets(tuple(items)))


def _stage_advice(facts: _Facts, stage: str) -> list[Text]:
    """What to look at first when `stage` failed."""
    state = facts.state
    if stage == "synth":
        gates = _sh("hivemind synth --spec {s}", s=facts.folder / "spec.json")
        return [(Code(gates), " explains each finding of the security and lint gates")]
    if stage == "bootstrap":
        return [("Run ", Code("cdk bootstrap"), " for the account and region, then retry.")]
    if stage == "provision":
        events = _sh(
            "aws cloudformation describe-stack-events --stack-name {s} --region {r}",
            s=state.stack_name,
            r=state.region,
        )
        return [(Code(events), " shows each resource's status and CloudFormation's reason")]
    if stage == "deploy":
        return [
            (
                "The deploy stage runs on the instances over SSH: Access shows how to reach "
                "them, and ",
                Code(f"sudo journalctl -u {Layout(facts.spec.app.name).unit_name} -n 100"),
                " there shows the service's log.",
            )
        ]
    if stage == "verify":
        return [
            (f"Failed check {c.name}: {c.detail}",) for c in state.checks if c.status == "failed"
        ]
    return []


def _cli_offers(command: str, option: str | None = None) -> bool:
    """Whether this HiveMind has `command` (with `option`): a report suggests only
    commands that run."""
    import click

    from hivemind.cli import COMMANDS, cli

    if command not in COMMANDS:
        return False
    found = cli.get_command(click.Context(cli), command)
    return found is not None and (option is None or any(option in p.opts for p in found.params))


# --- small formats ------------------------------------------------------------------


def _sh(template: str, **values: object) -> str:
    """A shell command: `template`'s words, each `{name}` filled in and quoted."""
    return " ".join(shlex.quote(word.format(**values)) for word in template.split())


def _status(status: Status) -> str:
    return status.value.replace("_", " ")


def _framework(spec: DeploymentSpec) -> str:
    return f", {spec.app.framework}" if spec.app.framework else ""


def _usd(amount: float) -> str:
    return f"${amount:,.2f}"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _age(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} days {hours % 24} hours" if hours >= 48 else f"{hours} hours"


def _parse_time(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value or "")
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(value: str) -> str:
    parsed = _parse_time(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if parsed else value


# --- Markdown -----------------------------------------------------------------------

# Characters that may start Markdown syntax inside a line; CommonMark makes each one
# literal after a backslash. `$` too, since GitHub reads `$...$` as math.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&$])")
# What starts a list or a thematic break at the beginning of a block.
_MD_BLOCK_START = re.compile(r"^([-+]|\d+[.)](?=\s|$))")


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _md_plain(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", _flat(text))


def _md_inline(text: Text, *, in_table: bool = False) -> str:
    out = []
    for part in text:
        if isinstance(part, Code):
            flat = _flat(part.text)
            fence = "`" * (max(map(len, re.findall("`+", flat)), default=0) + 1)
            pad = " " if flat[:1] in ("`", " ") or flat[-1:] in ("`", " ") else ""
            span = f"{fence}{pad}{flat}{pad}{fence}"
            out.append(span.replace("|", "\\|") if in_table else span)  # GFM tables need it
        elif isinstance(part, Link) and _safe_url(part.url) and not re.search(r"[\s<>]", part.url):
            out.append(f"[{_md_plain(part.text)}](<{part.url}>)")
        else:
            out.append(_md_plain(part.text if isinstance(part, Link) else part))
    line = "".join(out)
    return line if in_table else _MD_BLOCK_START.sub(r"\\\1", line)


def _md_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return _md_inline(block.text)
    if isinstance(block, Subheading):
        return f"### {_md_plain(block.text)}"
    if isinstance(block, Bullets):
        return "\n".join(f"- {_md_inline(item)}" for item in block.items)
    if isinstance(block, CodeBlock):
        return _md_fenced(block.text, block.language)
    if isinstance(block, Table):
        aligns = ["---:" if i in block.numeric else "---" for i in range(len(block.headers))]
        lines = [
            "| " + " | ".join(_md_plain(h) for h in block.headers) + " |",
            "|" + "|".join(aligns) + "|",
        ]
        lines += [
            "| " + " | ".join(_md_inline(cell, in_table=True) for cell in cells) + " |"
            for cells in block.rows
        ]
        return "\n".join(lines)
    return f"_{_md_plain(block.caption)}_\n\n{_md_fenced(block.mermaid(), 'mermaid')}"


def _md_fenced(text: str, language: str) -> str:
    fence = "`" * max(3, max(map(len, re.findall("`+", text)), default=0) + 1)
    return f"{fence}{language}\n{text}\n{fence}"


_MERMAID_ENTITIES: Final[Mapping[str, str]] = {
    "#": "#35;",
    '"': "#quot;",
    "&": "#amp;",
    "<": "#lt;",
    ">": "#gt;",
    "`": "#96;",
    "|": "#124;",
}


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label. Mermaid decodes `#name;` entities, so
    each character that could end the label or read as markup becomes one."""
    return "".join(_MERMAID_ENTITIES.get(ch, ch) for ch in _flat(text).strip())


# --- HTML ---------------------------------------------------------------------------


def render_html(report: Report) -> str:
    """The report as one standalone HTML page: inline CSS, no script, nothing fetched."""
    body = [f"<h1>{_esc(report.title)}</h1>"]
    for section in report.sections:
        body += [f'<section id="{_esc(section.key)}">', f"<h2>{_esc(section.title)}</h2>"]
        body += [_html_block(block) for block in section.blocks]
        body.append("</section>")
    return render("report.html.j2", title=_esc(report.title), body="\n".join(body))


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _safe_url(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def _html_inline(text: Text) -> str:
    out = []
    for part in text:
        if isinstance(part, Code):
            out.append(f"<code>{_esc(part.text)}</code>")
        elif isinstance(part, Link) and _safe_url(part.url):
            out.append(f'<a href="{_esc(part.url)}">{_esc(part.text)}</a>')
        else:
            out.append(_esc(part.text if isinstance(part, Link) else part))
    return "".join(out)


def _html_block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return f"<p>{_html_inline(block.text)}</p>"
    if isinstance(block, Subheading):
        return f"<h3>{_esc(block.text)}</h3>"
    if isinstance(block, Bullets):
        return _html_list(_html_inline(item) for item in block.items)
    if isinstance(block, CodeBlock):
        return f"<pre><code>{_esc(block.text)}</code></pre>"
    if isinstance(block, Table):

        def cell(tag: str, index: int, content: str) -> str:
            numeric = ' class="num"' if index in block.numeric else ""
            return f"<{tag}{numeric}>{content}</{tag}>"

        head = "".join(cell("th", i, _esc(h)) for i, h in enumerate(block.headers))
        rows = "\n".join(
            "<tr>" + "".join(cell("td", i, _html_inline(c)) for i, c in enumerate(cells)) + "</tr>"
            for cells in block.rows
        )
        thead = f"<thead><tr>{head}</tr></thead>\n" if any(block.headers) else ""
        return f"<table>\n{thead}<tbody>\n{rows}\n</tbody>\n</table>"
    return "\n".join(
        [
            f"<p><em>{_esc(block.caption)}</em></p>",
            '<div class="architecture">',
            _html_list(_html_member(member) for member in block.members),
            "<h3>Connections</h3>",
            _html_list(_esc(line) for line in block.connections()),
            "</div>",
            "<h3>Mermaid source</h3>",
            f'<pre class="mermaid">{_esc(block.mermaid())}</pre>',
        ]
    )


def _html_member(member: Node | Group) -> str:
    if isinstance(member, Group):
        inner = _html_list(_html_member(m) for m in member.members)
        return f"<strong>{_esc(member.title)}</strong>\n{inner}"
    return " · ".join(_esc(line) for line in member.lines)


def _html_list(items: Iterable[str]) -> str:
    return "<ul>\n" + "\n".join(f"<li>{item}</li>" for item in items) + "\n</ul>"
