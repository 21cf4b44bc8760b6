"""Ops: how a running deployment is doing, from its grouped log errors and metric anomalies.

Called by `hivemind status` (and the ops watch) with what hivemind/ops/detect.py found
over a window: the app's log errors grouped by signature (a count, a sample line, first
and last seen) and the metrics that left their usual range (the value, and its robust
z-score against the series' median). It gives the deployment's health (healthy, degraded,
failing) and the findings ranked, each with what to look at next.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind.ops.detect import FULL_PERCENT  # memory or disk this full is critical

from .base import Agent, Rejected

Health = Literal["healthy", "degraded", "failing"]
Severity = Literal["critical", "warning", "info"]
_SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}
ANOMALY_Z = 3.0  # below this a metric's move is noise
CRITICAL_Z = 5.0
RECENT = timedelta(minutes=10)
# Log kinds by how bad they are (hivemind/ops/detect.py's kinds: exception, panic,
# log_error, http_5xx; unknown kinds count as 1).
_LOG_WEIGHTS: dict[str, int] = {
    "panic": 3,
    "fatal": 3,
    "exception": 2,
    "log_error": 2,
    "error": 2,
    "http_5xx": 2,
    "timeout": 1,
    "warning": 1,
}
# Words in a signature that make any error critical: the process died or is dying.
_FATAL_WORDS = ("fatal", "critical", "out of memory", "outofmemoryerror", "memoryerror", "panic")
# Metrics that say whether users are served, and those that say whether a resource copes.
_HEALTH_METRICS = (
    "UnHealthyHostCount",
    "HealthyHostCount",
    "HTTPCode_Target_5XX_Count",
    "HTTPCode_ELB_5XX_Count",
    "StatusCheckFailed",
)
_RESOURCE_METRICS = (
    "CPUUtilization",
    "mem_used_percent",
    "disk_used_percent",
    "used_percent",
    "FreeStorageSpace",
    "FreeableMemory",
    "DatabaseConnections",
    "TargetResponseTime",
)
# Metrics whose fall, not rise, is the problem.
_LOW_IS_BAD = ("HealthyHostCount", "FreeStorageSpace", "FreeableMemory")
_PERCENT_FULL = ("mem_used_percent", "disk_used_percent", "used_percent")


class LogErrorGroup(BaseModel):
    """Log lines of one pattern: how many, one sample, when first and last seen."""

    model_config = ConfigDict(frozen=True)

    pattern: str  # the signature, e.g. "ZeroDivisionError: division by zero"
    kind: str = "log_error"  # exception, panic, log_error, http_5xx (or fatal, timeout, ...)
    count: int
    sample: str
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    source: str = ""  # the log streams (instance ids) it came from
    location: str | None = None  # the app's own frame, e.g. "app.py:12 in divide"


class MetricAnomaly(BaseModel):
    """A metric outside its usual range: its value and robust z-score at a time."""

    model_config = ConfigDict(frozen=True)

    metric: str
    resource: str = ""  # an instance id, the load balancer, the target group, the database
    value: float
    z_score: float  # (value - median) / (1.4826 * MAD)
    at: datetime
    unit: str = ""
    baseline: float | None = None  # the median the z-score is measured from

    @property
    def subject(self) -> str:
        return f"{self.metric} on {self.resource}" if self.resource else self.metric


class OpsInput(BaseModel):
    """What hivemind/ops found in one window of a deployment's logs and metrics."""

    model_config = ConfigDict(frozen=True)

    deployment_id: str
    log_errors: tuple[LogErrorGroup, ...] = ()
    anomalies: tuple[MetricAnomaly, ...] = ()
    window_minutes: int = 60
    dashboard: str | None = None


class OpsFinding(BaseModel):
    """One finding, with what to look at next."""

    kind: Literal["log", "metric"]
    subject: str = Field(
        description="a log error's pattern exactly as given, or '<metric> on <resource>'"
    )
    severity: Severity
    what: str = Field(description="what it shows, in plain words, with its numbers")
    look_next: str = Field(description="the command or graph to look at next")


class HealthReport(BaseModel):
    """Ops' answer: the health, a summary, and the findings, most important first."""

    health: Health
    summary: str = Field(description="two or three sentences for the operator")
    findings: list[OpsFinding]


def severity_of_log(group: LogErrorGroup) -> Severity:
    weight = _log_weight(group)
    return "critical" if weight == 3 else "warning" if weight == 2 else "info"


def _log_weight(group: LogErrorGroup) -> int:
    if any(word in group.pattern.lower() for word in _FATAL_WORDS):
        return 3
    return _LOG_WEIGHTS.get(group.kind.lower(), 1)


