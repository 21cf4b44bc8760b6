"""Monitoring: the app's log group, the alarms, and the `HiveMind-<id>` dashboard."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from hivemind.spec import DeploymentSpec

# The compiler replaces this with the cost estimate of the synthesized template.
COST_ESTIMATE_MARKER = "HIVEMIND_COST_ESTIMATE"
APP_LOG_RETENTION = logs.RetentionDays.ONE_MONTH
WIDTH = 24
_PERIOD = Duration.minutes(1)
_METRICS_PER_ALARM = 10


def dashboard_name(deployment_id: str) -> str:
    return f"HiveMind-{deployment_id}"


# The CloudWatch agent's metrics namespace on the instances (the instance role may
# publish metrics in it only).
AGENT_NAMESPACE = "CWAgent"


def app_log_group_name(deployment_id: str) -> str:
    return f"/hivemind/{deployment_id}/app"


@dataclass(frozen=True)
class MonitoredResources:
    """What the dashboard watches; absent parts leave their section out or say why."""

    instances: list[ec2.CfnInstance]
    load_balancer: elbv2.ApplicationLoadBalancer | None
    active_target_group: elbv2.ApplicationTargetGroup | None
    database: rds.DatabaseInstance | None
    replica: rds.DatabaseInstanceReadReplica | None
    xray_group_name: str | None


class Monitoring(Construct):
    """Alarms (5xx rate, unhealthy hosts, instance CPU, database CPU and free storage) and
    the dashboard with its eight sections. Attributes: `log_group`, `alarms`, `dashboard`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: DeploymentSpec,
        deployment_id: str,
        watched: MonitoredResources,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "AppLogs",
            log_group_name=app_log_group_name(deployment_id),
            retention=APP_LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.alarms = self._alarms(watched)
        self.dashboard = cw.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name(deployment_id),
            default_interval=Duration.hours(3),
        )
        sections = [
            self._overview(spec, deployment_id, watched),
            self._infrastructure(watched),
            self._load_balancer(watched),
            self._database(watched),
            self._logs(),
            self._tracing(watched),
            self._costs(),
            self._alarm_status(),
        ]
        for section in sections:
            for row in section:
                self.dashboard.add_widgets(*row)

    # --- alarms -------------------------------------------------------------------------

    def _alarms(self, watched: MonitoredResources) -> list[cw.Alarm]:
        alarms: list[cw.Alarm] = []
        if watched.load_balancer is not None and watched.active_target_group is not None:
            lb_metrics = watched.load_balancer.metrics
            errors = lb_metrics.http_code_target(
                elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=_PERIOD
            )
            requests = lb_metrics.request_count(period=_PERIOD)
            rate = cw.MathExpression(
                expression="IF(requests > 0, 100 * errors / requests, 0)",
                using_metrics={"errors": errors, "requests": requests},
                label="5xx rate (%)",
                period=_PERIOD,
            )
            alarms.append(
                rate.create_alarm(
                    self,
                    "Http5xxRate",
                    alarm_description="More than 5% of requests fail with 5xx",
                    threshold=5,
                    evaluation_periods=3,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
            unhealthy = watched.active_target_group.metrics.unhealthy_host_count(period=_PERIOD)
            alarms.append(
                unhealthy.create_alarm(
                    self,
                    "UnhealthyHosts",
                    alarm_description="A target failed its health check",
                    threshold=0,
                    evaluation_periods=2,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                )
            )
        # One alarm on the busiest instance per group of ten (metric math takes ten
        # metrics at most): as useful as one alarm each, and far smaller a template.
        for start in range(0, len(watched.instances), _METRICS_PER_ALARM):
            group = watched.instances[start : start + _METRICS_PER_ALARM]
            busiest = cw.MathExpression(
                expression="MAX(METRICS())",
                using_metrics={
                    f"cpu{n}": _instance_metric("AWS/EC2", "CPUUtilization", instance)
                    for n, instance in enumerate(group)
                },
                label="busiest instance CPU %",
                period=Duration.minutes(5),
            )
            names = ", ".join(instance.node.id for instance in group)
            alarms.append(
                busiest.create_alarm(
                    self,
                    f"InstanceCpu{start // _METRICS_PER_ALARM + 1}",
                    alarm_description=f"CPU above 80% for 10 minutes on one of: {names}",
                    threshold=80,
                    evaluation_periods=2,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                )
            )
        if watched.database is not None:
            alarms.append(
                watched.database.metric_cpu_utilization(period=Duration.minutes(5)).create_alarm(
                    self,
                    "DatabaseCpu",
                    alarm_description="Database CPU above 80% for 15 minutes",
                    threshold=80,
                    evaluation_periods=3,
                    comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                )
            )
            alarms.append(
                watched.database.metric_free_storage_space(period=Duration.minutes(5)).create_alarm(
                    self,
                    "DatabaseFreeStorage",
                    alarm_description="Database free storage below 2 GiB",
                    threshold=2 * 1024**3,
                    evaluation_periods=1,
                    comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                )
            )
        return alarms

    # --- sections -----------------------------------------------------------------------

    def _overview(
        self, spec: DeploymentSpec, deployment_id: str, watched: MonitoredResources
    ) -> list[list[cw.IWidget]]:
        url = (
            f"http://{watched.load_balancer.load_balancer_dns_name}"
            if watched.load_balancer is not None
            else "no load balancer (the app serves no port)"
        )
        text = (
            f"# {spec.app.name}\n"
            f"Deployment `{deployment_id}` · {spec.app.framework or spec.app.language} · "
            f"profile `{spec.profile}` · region `{spec.region}`\n\n"
            f"URL: {url} · health check `{spec.app.health_path}`"
        )
        row: list[cw.IWidget] = [cw.TextWidget(markdown=text, width=12, height=4)]
        if watched.load_balancer is not None and watched.active_target_group is not None:
            lb = watched.load_balancer.metrics
            row.append(
                cw.SingleValueWidget(
                    title="Application overview",
                    width=12,
                    height=4,
                    metrics=[
                        lb.request_count(period=Duration.minutes(5), label="Requests (5 min)"),
                        watched.active_target_group.metrics.healthy_host_count(
                            label="Healthy hosts"
                        ),
                        lb.http_code_target(
                            elbv2.HttpCodeTarget.TARGET_5XX_COUNT,
                            period=Duration.minutes(5),
                            label="5xx (5 min)",
                        ),
                    ],
                )
            )
        return [[_header("Application overview")], row]

    def _infrastructure(self, watched: MonitoredResources) -> list[list[cw.IWidget]]:
        def per_instance(namespace: str, metric: str) -> list[cw.IMetric]:
            return [_instance_metric(namespace, metric, i) for i in watched.instances]

        graphs: list[cw.IWidget] = [
            cw.GraphWidget(title="CPU %", width=6, left=per_instance("AWS/EC2", "CPUUtilization")),
            cw.GraphWidget(
                title="Memory used %",
                width=6,
                left=per_instance(AGENT_NAMESPACE, "mem_used_percent"),
            ),
            cw.GraphWidget(
                title="Disk used %",
                width=6,
                left=per_instance(AGENT_NAMESPACE, "disk_used_percent"),
            ),
            cw.GraphWidget(
                title="Network bytes in / out",
                width=6,
                left=per_instance("AWS/EC2", "NetworkIn"),
                right=per_instance("AWS/EC2", "NetworkOut"),
            ),
        ]
        return [[_header("Infrastructure")], graphs]

    def _load_balancer(self, watched: MonitoredResources) -> list[list[cw.IWidget]]:
        if watched.load_balancer is None or watched.active_target_group is None:
            return [[_header("Load balancer", "No load balancer: the app serves no port.")]]
        lb = watched.load_balancer.metrics
        targets = watched.active_target_group.metrics
        latency = [lb.target_response_time(statistic=p, label=p) for p in ("p50", "p90", "p99")]
        codes = [
            lb.http_code_target(code, label=code.value)
            for code in (
                elbv2.HttpCodeTarget.TARGET_2XX_COUNT,
                elbv2.HttpCodeTarget.TARGET_4XX_COUNT,
                elbv2.HttpCodeTarget.TARGET_5XX_COUNT,
            )
        ]
        graphs: list[cw.IWidget] = [
            cw.GraphWidget(
                title="Target health",
                width=6,
                left=[targets.healthy_host_count(), targets.unhealthy_host_count()],
            ),
            cw.GraphWidget(title="Requests", width=6, left=[lb.request_count()]),
            cw.GraphWidget(title="Response time p50 / p90 / p99", width=6, left=latency),
            cw.GraphWidget(title="Responses 2xx / 4xx / 5xx", width=6, left=codes),
        ]
        return [[_header("Load balancer")], graphs]

    def _database(self, watched: MonitoredResources) -> list[list[cw.IWidget]]:
        db = watched.database
        if db is None:
            return [[_header("Database", "No managed database in this deployment.")]]
        graphs: list[cw.IWidget] = [
            cw.GraphWidget(title="Database CPU %", width=6, left=[db.metric_cpu_utilization()]),
            cw.GraphWidget(title="Connections", width=6, left=[db.metric_database_connections()]),
            cw.GraphWidget(
                title="Free storage (bytes)", width=6, left=[db.metric_free_storage_space()]
            ),
            cw.GraphWidget(
                title="Read / write IOPS",
                width=6,
                left=[db.metric_read_iops(), db.metric_write_iops()],
            ),
        ]
        if watched.replica is not None:
            graphs.append(
                cw.GraphWidget(
                    title="Replica lag (s)",
                    width=6,
                    left=[watched.replica.metric("ReplicaLag", statistic="Maximum")],
                )
            )
        return [[_header("Database")], graphs]

    def _logs(self) -> list[list[cw.IWidget]]:
        query = cw.LogQueryWidget(
            title="Latest application log lines",
            log_group_names=[self.log_group.log_group_name],
            query_lines=[
                "fields @timestamp, @logStream, @message",
                "sort @timestamp desc",
                "limit 100",
            ],
            width=WIDTH,
            height=8,
        )
        return [[_header("Application logs")], [query]]

    def _tracing(self, watched: MonitoredResources) -> list[list[cw.IWidget]]:
        group = watched.xray_group_name
        if group is None:
            return [[_header("X-Ray", "Tracing is off; deploy with --xray to trace requests.")]]

        def xray(metric: str, statistic: str = "Average") -> cw.Metric:
            return cw.Metric(
                namespace="AWS/X-Ray",
                metric_name=metric,
                dimensions_map={"GroupName": group},
                statistic=statistic,
            )

        graphs: list[cw.IWidget] = [
            cw.GraphWidget(title="Traces", width=8, left=[xray("ApproximateTraceCount", "Sum")]),
            cw.GraphWidget(
                title="Error / fault rate", width=8, left=[xray("ErrorRate"), xray("FaultRate")]
            ),
            cw.GraphWidget(title="Response time (s)", width=8, left=[xray("ResponseTime")]),
        ]
        return [[_header("X-Ray", f"Traces of group `{group}`.")], graphs]

    def _costs(self) -> list[list[cw.IWidget]]:
        billing = cw.Metric(
            namespace="AWS/Billing",
            metric_name="EstimatedCharges",
            dimensions_map={"Currency": "USD"},
            statistic="Maximum",
            period=Duration.hours(6),
            region="us-east-1",
            label="Account estimated charges",
        )
        return [
            [_header("Costs")],
            [
                cw.TextWidget(markdown=COST_ESTIMATE_MARKER, width=12, height=6),
                cw.GraphWidget(
                    title="Billing (whole account, USD)", width=12, height=6, left=[billing]
                ),
            ],
        ]

    def _alarm_status(self) -> list[list[cw.IWidget]]:
        status = cw.AlarmStatusWidget(alarms=list(self.alarms), title="Alarms", width=WIDTH)
        return [[_header("Alarms")], [status]]


def _header(title: str, body: str = "") -> cw.TextWidget:
    text = f"## {title}" + (f"\n{body}" if body else "")
    return cw.TextWidget(markdown=text, width=WIDTH, height=2 if body else 1)


def _instance_metric(namespace: str, metric: str, instance: ec2.CfnInstance) -> cw.Metric:
    return cw.Metric(
        namespace=namespace,
        metric_name=metric,
        dimensions_map={"InstanceId": instance.ref},
        period=Duration.minutes(5),
        label=instance.node.id,
    )
