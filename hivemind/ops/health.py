"""The Ops agent's reading of what `status --show-logs/--show-metrics` found: a health
verdict, and the findings ranked with what to look at next."""

from __future__ import annotations

from typing import Any

from hivemind.ops.overview import OpsReport


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
