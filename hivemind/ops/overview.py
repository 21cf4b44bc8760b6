"""The ops views of one deployment, gathered for `hivemind status --show-...`: recent
logs with their errors, metrics with their anomalies, costs, traces, the dashboard."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from hivemind.deployer.layout import Layout
from hivemind.errors import BadInputError
from hivemind.ops.costs import COST_EXPLORER_REGION, CostReport, deployment_costs
from hivemind.ops.dashboard import DashboardLink, dashboard_link
from hivemind.ops.detect import (
    Anomaly,
    ErrorGroup,
    Saturation,
    anomalies,
    saturation,
    scan_log_errors,
)
from hivemind.ops.logs import fetch_log_events
from hivemind.ops.metrics import MetricSeries, fetch_metrics, metric_queries
from hivemind.ops.traces import TracesReport, recent_traces, tracing_off
from hivemind.ops.watched import Watched, watched
from hivemind.ops.window import DEFAULT_SINCE, Window
from hivemind.records import DeploymentState
from hivemind.spec import DeploymentSpec

DEFAULT_LINES: Final = 40
ClientFactory = Callable[[str, str], Any]  # (service, region) -> a botocore client


@dataclass(frozen=True)
class OpsRequest:
    """Which views to gather, over which window, and how many log lines to show."""

    logs: bool = False
    metrics: bool = False
    costs: bool = False
    traces: bool = False
    dashboard: bool = False
    since: str = DEFAULT_SINCE
    lines: int = DEFAULT_LINES

    def any(self) -> bool:
        return self.logs or self.metrics or self.costs or self.traces or self.dashboard


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class LogLine(_Frozen):
    timestamp: datetime | None
    stream: str
    message: str
    error: bool  # part of a detected error


class LogsView(_Frozen):
    """The tail of the app's log in the window, and every error found in the window."""

    log_group: str | None
    language: str
    events_read: int
    lines: tuple[LogLine, ...]
    errors: tuple[ErrorGroup, ...]
    narrowed_to: datetime | None = None  # the window held too many events: read from here
    note: str = ""


class MetricsView(_Frozen):
    series: tuple[MetricSeries, ...]
    anomalies: tuple[Anomaly, ...]
    saturated: tuple[Saturation, ...] = ()  # memory or disk running out
    note: str = ""


class DashboardView(_Frozen):
    link: DashboardLink | None
    note: str = ""


class OpsReport(_Frozen):
    """The views asked for (None: not asked for) over one window."""

    start: datetime
    end: datetime
    since: str
    logs: LogsView | None = None
    metrics: MetricsView | None = None
    costs: CostReport | None = None
    traces: TracesReport | None = None
    dashboard: DashboardView | None = None


def collect_ops(
    state: DeploymentState,
    spec: DeploymentSpec,
    request: OpsRequest,
    window: Window,
    client: ClientFactory,
) -> OpsReport:
    """Gather the views `request` asks for, with AWS clients from `client`."""
    found = watched(state)
    report = OpsReport(start=window.start, end=window.end, since=window.since)
    changes: dict[str, object] = {}
    if request.logs:
        changes["logs"] = _logs(found, spec, request, window, client)
    if request.metrics:
        changes["metrics"] = _metrics(found, window, client)
    if request.costs:
        ce = client("ce", COST_EXPLORER_REGION)
        changes["costs"] = deployment_costs(ce, state, today=window.end.date())
    if request.traces:
        if spec.xray:
            xray = client("xray", state.region)
            changes["traces"] = recent_traces(xray, spec.app.name, found.xray_group, window)
        else:
            changes["traces"] = tracing_off(spec.app.name)
    if request.dashboard:
        try:
            changes["dashboard"] = DashboardView(link=dashboard_link(state))
        except BadInputError as missing:
            changes["dashboard"] = DashboardView(link=None, note=missing.what)
    return report.model_copy(update=changes)


def _logs(
    found: Watched,
    spec: DeploymentSpec,
    request: OpsRequest,
    window: Window,
    client: ClientFactory,
) -> LogsView:
    language, log_group = spec.app.language, found.log_group
    if log_group is None:
        return LogsView(
            log_group=None,
            language=language,
            events_read=0,
            lines=(),
            errors=(),
            note="the stack has not reported its log group (the AppLogGroup output) yet",
        )
    fetched = fetch_log_events(client("logs", found.region), log_group, window)
    scan = scan_log_errors(fetched.events, language)
    first = max(0, len(fetched.events) - request.lines)
    lines = tuple(
        LogLine(
            timestamp=event.timestamp,
            stream=event.stream,
            message=event.message,
            error=index in scan.error_events,
        )
        for index, event in enumerate(fetched.events)
        if index >= first
    )
    note = ""
    if not fetched.group_exists:
        note = (
            f"the log group {log_group} does not exist: the stack creates it, and deletes it "
            "when the deployment is destroyed"
        )
    elif not fetched.events:
        note = (
            f"no log events in the last {window.since}: the CloudWatch agent on each instance "
            f"ships {Layout(spec.app.name).log_files} within seconds of the app writing it"
        )
    return LogsView(
        log_group=log_group,
        language=language,
        events_read=len(fetched.events),
        lines=lines,
        errors=scan.groups,
        narrowed_to=fetched.start if fetched.narrowed else None,
        note=note,
    )


def _metrics(found: Watched, window: Window, client: ClientFactory) -> MetricsView:
    queries = metric_queries(found)
    if not queries:
        return MetricsView(
            series=(),
            anomalies=(),
            note="nothing to measure: the stack reported no instances, load balancer or database",
        )
    series = fetch_metrics(client("cloudwatch", found.region), queries, window)
    return MetricsView(
        series=tuple(series),
        anomalies=tuple(a for s in series for a in anomalies(s)),
        saturated=tuple(full for s in series if (full := saturation(s)) is not None),
    )
