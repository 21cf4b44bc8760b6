"""The Ops agent's reading of what `status --show-logs/--show-metrics` found: a health
verdict, and the findings ranked with what to look at next."""

from __future__ import annotations

from typing import Any

from hivemind.ops.overview import MetricsView, OpsReport


def ops_input(report: OpsReport, deployment_id: str, dashboard: str | None = None) -> Any:
    """The Ops agent's input from the gathered views (log error groups, anomalies)."""
    from hivemind_agents.ops import LogErrorGroup, MetricAnomaly, OpsInput

    errors = []
    if report.logs is not None:
        for group in report.logs.errors:
            errors.append(
                LogErrorGroup(
                    pattern=group.signature,
                    kind=group.kind,
                    count=group.count,
                    sample="\n".join(group.sample),
                    first_seen=group.first_seen,
                    last_seen=group.last_seen,
                    source=", ".join(group.streams),
                    location=group.location,
                )
            )
    found = []
    if report.metrics is not None:
        # The view found the anomalies already; each names its series by label.
        series_of = {series.label: series for series in report.metrics.series}
        for anomaly in report.metrics.anomalies:
            query = series_of[anomaly.series].query
            sign = 1 if anomaly.direction == "high" else -1
            found.append(
                MetricAnomaly(
                    metric=query.metric,
                    resource=query.resource,
                    value=anomaly.value,
                    z_score=sign * abs(anomaly.score),
                    at=anomaly.timestamp,
                    unit=str(query.unit),
                    baseline=anomaly.median,
                )
            )
        # A capacity running out with no anomaly (steadily full) is news all the same.
        flagged = {(a.metric, a.resource) for a in found}
        for full in report.metrics.saturated:
            query = series_of[full.series].query
            if (query.metric, query.resource) not in flagged:
                found.append(
                    MetricAnomaly(
                        metric=query.metric,
                        resource=query.resource,
                        value=full.value,
                        z_score=0.0,
                        at=full.timestamp,
                        unit=str(query.unit),
                    )
                )
    minutes = max(1, round((report.end - report.start).total_seconds() / 60))
    return OpsInput(
        deployment_id=deployment_id,
        log_errors=tuple(errors),
        anomalies=tuple(found),
        window_minutes=minutes,
        dashboard=dashboard,
    )


def health_report(report: OpsReport, deployment_id: str, advisor: Any = None) -> Any:
    """Ask the Ops agent (a model, or HiveMind's rules) how the deployment is doing."""
    from hivemind_agents.base import Advisor
    from hivemind_agents.ops import Ops

    advisor = advisor or Advisor()
    link = report.dashboard.link.url if report.dashboard and report.dashboard.link else None
    return advisor.ask(Ops(), ops_input(report, deployment_id, link))


def medic_evidence(view: MetricsView) -> list[str]:
    """The metrics' findings as lines Medic reads and may quote: each memory or disk
    running out, then each anomaly."""
    lines = [
        f"{full.series} reached {full.value:.1f}% at {full.timestamp:%H:%M:%S} UTC "
        f"({full.limit:.0f}% and over is running out)"
        for full in view.saturated
    ]
    lines += [
        f"{a.series} was {a.value:,.4g} at {a.timestamp:%H:%M:%S} UTC, {a.direction} against "
        f"its median {a.median:,.4g} (robust z {a.score:+.1f})"
        for a in view.anomalies
    ]
    return lines