def severity_of_metric(anomaly: MetricAnomaly) -> Severity:
    worse = anomaly.z_score < 0 if _low_is_bad(anomaly.metric) else anomaly.z_score > 0
    if anomaly.metric in _PERCENT_FULL and anomaly.value >= FULL_PERCENT:
        return "critical"
    if not worse or abs(anomaly.z_score) < ANOMALY_Z:
        return "info"
    if anomaly.metric in _HEALTH_METRICS and abs(anomaly.z_score) >= CRITICAL_Z:
        return "critical"
    if anomaly.metric == "UnHealthyHostCount" and anomaly.value >= 1:
        return "critical"
    return "warning"


def _low_is_bad(metric: str) -> bool:
    return metric in _LOW_IS_BAD


def health_of(inputs: OpsInput) -> Health:
    """The rules' health: failing with a critical finding, degraded with a warning."""
    severities = [severity_of_log(g) for g in inputs.log_errors]
    severities += [severity_of_metric(a) for a in inputs.anomalies]
    if "critical" in severities:
        return "failing"
    if "warning" in severities:
        return "degraded"
    return "healthy"


class Ops(Agent[OpsInput, HealthReport]):
    name: ClassVar[str] = "ops"
    output = HealthReport
    prompt: ClassVar[str] = """
You are Ops, HiveMind's on-call engineer for one running deployment (EC2 instances behind
an Application Load Balancer, optionally RDS). You are given, for a recent window, the
app's log errors grouped by pattern (kind, count, a sample line, first and last seen)
and the metrics that left their usual range (value, the median it usually has, and the
robust z-score: how many spreads away from the median; |z| >= 3 is unusual).

Judge the health: failing when users are not being served or the app is crashing
(fatal errors, out of memory, unhealthy targets, a burst of 5xx); degraded when errors
or unusual load show but the app serves; healthy otherwise. Then rank the findings,
most important first: what hurts users now before what might later, a recent burst
before an old trickle, a cause before its symptoms (a database error before the 5xx it
causes). For each, name it exactly as given (a log pattern, or "<metric> on
<resource>"), say what it shows with its numbers, and what to look at next, e.g.
`hivemind status ID --show-logs` for the app's log, or the dashboard's graph. Leave out
what is noise.
"""

    def describe(self, inputs: OpsInput) -> str:
        lines = [
            f"Deployment {inputs.deployment_id}, the last {inputs.window_minutes} minutes"
            + (f"; dashboard {inputs.dashboard}" if inputs.dashboard else "")
        ]
        lines.append(f"Log errors by pattern ({len(inputs.log_errors)}):")
        for g in inputs.log_errors:
            seen = ""
            if g.first_seen is not None and g.last_seen is not None:
                seen = f", first {g.first_seen.isoformat()}, last {g.last_seen.isoformat()}"
            lines.append(
                f"- pattern: {g.pattern}\n  kind {g.kind}, {g.count} times{seen}"
                + (f", from {g.source}" if g.source else "")
                + (f", at {g.location}" if g.location else "")
                + f"\n  sample: {g.sample}"
            )
        lines.append(f"Metric anomalies ({len(inputs.anomalies)}):")
        for a in inputs.anomalies:
            usual = f", usually {a.baseline:g}" if a.baseline is not None else ""
            lines.append(
                f"- {a.subject}: {a.value:g}{a.unit and ' ' + a.unit}{usual}, "
                f"z {a.z_score:+.1f}, at {a.at.isoformat()}"
            )
        return "\n".join(lines)

    def check(self, inputs: OpsInput, proposal: HealthReport) -> HealthReport:
        """Everything named must be in the inputs, once; the health must agree with the
        data (nothing found: healthy; a critical finding: failing; a warning: not
        healthy); critical findings the answer left out are added."""
        patterns = {g.pattern for g in inputs.log_errors}
        subjects = {a.subject for a in inputs.anomalies}
        seen: set[str] = set()
        for finding in proposal.findings:
            known = patterns if finding.kind == "log" else subjects
            if finding.subject not in known:
                raise Rejected(f"{finding.subject!r} is not among the {finding.kind} findings")
            if finding.subject in seen:
                raise Rejected(f"{finding.subject!r} is listed twice")
            seen.add(finding.subject)
        rules = health_of(inputs)
        allowed: dict[Health, tuple[Health, ...]] = {
            "failing": ("failing",),
            "degraded": ("degraded", "failing"),
            "healthy": ("healthy", "degraded")
            if inputs.log_errors or inputs.anomalies
            else ("healthy",),
        }
        if proposal.health not in allowed[rules]:
            raise Rejected(f"the data says {rules}, not {proposal.health}")
        missing = [
            f
            for f in self.fallback(inputs).findings
            if f.severity == "critical" and f.subject not in seen
        ]
        if not missing:
            return proposal
        return proposal.model_copy(update={"findings": proposal.findings + missing})

    def fallback(self, inputs: OpsInput) -> HealthReport:
        scored: list[tuple[int, float, OpsFinding]] = []
        latest = _latest(inputs)
        for group in inputs.log_errors:
            finding = _log_finding(group, inputs)
            scored.append((_SEVERITY_ORDER[finding.severity], -_log_score(group, latest), finding))
        for anomaly in inputs.anomalies:
            finding = _metric_finding(anomaly, inputs)
            scored.append((_SEVERITY_ORDER[finding.severity], -_metric_score(anomaly), finding))
        scored.sort(key=lambda item: (item[0], item[1], item[2].subject))
        findings = [f for _o, _s, f in scored]
        health = health_of(inputs)
        return HealthReport(
            health=health, summary=_summary(inputs, health, findings), findings=findings
        )


