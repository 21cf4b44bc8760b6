"""A deployment's key metrics over a window, from CloudWatch GetMetricData.

The same metrics the deployment's dashboard shows (see
`hivemind_constructs.dashboard`): per instance CPU and network (AWS/EC2) and memory and
disk (CWAgent, the CloudWatch agent's `mem_used_percent` and `disk_used_percent` with
the InstanceId dimension); for the load balancer requests, target 5xx and response time
(AWS/ApplicationELB); for each database CPU, connections and free storage (AWS/RDS).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from hivemind.ops.api import explained
from hivemind.ops.watched import Watched
from hivemind.ops.window import Window

Unit = Literal["percent", "count", "bytes", "seconds"]
ResourceKind = Literal["instance", "load_balancer", "database"]
# EC2's basic monitoring (what HiveMind's instances have) sends a point every 5 minutes.
EC2_PERIOD: Final = 300
_QUERIES_PER_CALL: Final = 500

NO_AGENT_POINTS: Final = "no datapoints yet: the CloudWatch agent ships every minute"
NO_EC2_POINTS: Final = "no datapoints yet: EC2 sends its metrics every 5 minutes"
NO_RDS_POINTS: Final = "no datapoints yet: RDS sends its metrics every minute"
NO_REQUESTS: Final = "no requests in this window"


# (metric, statistic, label, unit, what no datapoints mean)
_LOAD_BALANCER_METRICS: Final[tuple[tuple[str, str, str, Unit, str], ...]] = (
    ("RequestCount", "Sum", "requests", "count", NO_REQUESTS),
    ("HTTPCode_Target_5XX_Count", "Sum", "5xx", "count", "none in this window"),
    ("TargetResponseTime", "Average", "response time", "seconds", NO_REQUESTS),
)
# (metric, statistic, label, unit, the least change worth calling an anomaly)
_DATABASE_METRICS: Final[tuple[tuple[str, str, str, Unit, float], ...]] = (
    ("CPUUtilization", "Average", "CPU %", "percent", 5.0),
    ("DatabaseConnections", "Average", "connections", "count", 2.0),
    ("FreeStorageSpace", "Minimum", "free storage", "bytes", 256.0 * 1024**2),
)


class MetricQuery(BaseModel):
    """One metric of one resource, as CloudWatch names it, and how to show it."""

    model_config = ConfigDict(frozen=True)

    resource: str  # the dimension's value: an instance id, app/<name>/<id>, a DB id
    resource_kind: ResourceKind
    namespace: str
    metric: str
    dimension: str
    statistic: str
    label: str  # what a person calls it, e.g. "CPU %"
    unit: Unit
    min_period: int = 60
    empty_note: str  # what no datapoints at all means for this metric
    # An anomaly must differ from the median by at least this much to be news.
    min_delta: float = 0.0


class MetricSeries(BaseModel):
    """The points of one metric over a window: oldest first, at `period` seconds."""

    model_config = ConfigDict(frozen=True)

    query: MetricQuery
    period: int
    start: datetime  # the window, widened to whole periods
    end: datetime
    timestamps: tuple[datetime, ...]
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        return f"{self.query.label} {self.query.resource}"

    @property
    def min_delta(self) -> float:
        return self.query.min_delta

    @property
    def slots(self) -> int:
        return int((self.end - self.start).total_seconds() // self.period)


def metric_queries(watched: Watched) -> list[MetricQuery]:
    """Every metric the status view shows for this deployment."""
    queries: list[MetricQuery] = []
    for instance in watched.instances:

        def per_instance(
            namespace: str,
            metric: str,
            statistic: str,
            label: str,
            unit: Unit,
            min_delta: float,
            instance_id: str = instance.instance_id,
        ) -> MetricQuery:
            ec2 = namespace == "AWS/EC2"
            return MetricQuery(
                resource=instance_id,
                resource_kind="instance",
                namespace=namespace,
                metric=metric,
                dimension="InstanceId",
                statistic=statistic,
                label=label,
                unit=unit,
                min_period=EC2_PERIOD if ec2 else 60,
                empty_note=NO_EC2_POINTS if ec2 else NO_AGENT_POINTS,
                min_delta=min_delta,
            )

        queries += [
            per_instance("AWS/EC2", "CPUUtilization", "Average", "CPU %", "percent", 5.0),
            per_instance("CWAgent", "mem_used_percent", "Average", "memory %", "percent", 5.0),
            per_instance("CWAgent", "disk_used_percent", "Average", "disk %", "percent", 2.0),
            per_instance("AWS/EC2", "NetworkIn", "Sum", "network in", "bytes", 0.0),
            per_instance("AWS/EC2", "NetworkOut", "Sum", "network out", "bytes", 0.0),
        ]
    if watched.load_balancer is not None:
        for metric, statistic, label, unit, note in _LOAD_BALANCER_METRICS:
            queries.append(
                MetricQuery(
                    resource=watched.load_balancer,
                    resource_kind="load_balancer",
                    namespace="AWS/ApplicationELB",
                    metric=metric,
                    dimension="LoadBalancer",
                    statistic=statistic,
                    label=label,
                    unit=unit,
                    empty_note=note,
                )
            )
    for database in watched.databases:
        for metric, statistic, label, unit, min_delta in _DATABASE_METRICS:
            queries.append(
                MetricQuery(
                    resource=database,
                    resource_kind="database",
                    namespace="AWS/RDS",
                    metric=metric,
                    dimension="DBInstanceIdentifier",
                    statistic=statistic,
                    label=label,
                    unit=unit,
                    empty_note=NO_RDS_POINTS,
                    min_delta=min_delta,
                )
            )
    return queries


def fetch_metrics(
    cloudwatch: Any, queries: list[MetricQuery], window: Window
) -> list[MetricSeries]:
    """One series per query over `window` (GetMetricData, in as few calls as it takes),
    in the order of `queries`. A metric without datapoints gives an empty series."""
    grids = {q.min_period: window.aligned(window.period(q.min_period)) for q in queries}
    points: dict[int, tuple[list[datetime], list[float]]] = {
        i: ([], []) for i in range(len(queries))
    }
    # One call per distinct grid (the EC2 metrics have a coarser one), pages of 500.
    for min_period, (start, end, _) in grids.items():
        indexed = [(i, q) for i, q in enumerate(queries) if q.min_period == min_period]
        period = window.period(min_period)
        for first in range(0, len(indexed), _QUERIES_PER_CALL):
            chunk = indexed[first : first + _QUERIES_PER_CALL]
            _get_metric_data(cloudwatch, chunk, period, start, end, points)
    series = []
    for i, query in enumerate(queries):
        start, end, _ = grids[query.min_period]
        ordered = sorted(zip(*points[i], strict=True))
        series.append(
            MetricSeries(
                query=query,
                period=window.period(query.min_period),
                start=start,
                end=end,
                timestamps=tuple(t for t, _ in ordered),
                values=tuple(v for _, v in ordered),
            )
        )
    return series


def _get_metric_data(
    cloudwatch: Any,
    chunk: list[tuple[int, MetricQuery]],
    period: int,
    start: datetime,
    end: datetime,
    points: dict[int, tuple[list[datetime], list[float]]],
) -> None:
    request: dict[str, Any] = {
        "MetricDataQueries": [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": q.namespace,
                        "MetricName": q.metric,
                        "Dimensions": [{"Name": q.dimension, "Value": q.resource}],
                    },
                    "Period": period,
                    "Stat": q.statistic,
                },
                "ReturnData": True,
            }
            for i, q in chunk
        ],
        "StartTime": start,
        "EndTime": end,
        "ScanBy": "TimestampAscending",
    }
    with explained(
        what="could not read the deployment's metrics",
        action="cloudwatch:GetMetricData",
        where=f"CloudWatch metrics {start:%H:%M} to {end:%H:%M} UTC",
    ):
        while True:
            page = cloudwatch.get_metric_data(**request)
            for result in page.get("MetricDataResults", []):
                index = int(result["Id"][1:])
                times, values = points[index]
                for moment, value in zip(result["Timestamps"], result["Values"], strict=True):
                    if value is not None:
                        times.append(moment)
                        values.append(float(value))
            token = page.get("NextToken")
            if not token:
                return
            request["NextToken"] = token
