"""`hivemind status --show-logs/--show-metrics/--show-costs/--show-traces/--show-dashboard`
and `hivemind dashboard`, run as a user runs them against the sandbox: the deployment's
stack (its log group and dashboard) is in the sandbox's CloudFormation, and the data is
written through the sandbox's AWS endpoint the way the CloudWatch agent, AWS itself,
Cost Explorer and the X-Ray daemon write it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from harness import REPO_ROOT, make_spec, run_cli
from sandbox_harness import Clients, outputs

from hivemind.deployment_ids import new_deployment_id, stack_name
from hivemind.ops.logs import fetch_log_events
from hivemind.ops.window import window
from hivemind.records import RecordStore, ResourceRecord, Status
from hivemind.sandbox import control
from hivemind.sandbox.control import SECRET_HEADER

pytestmark = pytest.mark.sandbox

REGION = "us-east-1"
LOAD_BALANCER = (
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/hm-shop/50dc6c495c0c9188"
)


@dataclass(frozen=True)
class Sandbox:
    home: Path
    aws: Clients
    url: str

    @property
    def env(self) -> dict[str, str]:
        return {"HIVEMIND_HOME": str(self.home), "HIVEMIND_SANDBOX": "1"}


@pytest.fixture(scope="module")
def sandbox(module_sandbox_env: dict[str, str], sandbox_home: Path) -> Sandbox:
    info = control.status(sandbox_home)
    assert info is not None
    return Sandbox(sandbox_home, Clients.of(info, REGION), info.url)


@dataclass(frozen=True)
class Deployment:
    ident: str
    instances: tuple[str, str]
    database: str
    log_group: str
    dashboard: str


def deploy(sandbox: Sandbox, app: str = "shop", *, xray: bool = False) -> Deployment:
    """A deployed deployment's record and its stack (the log group and dashboard its
    outputs name), as the Conductor leaves them after provisioning."""
    spec = make_spec("stage-1", "postgres", xray, region=REGION, app__name=app)
    ident = new_deployment_id(app)
    record = RecordStore(sandbox.home / "deployments").create(spec, ident, stack_name(ident))
    log_group, dashboard = f"/hivemind/{ident}/app", f"HiveMind-{ident}"
    template = {
        "Resources": {
            "AppLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": log_group}},
            "Dashboard": {
                "Type": "AWS::CloudWatch::Dashboard",
                "Properties": {"DashboardName": dashboard, "DashboardBody": '{"widgets": []}'},
            },
        },
        "Outputs": {
            "AppLogGroup": {"Value": {"Ref": "AppLogs"}},
            "DashboardName": {"Value": {"Ref": "Dashboard"}},
        },
    }
    cloudformation = sandbox.aws.cloudformation
    cloudformation.create_stack(StackName=stack_name(ident), TemplateBody=json.dumps(template))
    deadline = time.monotonic() + 30
    while (
        status := cloudformation.describe_stacks(StackName=stack_name(ident))["Stacks"][0][
            "StackStatus"
        ]
    ) == "CREATE_IN_PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == "CREATE_COMPLETE"
    suffix = ident[-10:]
    instances = (f"i-0{suffix}aaaaaa", f"i-0{suffix}bbbbbb")
    database = f"{app}-db-{suffix}"
    record.update(
        status=Status.DEPLOYED,
        outputs={
            **outputs(sandbox.aws, stack_name(ident)),
            "BlueInstanceIds": ",".join(instances),
            "GreenInstanceIds": "-",
            "ActiveColor": "blue",
            "LoadBalancerArn": LOAD_BALANCER.replace("hm-shop", f"hm-{app}"),
            **({"XRayGroup": f"hm-{suffix}"} if xray else {}),
        },
        resources=[
            ResourceRecord(
                logical_id="DatabaseInstance1A2B3C",
                resource_type="AWS::RDS::DBInstance",
                physical_id=database,
                monthly_usd=15.33,
            ),
            ResourceRecord(
                logical_id="WebBlue1Instance",
                resource_type="AWS::EC2::Instance",
                physical_id=instances[0],
                monthly_usd=16.79,
            ),
        ],
        monthly_usd=15.33 + 16.79,
    )
    return Deployment(ident, instances, database, log_group, dashboard)


def status(sandbox: Sandbox, ident: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return run_cli("status", ident, *flags, env=sandbox.env)


def status_json(sandbox: Sandbox, ident: str, *flags: str) -> dict[str, Any]:
    result = status(sandbox, ident, *flags, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def ship(
    sandbox: Sandbox, deployment: Deployment, stream: str, lines: list[tuple[datetime, str]]
) -> None:
    """What the CloudWatch agent does with each line of /var/log/<app>/*.log."""
    logs = sandbox.aws.logs
    existing = logs.describe_log_streams(logGroupName=deployment.log_group)["logStreams"]
    if stream not in {s["logStreamName"] for s in existing}:
        logs.create_log_stream(logGroupName=deployment.log_group, logStreamName=stream)
    logs.put_log_events(
        logGroupName=deployment.log_group,
        logStreamName=stream,
        logEvents=[{"timestamp": ms(t), "message": text} for t, text in lines],
    )


FLASK_ERROR = [
    "[2026-12-01 10:00:05,123] ERROR in app: Exception on /divide [GET]",
    "Traceback (most recent call last):",
    '  File "/opt/shop/current/app.py", line 42, in divide',
    '    return str(1 / int(request.args["n"]))',
    "ZeroDivisionError: division by zero",
]


def test_show_logs_prints_the_latest_lines_and_groups_the_errors(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    a, b = deployment.instances
    now = datetime.now(UTC)

    def at(minutes_ago: float, lines: list[str]) -> list[tuple[datetime, str]]:
        start = now - timedelta(minutes=minutes_ago)
        return [(start + timedelta(milliseconds=n), line) for n, line in enumerate(lines)]

    # Two hours ago: outside the default window of 1h.
    ship(sandbox, deployment, a, at(120, ["[INFO] Booting", *FLASK_ERROR]))
    ship(
        sandbox,
        deployment,
        a,
        [
            *at(50, ["[INFO] Listening at: http://0.0.0.0:8000"]),
            *at(40, FLASK_ERROR),
            *at(39, ['10.0.0.5 - - [x] "GET /divide?n=0 HTTP/1.1" 500 265 "-" "curl/8"']),
            *at(20, FLASK_ERROR),
            *at(5, ["[INFO] GET /health 200"]),
        ],
    )
    ship(sandbox, deployment, b, [*at(30, FLASK_ERROR), *at(1, ["[INFO] last line of b"])])

    text = status(sandbox, deployment.ident, "--show-logs", "--lines", "3")
    assert text.returncode == 0, text.stderr[-3000:]
    out = text.stdout
    assert f"Logs ({deployment.log_group}), last 1h, UTC: 19 events, the last 3:" in out
    shown = out.split("Logs (")[1].split("\n\n")[0].splitlines()[1:]
    assert [line.split("  ")[-1] for line in shown] == [
        "ZeroDivisionError: division by zero",
        "[INFO] GET /health 200",
        "[INFO] last line of b",
    ]
    assert shown[0].startswith("! ") and shown[1].startswith("  ")  # the error is marked
    assert f"  {b}  [INFO] last line of b" in shown[2]
    assert "\x1b[" not in out  # not a terminal: no colours
    assert "Errors: 4 in 2 groups (python and generic patterns)" in out
    assert "!     3x  ZeroDivisionError: division by zero" in out
    assert f"at /opt/shop/current/app.py:42 in divide · on {a}, {b}" in out
    assert "!     1x  HTTP 500: GET /divide" in out

    data = status_json(sandbox, deployment.ident, "--show-logs")
    logs = data["ops"]["logs"]
    assert (logs["log_group"], logs["language"], logs["events_read"]) == (
        deployment.log_group,
        "python",
        19,
    )
    assert len(logs["lines"]) == 19  # fewer than the default 40
    assert sum(line["error"] for line in logs["lines"]) == 16
    division = logs["errors"][0]
    assert (division["signature"], division["count"], division["streams"]) == (
        "ZeroDivisionError: division by zero",
        3,
        [a, b],
    )
    assert division["sample"] == FLASK_ERROR
    assert data["status"] == "deployed" and data["stack_status"] == "CREATE_COMPLETE"


def test_show_logs_says_plainly_when_there_is_nothing(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    result = status(sandbox, deployment.ident, "--show-logs", "--since", "15m")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "no log events in the last 15m: the CloudWatch agent on each instance ships "
        "/var/log/hivemind/shop/*.log within seconds of the app writing it"
    ) in result.stdout
    sandbox.aws.logs.delete_log_group(logGroupName=deployment.log_group)
    gone = status(sandbox, deployment.ident, "--show-logs")
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert f"the log group {deployment.log_group} does not exist" in gone.stdout


def test_a_window_with_too_many_events_is_narrowed_to_its_end(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    now = datetime.now(UTC)
    minutes_ago = [3 * k + 1 for k in range(19, -1, -1)]  # 58 .. 1, every 3 minutes
    ship(
        sandbox,
        deployment,
        deployment.instances[0],
        [(now - timedelta(minutes=m), f"line {m} minutes ago") for m in minutes_ago],
    )
    fetched = fetch_log_events(
        sandbox.aws.logs, deployment.log_group, window("1h", now=now), max_events=5
    )
    assert fetched.narrowed
    assert fetched.start == now - timedelta(minutes=15)
    assert [e.message for e in fetched.events] == [
        f"line {m} minutes ago" for m in (13, 10, 7, 4, 1)
    ]
    everything = fetch_log_events(sandbox.aws.logs, deployment.log_group, window("1h", now=now))
    assert not everything.narrowed and len(everything.events) == 20


def put_metric(
    sandbox: Sandbox,
    namespace: str,
    name: str,
    dimension: tuple[str, str],
    points: list[tuple[datetime, float]],
    unit: str = "None",
) -> None:
    sandbox.aws.cloudwatch.put_metric_data(
        Namespace=namespace,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
                "Timestamp": moment,
                "Value": value,
                "Unit": unit,
            }
            for moment, value in points
        ],
    )


def test_show_metrics_draws_sparklines_and_flags_anomalies(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    a, b = deployment.instances
    now = datetime.now(UTC)
    every_5_min = [now - timedelta(minutes=5 * n + 1) for n in range(11, -1, -1)]
    every_min = [now - timedelta(minutes=n + 1) for n in range(58, -1, -1)]
    cpu = [11.0, 12.5, 10.2, 11.8, 12.1, 10.9, 11.4, 96.0, 12.3, 11.1, 10.7, 12.0]
    put_metric(
        sandbox,
        "AWS/EC2",
        "CPUUtilization",
        ("InstanceId", a),
        [*zip(every_5_min, cpu, strict=True)],
    )
    put_metric(sandbox, "AWS/EC2", "CPUUtilization", ("InstanceId", b), [(every_5_min[-1], 3.0)])
    memory = [(t, 40.0 + (n % 3)) for n, t in enumerate(every_min)]
    put_metric(sandbox, "CWAgent", "mem_used_percent", ("InstanceId", a), memory)
    dimension = ("LoadBalancer", f"app/hm-shop/{LOAD_BALANCER.rsplit('/', 1)[1]}")
    put_metric(
        sandbox,
        "AWS/ApplicationELB",
        "RequestCount",
        dimension,
        [(t, 10.0) for t in every_min[-30:]],
    )
    connections = [(t, 4.0) for t in every_min]
    database = ("DBInstanceIdentifier", deployment.database)
    put_metric(sandbox, "AWS/RDS", "DatabaseConnections", database, connections)

    result = status(sandbox, deployment.ident, "--show-metrics")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "Metrics, last 1h, UTC, one bar per 1 min or 5 min:" in out
    lines = out.splitlines()

    def row(resource_title: str, label: str) -> str:
        start = lines.index(f"  {resource_title}")
        return next(line for line in lines[start + 1 :] if line.startswith(f"    {label} "))

    cpu_row = row(f"instance {a}", "CPU %")
    assert "█" in cpu_row and "now 12.0%  min 10.2%  max 96.0%" in cpu_row
    assert row(f"instance {a}", "memory %").endswith("now 41.0%  min 40.0%  max 42.0%")
    assert row(f"instance {a}", "disk %").endswith(
        "no datapoints yet: the CloudWatch agent ships every minute"
    )
    assert row(f"instance {b}", "CPU %").endswith("now 3.0%  min 3.0%  max 3.0%")
    assert row(f"instance {b}", "network in").endswith(
        "no datapoints yet: EC2 sends its metrics every 5 minutes"
    )
    assert row("load balancer app/hm-shop/50dc6c495c0c9188", "requests").endswith(
        "total 300  max 10/1 min"
    )
    assert row("load balancer app/hm-shop/50dc6c495c0c9188", "5xx").endswith("none in this window")
    assert row(f"database {deployment.database}", "connections").endswith("now 4  min 4  max 4")
    assert f"! CPU % {a}: 96 at " in out
    assert "(high; median 11.6, z +" in out

    data = status_json(sandbox, deployment.ident, "--show-metrics")
    series = {
        (s["query"]["resource"], s["query"]["metric"]): s for s in data["ops"]["metrics"]["series"]
    }
    assert series[(a, "CPUUtilization")]["values"] == cpu
    assert series[(a, "CPUUtilization")]["period"] == 300
    assert series[(a, "mem_used_percent")]["period"] == 60
    assert series[(b, "disk_used_percent")]["values"] == []
    assert [(x["series"], x["value"]) for x in data["ops"]["metrics"]["anomalies"]] == [
        (f"CPU % {a}", 96.0)
    ]


def queue_cost_explorer_results(sandbox: Sandbox, results: list[dict[str, Any]]) -> None:
    """The answers moto's Cost Explorer gives to the next new GetCostAndUsage requests."""
    request = urllib.request.Request(
        f"{sandbox.url}/moto-api/static/ce/cost-and-usage-results",
        data=json.dumps({"results": results}).encode(),
        # moto's control API: the daemon asks for its secret (see sandbox.credentials)
        headers={"Content-Type": "application/json", SECRET_HEADER: sandbox.aws.credentials[1]},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201


def test_show_costs_reads_cost_explorer_by_the_deployments_tag(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    today = datetime.now(UTC).date()
    record = RecordStore(sandbox.home / "deployments").record(deployment.ident)
    record.update(created_at=(datetime.now(UTC) - timedelta(days=2)).isoformat())

    def day(offset: int, ec2: str, rds: str, estimated: bool) -> dict[str, Any]:
        start = today - timedelta(days=offset)
        return {
            "TimePeriod": {
                "Start": start.isoformat(),
                "End": (start + timedelta(days=1)).isoformat(),
            },
            "Total": {},
            "Groups": [
                {
                    "Keys": ["Amazon Elastic Compute Cloud - Compute"],
                    "Metrics": {"UnblendedCost": {"Amount": ec2, "Unit": "USD"}},
                },
                {
                    "Keys": ["Amazon Relational Database Service"],
                    "Metrics": {"UnblendedCost": {"Amount": rds, "Unit": "USD"}},
                },
            ],
            "Estimated": estimated,
        }

    queue_cost_explorer_results(
        sandbox,
        [
            {
                "ResultsByTime": [
                    day(2, "0.55", "0.50", False),
                    day(1, "0.55", "0.52", False),
                    day(0, "0.20", "0.18", True),
                ],
                "DimensionValueAttributes": [],
            }
        ],
    )
    data = status_json(sandbox, deployment.ident, "--show-costs")
    costs = data["ops"]["costs"]
    assert costs["source"] == "cost_explorer"
    assert costs["tag"] == f"hivemind:deployment-id={deployment.ident}"
    assert costs["total_usd"] == pytest.approx(2.50)
    assert costs["by_service"] == {
        "Amazon Elastic Compute Cloud - Compute": pytest.approx(1.30),
        "Amazon Relational Database Service": pytest.approx(1.20),
    }
    # The complete days (not today): (1.05 + 1.07) / 2 a day.
    assert costs["run_rate_monthly_usd"] == pytest.approx(1.06 * 730 / 24)
    assert costs["start"] == (today - timedelta(days=2)).isoformat()

    again = status(sandbox, deployment.ident, "--show-costs")  # same request: same answer
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Costs (Cost Explorer, tag hivemind:deployment-id={deployment.ident})" in again.stdout
    assert "$2.50 in all · daily " in again.stdout
    assert "about $32.24/month at the complete days' rate; HiveMind's estimate $32.12/month" in (
        again.stdout
    )


def test_show_costs_falls_back_to_the_estimate_with_a_note(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    result = status(sandbox, deployment.ident, "--show-costs")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "Costs: Cost Explorer has no costs for this deployment yet: it shows them up to 24 "
        "hours late, and only once `hivemind:deployment-id="
    ) in result.stdout
    assert "HiveMind's estimate instead: $32.12/month" in result.stdout
    assert "$    16.79  AWS::EC2::Instance" in result.stdout
    costs = status_json(sandbox, deployment.ident, "--show-costs")["ops"]["costs"]
    assert (costs["source"], costs["total_usd"], costs["estimate_monthly_usd"]) == (
        "estimate",
        None,
        pytest.approx(32.12),
    )


def segment(
    service: str, trace_id: str, start: float, seconds: float, status: int, **extra: Any
) -> str:
    return json.dumps(
        {
            "name": service,
            "id": f"{abs(hash((trace_id, service))):016x}"[:16],
            "trace_id": trace_id,
            "start_time": start,
            "end_time": start + seconds,
            "http": {
                "request": {"method": "GET", "url": f"http://hm-shop.example/{extra.pop('p')}"},
                "response": {"status": status},
            },
            **extra,
        }
    )


def test_show_traces_lists_the_apps_requests_with_their_faults(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox, "traced", xray=True)
    now = time.time()
    ids = [f"1-{int(now) - 60 + n:08x}-{n:024x}" for n in range(4)]
    sandbox.aws.xray.put_trace_segments(
        TraceSegmentDocuments=[
            segment("traced", ids[0], now - 60, 0.012, 200, p="health"),
            segment("traced", ids[1], now - 50, 0.250, 200, p="notes"),
            segment(
                "traced",
                ids[2],
                now - 40,
                0.031,
                500,
                p="divide?n=0",
                fault=True,
                cause={
                    "exceptions": [
                        {"id": "a1", "type": "ZeroDivisionError", "message": "division by zero"}
                    ]
                },
            ),
            segment("another-app", ids[3], now - 30, 0.5, 200, p="elsewhere"),
        ]
    )
    result = status(sandbox, deployment.ident, "--show-traces")
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert (
        f"Traces (X-Ray group hm-{deployment.ident[-10:]}, service traced), last 1h, UTC: "
        "3 requests, 1 fault (5xx), 0 errors (4xx); p50 31 ms, p90 "
    ) in out
    assert "/divide?n=0" in out and "fault: ZeroDivisionError: division by zero" in out
    assert "elsewhere" not in out  # another service's trace
    traces = status_json(sandbox, deployment.ident, "--show-traces")["ops"]["traces"]
    assert [(r["url"].rsplit("/", 1)[1], r["status"], r["fault"]) for r in traces["requests"]] == [
        ("divide?n=0", 500, True),
        ("notes", 200, False),
        ("health", 200, False),
    ]


def test_traces_under_another_service_name_are_explained(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox, "renamed", xray=True)
    now = time.time()
    trace_id = f"1-{int(now) - 20:08x}-{7:024x}"
    sandbox.aws.xray.put_trace_segments(
        TraceSegmentDocuments=[segment("Flask", trace_id, now - 20, 0.02, 200, p="health")]
    )
    traces = status_json(sandbox, deployment.ident, "--show-traces")["ops"]["traces"]
    assert traces["requests"] == []
    assert traces["note"].startswith("no traced requests to renamed in the last 1h; ")
    assert "the window has traces of Flask" in traces["note"]
    assert traces["note"].endswith(
        "the app's X-Ray SDK must name its segments renamed (AWS_XRAY_TRACING_NAME=renamed)"
    )


def test_show_traces_says_how_to_turn_tracing_on(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    result = status(sandbox, deployment.ident, "--show-traces")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tracing is off for this deployment: deploy it with --xray" in result.stdout
    traces = status_json(sandbox, deployment.ident, "--show-traces")["ops"]["traces"]
    assert traces["enabled"] is False and traces["requests"] == []


def test_dashboard_url_in_status_and_the_dashboard_command(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    url = (
        f"https://console.aws.amazon.com/cloudwatch/home?region={REGION}"
        f"#dashboards:name={deployment.dashboard}"
    )
    shown = status(sandbox, deployment.ident, "--show-dashboard")
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert f"Dashboard {deployment.dashboard}: {url}" in shown.stdout
    assert (
        status_json(sandbox, deployment.ident, "--show-dashboard")["ops"]["dashboard"]["link"][
            "url"
        ]
        == url
    )

    printed = run_cli("dashboard", deployment.ident, "--print", env=sandbox.env)
    assert (printed.returncode, printed.stdout) == (0, url + "\n")
    piped = run_cli("dashboard", deployment.ident, env=sandbox.env)  # not a terminal
    assert (piped.returncode, piped.stdout) == (0, url + "\n")
    as_json = json.loads(run_cli("dashboard", deployment.ident, "--json", env=sandbox.env).stdout)
    assert as_json == {
        "deployment_id": deployment.ident,
        "name": deployment.dashboard,
        "region": REGION,
        "url": url,
        "opened": False,
    }


def test_a_deployment_without_a_dashboard_is_explained(sandbox: Sandbox) -> None:
    spec = make_spec("stage-1", "none", False, region=REGION)
    ident = new_deployment_id("shop")
    RecordStore(sandbox.home / "deployments").create(spec, ident, stack_name(ident))
    result = run_cli("dashboard", ident, env=sandbox.env)
    assert result.returncode == 2
    assert f"error: {ident} has no dashboard yet" in result.stderr
    assert f"next:  `hivemind status {ident}` shows how far it got" in result.stderr


def test_a_bad_window_is_bad_input_before_any_call(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    result = status(sandbox, deployment.ident, "--show-logs", "--since", "5x")
    assert result.returncode == 2
    assert "cannot read the duration '5x'" in result.stderr
    assert "Traceback" not in result.stderr


def test_report_is_written_and_its_path_printed(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    folder = sandbox.home / "deployments" / deployment.ident
    result = status(sandbox, deployment.ident, "--report")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"report: {folder / 'report.md'}" in result.stdout
    assert deployment.ident in (folder / "report.md").read_text()
    data = status_json(sandbox, deployment.ident, "--report", "--report-format", "html")
    assert data["report"] == str(folder / "report.html")
    assert (folder / "report.html").read_text().lstrip().lower().startswith("<!doctype html")


def imported_modules(sandbox: Sandbox, *args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hivemind", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **sandbox.env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {
        line.split("|")[-1].strip()
        for line in proc.stderr.splitlines()
        if line.startswith("import time:")
    }


def test_status_without_flags_and_dashboard_stay_light(sandbox: Sandbox) -> None:
    deployment = deploy(sandbox)
    imported = imported_modules(sandbox, "status", deployment.ident)
    assert not {m for m in imported if m.startswith("hivemind.ops")}
    assert not {m for m in imported if m.split(".")[0] in ("aws_cdk", "boto3", "moto")}
    # The dashboard's URL comes from the record: no AWS client at all.
    imported = imported_modules(sandbox, "dashboard", deployment.ident, "--print")
    assert "hivemind.ops.dashboard" in imported
    assert not {m for m in imported if m.split(".")[0] in ("botocore", "boto3", "aws_cdk")}
