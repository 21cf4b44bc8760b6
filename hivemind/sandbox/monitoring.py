"""The sandbox's CloudWatch and CloudWatch Logs resource types: metric alarms (single
metric or metric math), dashboards and log groups."""

from __future__ import annotations

from typing import Any

from moto.cloudwatch.models import (
    Dimension,
    Metric,
    MetricDataQuery,
    MetricStat,
    cloudwatch_backends,
)
from moto.logs.models import logs_backends

from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceType,
    implements,
)


def _cloudwatch(ctx: Context) -> MotoBackend:
    return cloudwatch_backends[ctx.account_id][ctx.region]


def _metric_queries(metrics: list[dict[str, Any]] | None) -> list[MetricDataQuery] | None:
    if not metrics:
        return None
    queries = []
    for metric in metrics:
        stat = metric.get("MetricStat")
        metric_stat = None
        if stat:
            inner = stat["Metric"]
            metric_stat = MetricStat(
                metric=Metric(
                    metric_name=inner["MetricName"],
                    namespace=inner.get("Namespace"),
                    dimensions=[
                        Dimension(name=d["Name"], value=d["Value"])
                        for d in inner.get("Dimensions", [])
                    ],
                ),
                period=stat.get("Period"),
                stat=stat.get("Stat"),
                unit=stat.get("Unit"),
            )
        queries.append(
            MetricDataQuery(
                query_id=metric["Id"],
                label=metric.get("Label"),  # type: ignore[arg-type]  # moto passes None too
                period=metric.get("Period"),  # type: ignore[arg-type]
                return_data=metric.get("ReturnData", True),
                expression=metric.get("Expression"),
                metric_stat=metric_stat,
            )
        )
    return queries


@implements
class Alarm(ResourceType):
    type_name = "AWS::CloudWatch::Alarm"
    attributes = frozenset({"Arn"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        cloudwatch = _cloudwatch(ctx)
        name = properties.get("AlarmName") or ctx.generated_name(255)
        alarm = cloudwatch.put_metric_alarm(
            name=name,
            namespace=properties.get("Namespace"),
            metric_name=properties.get("MetricName"),
            metric_data_queries=_metric_queries(properties.get("Metrics")),
            comparison_operator=properties["ComparisonOperator"],
            evaluation_periods=int(properties["EvaluationPeriods"]),
            datapoints_to_alarm=properties.get("DatapointsToAlarm"),
            period=properties.get("Period"),
            threshold=float(properties["Threshold"]) if "Threshold" in properties else None,
            statistic=properties.get("Statistic"),
            extended_statistic=properties.get("ExtendedStatistic"),
            description=properties.get("AlarmDescription"),
            dimensions=list(properties.get("Dimensions") or []),
            alarm_actions=list(properties.get("AlarmActions") or []),
            ok_actions=list(properties.get("OKActions") or []),
            insufficient_data_actions=list(properties.get("InsufficientDataActions") or []),
            unit=properties.get("Unit"),
            actions_enabled=properties.get("ActionsEnabled", True),
            treat_missing_data=properties.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=properties.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=properties.get("ThresholdMetricId"),
            tags=[
                {"Key": k, "Value": v}
                for k, v in ctx.tags(properties).items()
                if not k.startswith("aws:")
            ],
        )
        return Provisioned(
            name,
            delete=lambda: cloudwatch.delete_alarms([name]),
            attributes={"Arn": alarm.alarm_arn},
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if properties.get("AlarmName", old.physical_resource_id) != old.physical_resource_id:
            return super().update(old, properties, ctx)
        # PutMetricAlarm on an existing name replaces its definition, as on AWS.
        self.create({**properties, "AlarmName": old.physical_resource_id}, ctx)
        return old


@implements
class Dashboard(ResourceType):
    type_name = "AWS::CloudWatch::Dashboard"
    attributes = frozenset()

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        cloudwatch = _cloudwatch(ctx)
        name = properties.get("DashboardName") or ctx.generated_name(255)
        cloudwatch.put_dashboard(name, properties["DashboardBody"])

        def delete() -> None:
            error = cloudwatch.delete_dashboards([name])
            if error:
                raise LookupError(error)

        return Provisioned(name, delete=delete)

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if properties.get("DashboardName", old.physical_resource_id) != old.physical_resource_id:
            return super().update(old, properties, ctx)
        self.create({**properties, "DashboardName": old.physical_resource_id}, ctx)
        return old


@implements
class LogGroup(ResourceType):
    type_name = "AWS::Logs::LogGroup"
    attributes = frozenset({"Arn"})

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        logs: MotoBackend = logs_backends[ctx.account_id][ctx.region]
        name = properties.get("LogGroupName") or ctx.generated_name(512)
        tags = {k: v for k, v in ctx.tags(properties).items() if not k.startswith("aws:")}
        extra = {"kmsKeyId": properties["KmsKeyId"]} if properties.get("KmsKeyId") else {}
        group = logs.create_log_group(name, tags, **extra)
        if properties.get("RetentionInDays") is not None:
            logs.put_retention_policy(name, int(properties["RetentionInDays"]))
        # GetAtt Arn of a log group ends in ":*" on AWS (it covers the group's streams).
        return Provisioned(
            name, delete=lambda: logs.delete_log_group(name), attributes={"Arn": f"{group.arn}:*"}
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        if properties.get("LogGroupName", old.physical_resource_id) != old.physical_resource_id:
            return self.create(properties, ctx)
        logs: MotoBackend = logs_backends[ctx.account_id][ctx.region]
        if properties.get("RetentionInDays") is not None:
            logs.put_retention_policy(old.physical_resource_id, int(properties["RetentionInDays"]))
        else:
            logs.delete_retention_policy(old.physical_resource_id)
        return old