def _latest(inputs: OpsInput) -> datetime | None:
    times = [g.last_seen for g in inputs.log_errors if g.last_seen is not None]
    times += [a.at for a in inputs.anomalies]
    return max(times) if times else None


def _log_score(group: LogErrorGroup, latest: datetime | None) -> float:
    weight = _log_weight(group)
    seen = group.last_seen
    recent = latest is not None and seen is not None and latest - seen <= RECENT
    return weight * (1 + math.log10(max(group.count, 1))) * (1.5 if recent else 1.0)


def _metric_score(anomaly: MetricAnomaly) -> float:
    weight = (
        3 if anomaly.metric in _HEALTH_METRICS else 2 if anomaly.metric in _RESOURCE_METRICS else 1
    )
    return weight * abs(anomaly.z_score) / ANOMALY_Z


def _log_finding(group: LogErrorGroup, inputs: OpsInput) -> OpsFinding:
    over = last = ""
    if group.first_seen is not None and group.last_seen is not None:
        span = group.last_seen - group.first_seen
        over = f" over {_minutes(span)}" if span.total_seconds() >= 60 else ""
    if group.last_seen is not None:
        last = f", last at {group.last_seen:%H:%M:%S}"
    where = f" in {group.source}" if group.source else ""
    at = f" (at {group.location})" if group.location else ""
    kind = group.kind.replace("_", " ")
    return OpsFinding(
        kind="log",
        subject=group.pattern,
        severity=severity_of_log(group),
        what=f"The app logged the {kind} '{group.pattern}'{at} {group.count} time(s){over}"
        f"{where}{last}; e.g. {group.sample}",
        look_next=f"`hivemind status {inputs.deployment_id} --show-logs` shows the latest "
        "lines around it",
    )


def _metric_finding(anomaly: MetricAnomaly, inputs: OpsInput) -> OpsFinding:
    unit = f" {anomaly.unit}" if anomaly.unit else ""
    usual = f" (usually {anomaly.baseline:g}{unit})" if anomaly.baseline is not None else ""
    direction = "up" if anomaly.z_score > 0 else "down"
    graph = f"the {anomaly.metric} graph on the dashboard" + (
        f" {inputs.dashboard}" if inputs.dashboard else ""
    )
    status = f"`hivemind status {inputs.deployment_id}`"
    if anomaly.metric in ("UnHealthyHostCount", "HealthyHostCount"):
        look = f"{status} shows each target's health and reason; then --show-logs for the app's log"
    elif anomaly.metric.startswith("HTTPCode_"):
        look = f"`hivemind status {inputs.deployment_id} --show-logs` for the errors behind them"
    elif anomaly.resource.startswith("i-"):
        look = f"{graph}, and {status} for instance {anomaly.resource}"
    else:
        look = graph
    return OpsFinding(
        kind="metric",
        subject=anomaly.subject,
        severity=severity_of_metric(anomaly),
        what=f"{anomaly.subject} is {anomaly.value:g}{unit}{usual}, {direction} "
        f"{abs(anomaly.z_score):.1f} spreads from its median at {anomaly.at:%H:%M:%S}",
        look_next=look,
    )


def _minutes(span: timedelta) -> str:
    minutes = round(span.total_seconds() / 60)
    return f"{minutes} minute(s)" if minutes < 120 else f"{minutes // 60} hours"


def _summary(inputs: OpsInput, health: Health, findings: list[OpsFinding]) -> str:
    window = f"the last {inputs.window_minutes} minutes"
    if not findings:
        return (
            f"{inputs.deployment_id} is healthy: no log errors and no unusual metrics in {window}."
        )
    counts = {s: sum(1 for f in findings if f.severity == s) for s in ("critical", "warning")}
    said = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "only minor movements"
    text = f"{inputs.deployment_id} is {health} in {window} ({said}). First: {findings[0].what}."
    if len(findings) > 1 and findings[1].severity != "info":
        text += f" Then: {findings[1].what}."
    return text
