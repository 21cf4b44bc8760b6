"""The ops views as text for a terminal. Errors and anomalies carry ANSI colours, which
the CLI's output drops when it is not a terminal; a `!` marks them in any case."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from hivemind.ops.costs import CostReport
from hivemind.ops.detect import THRESHOLD
from hivemind.ops.metrics import MetricSeries
from hivemind.ops.overview import DashboardView, LogsView, MetricsView, OpsReport
from hivemind.ops.sparkline import bucketed, sparkline
from hivemind.ops.traces import TracesReport
from hivemind.ops.window import clock

RED: Final = "\x1b[31m"
YELLOW: Final = "\x1b[33m"
BOLD: Final = "\x1b[1m"
RESET: Final = "\x1b[0m"
MAX_TRACES_SHOWN: Final = 20
MAX_ERROR_GROUPS_SHOWN: Final = 10
_LABEL_WIDTH: Final = 14


def _paint(color: str, text: str) -> str:
    return f"{color}{text}{RESET}"


def render_ops(report: OpsReport) -> list[str]:
    """Every view of `report`, as lines, each view after a blank line."""
    with_date = (report.end - report.start).total_seconds() > 86400
    lines: list[str] = []
    if report.logs is not None:
        lines += ["", *render_logs(report.logs, report.since, with_date)]
    if report.metrics is not None:
        lines += ["", *render_metrics(report.metrics, report.since, with_date)]
    if report.traces is not None:
        lines += ["", *render_traces(report.traces, report.since, with_date)]
    if report.costs is not None:
        lines += ["", *render_costs(report.costs)]
    if report.dashboard is not None:
        lines += ["", *render_dashboard(report.dashboard)]
    return lines


def _moment(moment: datetime | None, with_date: bool) -> str:
    return clock(moment, with_date=with_date) if moment is not None else "-"


# --- logs ---------------------------------------------------------------------------------


def render_logs(view: LogsView, since: str, with_date: bool) -> list[str]:
    title = f"{BOLD}Logs{RESET} ({view.log_group or 'no log group'}), last {since}, UTC"
    if view.narrowed_to is not None:
        title += (
            f"; more than {view.events_read:,} events, so only those since "
            f"{_moment(view.narrowed_to, with_date)}"
        )
    lines = [title]
    if view.note:
        return [*lines, f"  {view.note}"]
    shown = len(view.lines)
    lines[0] += f": {view.events_read:,} events" + (
        f", the last {shown}:" if shown < view.events_read else ":"
    )
    for line in view.lines:
        prefix = f"{_moment(line.timestamp, with_date)}  {line.stream}  "
        for n, text in enumerate(line.message.split("\n")):
            head = prefix if n == 0 else " " * len(prefix)
            if line.error:
                lines.append(_paint(RED, f"! {head}{text}"))
            else:
                lines.append(f"  {head}{text}")
    lines += ["", *render_errors(view)]
    return lines


def render_errors(view: LogsView) -> list[str]:
    patterns = f"{view.language} and generic patterns"
    if not view.errors:
        return [f"No errors in these {view.events_read:,} events ({patterns})."]
    total = sum(g.count for g in view.errors)
    kinds = len(view.errors)
    lines = [
        _paint(
            RED,
            f"{BOLD}Errors{RESET}{RED}: {total} in {kinds} group{'s' * (kinds != 1)} ({patterns})",
        )
    ]
    for group in view.errors[:MAX_ERROR_GROUPS_SHOWN]:
        lines.append(_paint(RED, f"! {group.count:>5}x  {group.signature}"))
        where = [f"at {group.location}"] if group.location else []
        if group.root_cause:
            where.append(f"caused by {group.root_cause}")
        if group.streams:
            where.append("on " + ", ".join(group.streams))
        if group.last_seen is not None:
            where.append(f"last {clock(group.last_seen, with_date=True)}")
        if where:
            lines.append("         " + " · ".join(where))
    if kinds > MAX_ERROR_GROUPS_SHOWN:
        lines.append(f"  ... and {kinds - MAX_ERROR_GROUPS_SHOWN} more groups (--json lists all)")
    return lines


# --- metrics ------------------------------------------------------------------------------


def render_metrics(view: MetricsView, since: str, with_date: bool) -> list[str]:
    title = f"{BOLD}Metrics{RESET}, last {since}, UTC"
    if view.note:
        return [title, f"  {view.note}"]
    periods = sorted({s.period for s in view.series})
    title += ", one bar per " + " or ".join(_duration(p) for p in periods)
    lines = [title + ":"]
    resource = None
    for series in view.series:
        query = series.query
        if query.resource != resource:
            resource = query.resource
            lines.append(f"  {_resource_title(series)}")
        lines.append(f"    {query.label:<{_LABEL_WIDTH}} {_series_line(series)}")
    for full in view.saturated:
        lines.append(
            _paint(
                RED,
                f"! {full.series} reached {full.value:.1f}% at "
                f"{clock(full.timestamp, with_date=with_date)}: running out "
                f"({full.limit:.0f}% and over)",
            )
        )
    if view.anomalies:
        lines += ["", _paint(YELLOW, f"Anomalies (robust z-score beyond ±{THRESHOLD}):")]
        for anomaly in view.anomalies:
            lines.append(
                _paint(
                    YELLOW,
                    f"! {anomaly.series}: {anomaly.value:,.4g} at "
                    f"{clock(anomaly.timestamp, with_date=with_date)} ({anomaly.direction}; "
                    f"median {anomaly.median:,.4g}, z {anomaly.score:+.1f})",
                )
            )
    else:
        lines.append("  No anomalies (robust z-score against each series' median).")
    return lines


def _resource_title(series: MetricSeries) -> str:
    query = series.query
    if query.resource_kind == "instance":
        return f"instance {query.resource}"
    if query.resource_kind == "load_balancer":
        return f"load balancer {query.resource}"
    return f"database {query.resource}"


def _series_line(series: MetricSeries) -> str:
    if not series.values:
        return series.query.empty_note
    slots = bucketed(
        series.timestamps,
        series.values,
        start=series.start,
        period=series.period,
        count=series.slots,
    )
    unit = series.query.unit
    # Bars start at zero, so their height reads as an amount; percentages end at 100.
    bars = sparkline(slots, low=0.0, high=100.0 if unit == "percent" else None)
    latest, smallest, largest = series.values[-1], min(series.values), max(series.values)
    if unit == "count" and series.query.statistic == "Sum":
        summary = f"total {sum(series.values):,.0f}  max {largest:,.0f}/{_duration(series.period)}"
    else:
        summary = (
            f"now {_value(latest, series)}  min {_value(smallest, series)}  "
            f"max {_value(largest, series)}"
        )
    return f"{bars}  {summary}"


def _value(value: float, series: MetricSeries) -> str:
    unit = series.query.unit
    if unit == "percent":
        return f"{value:.1f}%"
    if unit == "seconds":
        return f"{value * 1000:,.0f} ms" if value < 1 else f"{value:,.2f} s"
    if unit == "bytes":
        if series.query.statistic == "Sum":  # bytes per period: show a rate
            return f"{_bytes(value / series.period)}/s"
        return _bytes(value)
    return f"{value:,.4g}"


def _bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:,.1f} {unit}" if unit != "B" else f"{value:,.0f} B"
        value /= 1024
    return f"{value:,.1f} TiB"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# --- traces -------------------------------------------------------------------------------


def render_traces(report: TracesReport, since: str, with_date: bool) -> list[str]:
    title = f"{BOLD}Traces{RESET}"
    if not report.enabled:
        return [title, f"  {report.note}"]
    title += f" (X-Ray group {report.group or '-'}, service {report.service}), last {since}, UTC"
    if not report.requests:
        return [title, f"  {report.note}"]
    count = len(report.requests)
    p50, p90 = report.percentile(0.5), report.percentile(0.9)
    title += (
        f": {'the latest ' if report.limited else ''}{_many(count, 'request')}, "
        f"{_many(report.faults, 'fault')} (5xx), {_many(report.errors, 'error')} (4xx); "
        f"p50 {_seconds(p50)}, p90 {_seconds(p90)}"
    )
    lines = [title]
    for request in report.requests[:MAX_TRACES_SHOWN]:
        text = (
            f"{_moment(request.start, with_date)}  {request.method or '-':<6} "
            f"{_path(request.url):<30} {request.status or '-'!s:>3}  "
            f"{_seconds(request.duration):>8}"
        )
        failed = request.fault or request.error or request.throttle
        if failed:
            kind = "fault" if request.fault else "throttle" if request.throttle else "error"
            text += f"  {kind}" + (f": {request.cause}" if request.cause else "")
            lines.append(_paint(RED, f"! {text}"))
        else:
            lines.append(f"  {text}")
    if count > MAX_TRACES_SHOWN:
        lines.append(f"  ... and {count - MAX_TRACES_SHOWN} more (--json lists all)")
    return lines


def _many(count: int, thing: str) -> str:
    return f"{count} {thing}{'s' * (count != 1)}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:,.0f} ms" if value < 1 else f"{value:,.2f} s"


def _path(url: str | None) -> str:
    if not url:
        return "-"
    _, _, rest = url.partition("://")
    path = "/" + rest.partition("/")[2] if rest else url
    return path


# --- costs --------------------------------------------------------------------------------


def render_costs(report: CostReport) -> list[str]:
    if report.source == "estimate":
        lines = [
            f"{BOLD}Costs{RESET}: {report.note}.",
            f"  HiveMind's estimate instead: ${report.estimate_monthly_usd:,.2f}/month",
        ]
        lines += [f"    ${usd:>9,.2f}  {kind}" for kind, usd in report.estimate_by_type.items()]
        return lines
    total = report.total_usd or 0.0
    last = report.days[-1].day if report.days else report.start
    lines = [
        f"{BOLD}Costs{RESET} (Cost Explorer, tag {report.tag}), "
        f"{report.start.isoformat()} to {last.isoformat()}:",
        f"  ${total:,.2f} in all · daily {sparkline([d.usd for d in report.days], low=0.0)}",
    ]
    if report.by_service:
        lines.append(
            "  by service: "
            + " · ".join(f"{service} ${usd:,.2f}" for service, usd in report.by_service.items())
        )
    rate = (
        f"about ${report.run_rate_monthly_usd:,.2f}/month at the complete days' rate; "
        if report.run_rate_monthly_usd is not None
        else ""
    )
    lines.append(f"  {rate}HiveMind's estimate ${report.estimate_monthly_usd:,.2f}/month")
    if any(d.estimated for d in report.days):
        lines.append("  (the latest days are Cost Explorer's own estimates, not final)")
    if report.note:
        lines.append(f"  {report.note}")
    return lines


# --- dashboard ----------------------------------------------------------------------------


def render_dashboard(view: DashboardView) -> list[str]:
    if view.link is None:
        return [f"{BOLD}Dashboard{RESET}: {view.note}"]
    return [f"{BOLD}Dashboard{RESET} {view.link.name}: {view.link.url}"]
