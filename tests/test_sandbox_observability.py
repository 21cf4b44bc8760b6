"""What the sandbox reports to CloudWatch and X-Ray comes from its real stand-ins: an
instance given HiveMind's user data runs a CloudWatch agent that ships the app's log lines
to the deployment's log group (one stream per instance, each line once, across rotation
and truncation) and publishes the host's memory and disk in CWAgent; its X-Ray daemon
takes the segments the app sends to the address its environment names; the instance's
CPU and network, the load balancer's requests, codes, response times and target health,
and a database's connections, CPU and free storage appear in AWS/EC2,
AWS/ApplicationELB and AWS/RDS. Everything is read back through boto3 at the sandbox's
endpoint, as `hivemind status` reads it.

One sandbox server (rounds every second, HIVEMIND_SANDBOX_AGENT_INTERVAL=1) and one
stack serve most tests: a small web app runs as a service on the stack's instance,
behind its load balancer, and logs and traces every request."""

from __future__ import annotations

import base64
import gzip
import http.client
import io
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from harness import make_spec
from sandbox_harness import Clients, destroy, in_process_sandbox, outputs, stack
from test_sandbox_hosts import Box, connect, console_host_key, known_hosts, new_key

from hivemind.sandbox import cloudwatch_agent, databases, hosts, telemetry, usage, xray_daemon
from hivemind.sandbox.cloudwatch_agent import ConfigNotFound, FileFollower, find_config
from hivemind.sandbox.server import SandboxServer

pytestmark = pytest.mark.sandbox

REGION = "eu-central-1"  # apart from the other sandbox tests' regions
DEPLOYMENT_ID = "shop-telemetry2"
LOG_GROUP = f"/hivemind/{DEPLOYMENT_ID}/app"  # what HiveMind's stack names it
APP_PORT = 8000
UNPRIVILEGED_PORT_START = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
HTTP_PORT = 80 if os.geteuid() == 0 or UNPRIVILEGED_PORT_START <= 80 else 8000
ROUND = 1.0  # seconds between two telemetry rounds in these tests
T = TypeVar("T")

# The app: stdlib only, run by the host's systemd. Every request but /health is logged to
# /var/log/hivemind/shop/app.log and traced through the X-Ray daemon its environment names.
APP = r"""
import json, os, socket, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DAEMON = os.environ.get("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")

def log(line):
    with open("/var/log/hivemind/shop/app.log", "a") as f:
        f.write(line + "\n")

def trace(root, path, status, started):
    host, port = DAEMON.rsplit(":", 1)
    segment = {"name": "shop", "id": os.urandom(8).hex(), "trace_id": root,
               "start_time": started, "end_time": time.time(),
               "http": {"request": {"method": "GET", "url": path},
                        "response": {"status": status}}}
    datagram = json.dumps({"format": "json", "version": 1}) + "\n" + json.dumps(segment)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(datagram.encode(), (host, int(port)))

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        started = time.time()
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/health":
            return self.reply(200, b"ok")
        if url.path == "/drop":
            self.close_connection = True
            return
        if url.path == "/burn":
            end = time.process_time() + float(query["seconds"])
            while time.process_time() < end:
                pass
        if url.path == "/slow":
            time.sleep(float(query["seconds"]))
        status = {"/missing": 404, "/fail": 500}.get(url.path, 200)
        root = self.headers.get("X-Amzn-Trace-Id", "").split(";")[0].removeprefix("Root=")
        log(f"{url.path} {query.get('n', '-')} {status}")
        trace(root, url.path, status, started)
        self.reply(status, json.dumps({"trace": root, "daemon": DAEMON}).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.reply(200, body * 2)

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""
UNIT = f"""[Unit]
Description=Shop
[Service]
Environment=PORT={APP_PORT}
ExecStart=/usr/bin/env python3 -u /opt/shop/app.py
Restart=on-failure
"""


# ---------------------------------------------------------------------------
# helpers


def eventually(probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """The first truthy answer of `probe`, asked every 0.2 s for up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer:
            return answer
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def utc(offset: float = 0.0) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=offset)


def request(
    address: str, path: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(address, HTTP_PORT, timeout=10)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def statistics(
    aws: Clients,
    namespace: str,
    metric: str,
    dimensions: dict[str, str],
    since: datetime,
    stats: tuple[str, ...] = ("Sum", "SampleCount", "Average", "Maximum", "Minimum"),
) -> dict[str, float]:
    """One GetMetricStatistics datapoint over everything since `since` (one period)."""
    found = aws.cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName=metric,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=since,
        EndTime=utc(60),
        Period=3600,
        Statistics=list(stats),
    )["Datapoints"]
    return {k: v for k, v in found[0].items() if k in stats} if found else {}


def instance_resources(user_data: str, public_key: str) -> dict[str, Any]:
    """A VPC with two public subnets, a key pair, a launch template with `user_data`, and
    an instance launched from it in the first subnet (HiveMind's stage-1 web tier)."""
    return {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.7.0.0/16"}},
        **{
            f"Subnet{zone.upper()}": {
                "Type": "AWS::EC2::Subnet",
                "Properties": {
                    "VpcId": {"Ref": "Vpc"},
                    "CidrBlock": f"10.7.{index}.0/24",
                    "AvailabilityZone": f"{REGION}{zone}",
                    "MapPublicIpOnLaunch": True,
                },
            }
            for index, zone in enumerate("ab")
        },
        "KeyPair": {
            "Type": "AWS::EC2::KeyPair",
            "Properties": {
                "KeyName": f"deploy-{os.urandom(4).hex()}",
                "KeyType": "ed25519",
                "PublicKeyMaterial": public_key,
            },
        },
        "LaunchTemplate": {
            "Type": "AWS::EC2::LaunchTemplate",
            "Properties": {
                "LaunchTemplateData": {
                    "ImageId": "ami-0abcdef1234567890",
                    "InstanceType": "t3.small",
                    "KeyName": {"Ref": "KeyPair"},
                    "UserData": base64.b64encode(user_data.encode()).decode(),
                }
            },
        },
        "App": {
            "Type": "AWS::EC2::Instance",
            "Properties": {
                "SubnetId": {"Ref": "SubnetA"},
                "LaunchTemplate": {
                    "LaunchTemplateId": {"Ref": "LaunchTemplate"},
                    "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]},
                },
            },
        },
    }


def web_template(user_data: str, public_key: str) -> dict[str, Any]:
    """The instance, the deployment's log group, and a load balancer whose listener
    forwards to the instance (health checks every 5 s, healthy after 2)."""
    resources = {
        **instance_resources(user_data, public_key),
        "AppLogs": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": LOG_GROUP}},
        "Balancer": {
            "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Properties": {"Subnets": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}]},
        },
        "Targets": {
            "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
            "Properties": {
                "VpcId": {"Ref": "Vpc"},
                "Protocol": "HTTP",
                "Port": APP_PORT,
                "TargetType": "instance",
                "Targets": [{"Id": {"Ref": "App"}}],
                "HealthCheckPath": "/health",
                "HealthCheckIntervalSeconds": 5,
                "HealthCheckTimeoutSeconds": 2,
                "HealthyThresholdCount": 2,
                "UnhealthyThresholdCount": 2,
            },
        },
        "Listener": {
            "Type": "AWS::ElasticLoadBalancingV2::Listener",
            "Properties": {
                "LoadBalancerArn": {"Ref": "Balancer"},
                "Port": HTTP_PORT,
                "Protocol": "HTTP",
                "DefaultActions": [{"Type": "forward", "TargetGroupArn": {"Ref": "Targets"}}],
            },
        },
    }
    return {
        "Resources": resources,
        "Outputs": {
            "InstanceId": {"Value": {"Ref": "App"}},
            "Address": {"Value": {"Fn::GetAtt": ["App", "PrivateIp"]}},
            "Dns": {"Value": {"Fn::GetAtt": ["Balancer", "DNSName"]}},
            "Balancer": {"Value": {"Ref": "Balancer"}},
            "Targets": {"Value": {"Ref": "Targets"}},
        },
    }


def hivemind_user_data() -> str:
    """The user data HiveMind's compiler writes for a stage-1 Flask app with X-Ray."""
    from hivemind.compiler import render_user_data

    return render_user_data(make_spec("stage-1", "none", True), DEPLOYMENT_ID)


def create(aws: Clients, name: str, body: dict[str, Any]) -> dict[str, str]:
    stack_id = aws.cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(body))[
        "StackId"
    ]
    described = stack(aws, stack_id)
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    return outputs(aws, stack_id) | {"id": stack_id}


def udp_port_taken(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return True
    return False


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    previous = os.environ.get(cloudwatch_agent.INTERVAL_VARIABLE)
    os.environ[cloudwatch_agent.INTERVAL_VARIABLE] = str(ROUND)
    with in_process_sandbox() as server:
        if previous is None:
            del os.environ[cloudwatch_agent.INTERVAL_VARIABLE]
        else:
            os.environ[cloudwatch_agent.INTERVAL_VARIABLE] = previous
        yield server


@pytest.fixture(scope="module")
def aws(sandbox: SandboxServer) -> Iterator[Clients]:
    clients = Clients(sandbox.url, REGION)
    yield clients
    for summary in clients.cloudformation.list_stacks()["StackSummaries"]:
        if summary["StackStatus"] != "DELETE_COMPLETE":
            destroy(clients, summary["StackId"])


@dataclass(frozen=True)
class Web:
    """The shared stack: its instance (address, host, SSH) and load balancer."""

    instance_id: str
    address: str
    dns: str
    balancer_arn: str
    targets_arn: str
    ssh: Any
    started: datetime

    @property
    def host(self) -> hosts.SandboxHost:
        found = hosts.host_of(self.instance_id)
        assert found is not None
        return found

    @property
    def balancer(self) -> str:
        return telemetry.balancer_dimension(self.balancer_arn)

    @property
    def target_group(self) -> str:
        return telemetry.target_group_dimension(self.targets_arn)


@pytest.fixture(scope="module")
def web(aws: Clients, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    keys = tmp_path_factory.mktemp("keys")
    key_file, public_key = new_key(keys, "id_ed25519")
    started = utc(-1)
    values = create(aws, "shop", web_template(hivemind_user_data(), public_key))
    address = values["Address"]
    pinned = known_hosts(keys, address, console_host_key(aws, values["InstanceId"]))
    ssh = connect(Box(values["id"], values["InstanceId"], address, key_file, values), pinned)
    # What the Deployer does, in short: folders, the app, its unit, start.
    assert ssh.run("sudo mkdir -p /opt/shop /var/log/hivemind/shop", hide=True, in_stream=False).ok
    ssh.put(io.StringIO(APP), "/opt/shop/app.py")
    ssh.put(io.StringIO(UNIT), "/etc/systemd/system/shop.service")
    started_app = ssh.run("sudo systemctl start shop", hide=True, warn=True, in_stream=False)
    assert started_app.exited == 0, started_app.stderr
    web = Web(
        values["InstanceId"],
        address,
        values["Dns"],
        values["Balancer"],
        values["Targets"],
        ssh,
        started,
    )
    eventually(lambda: request(web.dns, "/health")[0] == 200)
    yield web
    ssh.close()


def run(web: Web, command: str) -> bool:
    """Run a command on the instance over SSH; whether it succeeded."""
    return bool(web.ssh.run(command, hide=True, warn=True, in_stream=False).ok)


def log_events(aws: Clients, since: datetime) -> list[dict[str, Any]]:
    """Every event of the log group since `since`, oldest first."""
    events: list[dict[str, Any]] = []
    arguments: dict[str, Any] = {
        "logGroupName": LOG_GROUP,
        "startTime": int(since.timestamp() * 1000),
    }
    while True:
        page = aws.logs.filter_log_events(**arguments)
        events += page["events"]
        if not page.get("nextToken"):
            return events
        arguments["nextToken"] = page["nextToken"]


# ---------------------------------------------------------------------------
# the CloudWatch agent: logs


def test_the_agent_ships_each_app_log_line_once_to_the_instances_stream(
    aws: Clients, web: Web
) -> None:
    since = utc(-1)

    def shipped(count: int) -> list[str] | None:
        ours = [e["message"] for e in log_events(aws, since) if " logs-" in e["message"]]
        return ours if len(ours) >= count else None

    for n in range(3):
        assert request(web.dns, f"/hello?n=logs-{n}")[0] == 200
    eventually(lambda: shipped(3))
    # logrotate's way without copytruncate: the file is renamed (most likely before the
    # agent's next round has read its last lines) and the app starts a new one.
    for n in range(3, 5):
        assert request(web.dns, f"/hello?n=logs-{n}")[0] == 200
    assert run(web, "sudo mv /var/log/hivemind/shop/app.log /var/log/hivemind/shop/app.log.1")
    for n in range(5, 7):
        assert request(web.dns, f"/hello?n=logs-{n}")[0] == 200
    after = utc(1)

    assert eventually(lambda: shipped(7)) == [f"/hello logs-{n} 200" for n in range(7)]
    time.sleep(3 * ROUND)  # a few more rounds: nothing is shipped twice
    events = [e for e in log_events(aws, since) if " logs-" in e["message"]]
    assert len(events) == 7
    assert {e["logStreamName"] for e in events} == {web.instance_id}
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert since.timestamp() * 1000 <= stamps[0] and stamps[-1] <= (after.timestamp() + 2) * 1000
    stream = aws.logs.get_log_events(
        logGroupName=LOG_GROUP, logStreamName=web.instance_id, startFromHead=True
    )["events"]
    assert [e["message"] for e in stream if " logs-" in e["message"]] == [
        f"/hello logs-{n} 200" for n in range(7)
    ]


def test_a_truncated_log_is_read_again_from_its_start(aws: Clients, web: Web) -> None:
    since = utc(-1)
    assert run(web, "echo 'before truncation' | sudo tee /var/log/hivemind/shop/worker.log")
    eventually(lambda: any(e["message"] == "before truncation" for e in log_events(aws, since)))
    # copytruncate: the file keeps its inode and starts again from nothing.
    assert run(web, "sudo truncate -s 0 /var/log/hivemind/shop/worker.log")
    time.sleep(2 * ROUND)
    log = "/var/log/hivemind/shop/worker.log"
    assert run(web, f"printf 'after\\ntruncation\\n' | sudo tee -a {log}")
    messages = eventually(
        lambda: (
            (m := [e["message"] for e in log_events(aws, since)])[-2:] == ["after", "truncation"]
            and m
        )
    )
    assert messages.count("before truncation") == 1


def test_lines_wait_in_their_file_while_the_log_group_is_missing(aws: Clients, web: Web) -> None:
    aws.logs.delete_log_group(logGroupName=LOG_GROUP)
    try:
        assert request(web.dns, "/hello?n=waiting")[0] == 200
        time.sleep(3 * ROUND)
        # The agent never creates the group (a stack's deletion could leave it behind).
        assert aws.logs.describe_log_groups(logGroupNamePrefix=LOG_GROUP)["logGroups"] == []
    finally:
        aws.logs.create_log_group(logGroupName=LOG_GROUP)
    shipped = eventually(
        lambda: [e for e in log_events(aws, utc(-60)) if e["message"] == "/hello waiting 200"]
    )
    assert [e["logStreamName"] for e in shipped] == [web.instance_id]


# ---------------------------------------------------------------------------
# the CloudWatch agent: metrics


def test_the_agent_publishes_the_hosts_memory_and_disk_by_instance_id(
    aws: Clients, web: Web
) -> None:
    by_instance = {"InstanceId": web.instance_id}
    since = utc()
    memory = eventually(lambda: statistics(aws, "CWAgent", "mem_used_percent", by_instance, since))
    # The app's Python processes, out of this machine's memory: small, but not nothing.
    assert 0 < memory["Minimum"] <= memory["Maximum"] < 50

    # The dashboard's query: disk_used_percent by InstanceId alone (the aggregation).
    found = eventually(
        lambda: aws.cloudwatch.get_metric_data(
            MetricDataQueries=[
                {
                    "Id": "disk",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": "CWAgent",
                            "MetricName": "disk_used_percent",
                            "Dimensions": [{"Name": "InstanceId", "Value": web.instance_id}],
                        },
                        "Period": 60,
                        "Stat": "Average",
                    },
                }
            ],
            StartTime=web.started - timedelta(minutes=1),
            EndTime=utc(60),
        )["MetricDataResults"][0]["Values"]
    )
    disk = os.statvfs(web.host.directory)
    used = (disk.f_blocks - disk.f_bfree) * disk.f_frsize
    expected = 100.0 * used / (used + disk.f_bavail * disk.f_frsize)
    assert abs(found[-1] - expected) < 1.0

    # And per disk, with the agent's dimensions for it (drop_device: no device).
    listed = aws.cloudwatch.list_metrics(Namespace="CWAgent", MetricName="disk_used_percent")
    dimension_sets = [
        {d["Name"]: d["Value"] for d in metric["Dimensions"]} for metric in listed["Metrics"]
    ]
    ours = [d for d in dimension_sets if d["InstanceId"] == web.instance_id]
    # Each series once, however many data points it has: by instance, and per disk.
    assert sorted(len(d) for d in ours) == [1, 3]
    full = next(d for d in ours if len(d) > 1)
    assert sorted(full) == ["InstanceId", "fstype", "path"] and full["path"] == "/"


# ---------------------------------------------------------------------------
# AWS/EC2


def test_the_instance_reports_its_real_cpu_and_the_bytes_the_balancer_exchanged(
    aws: Clients, web: Web
) -> None:
    since = utc(-1)
    assert request(web.dns, "/burn?seconds=1.5")[0] == 200
    body = os.urandom(100_000)
    status, answer = request(web.dns, "/echo", method="POST", body=body)
    assert (status, answer) == (200, body * 2)
    by_instance = {"InstanceId": web.instance_id}

    cpu = eventually(
        lambda: (
            (s := statistics(aws, "AWS/EC2", "CPUUtilization", by_instance, since))
            and s["Maximum"] > 10
            and s
        )
    )
    assert cpu["Maximum"] <= 100
    network_in = eventually(
        lambda: (
            (s := statistics(aws, "AWS/EC2", "NetworkIn", by_instance, since))
            and s["Sum"] >= len(body)
            and s
        )
    )
    network_out = eventually(
        lambda: (
            (s := statistics(aws, "AWS/EC2", "NetworkOut", by_instance, since))
            and s["Sum"] >= 2 * len(body)
            and s
        )
    )
    # Headers and health checks add a little, nothing like another body.
    assert network_in["Sum"] < len(body) + 50_000
    assert network_out["Sum"] < 2 * len(body) + 50_000


# ---------------------------------------------------------------------------
# AWS/ApplicationELB


def test_the_load_balancer_reports_requests_codes_response_times_and_target_health(
    aws: Clients, web: Web
) -> None:
    # Rounds from here on count only this test's requests: the last ones before were
    # counted by rounds stamped a few rounds ago.
    time.sleep(3 * ROUND)
    since = utc()
    for n in range(4):
        assert request(web.dns, f"/hello?n=alb-{n}")[0] == 200
    assert request(web.dns, "/slow?seconds=0.4")[0] == 200
    for path, status in (("/missing", 404), ("/missing", 404), ("/fail", 500), ("/drop", 502)):
        assert request(web.dns, path)[0] == status
    balancer = {"LoadBalancer": web.balancer}
    group = {"TargetGroup": web.target_group, "LoadBalancer": web.balancer}

    def total(metric: str, dimensions: dict[str, str]) -> float:
        return statistics(aws, "AWS/ApplicationELB", metric, dimensions, since).get("Sum", 0.0)

    eventually(lambda: total("RequestCount", balancer) >= 9 and total("RequestCount", group) >= 9)
    time.sleep(2 * ROUND)  # every request counted, and none twice
    for dimensions in (balancer, group):
        assert total("RequestCount", dimensions) == 9
        assert total("HTTPCode_Target_2XX_Count", dimensions) == 5
        assert total("HTTPCode_Target_4XX_Count", dimensions) == 2
        assert total("HTTPCode_Target_5XX_Count", dimensions) == 1
        assert total("HTTPCode_ELB_5XX_Count", dimensions) == 1
        assert total("HTTPCode_ELB_502_Count", dimensions) == 1
    latency = statistics(aws, "AWS/ApplicationELB", "TargetResponseTime", balancer, since)
    assert latency["SampleCount"] == 8  # the 502 got no response from the target
    assert 0.4 <= latency["Maximum"] < 2
    assert 0 < latency["Minimum"] < 0.4
    assert latency["Minimum"] < latency["Average"] < latency["Maximum"]

    healthy = eventually(
        lambda: statistics(aws, "AWS/ApplicationELB", "HealthyHostCount", group, web.started).get(
            "Maximum"
        ),
        timeout=30,
    )
    assert healthy == 1
    unhealthy = statistics(aws, "AWS/ApplicationELB", "UnHealthyHostCount", group, web.started)
    assert unhealthy["Maximum"] == 0


# ---------------------------------------------------------------------------
# X-Ray


def test_the_apps_segments_reach_x_ray_through_the_hosts_daemon(aws: Clients, web: Web) -> None:
    since = utc(-1)
    status, body = request(web.dns, "/hello?n=traced")
    answer = json.loads(body)
    # The balancer started the trace; the app's environment named the host's daemon.
    assert status == 200 and answer["trace"].startswith("1-")
    assert answer["daemon"] == f"{web.address}:{xray_daemon.DAEMON_PORT}"

    def summaries() -> list[str]:
        found = aws.xray.get_trace_summaries(StartTime=since, EndTime=utc(5))
        return [s["Id"] for s in found["TraceSummaries"]]

    assert answer["trace"] in eventually(summaries, timeout=5)
    traces = aws.xray.batch_get_traces(TraceIds=[answer["trace"]])["Traces"]
    document = json.loads(traces[0]["Segments"][0]["Document"])
    assert (document["name"], document["http"]["request"]["url"]) == ("shop", "/hello")


# ---------------------------------------------------------------------------
# AWS/RDS


def test_a_database_reports_its_real_connections_cpu_and_free_storage(aws: Clients) -> None:
    password = base64.b32encode(os.urandom(15)).decode()
    values = create(
        aws,
        "database",
        {
            "Resources": {
                "Database": {
                    "Type": "AWS::RDS::DBInstance",
                    "Properties": {
                        "DBInstanceIdentifier": "metrics-db",
                        "Engine": "postgres",
                        "DBInstanceClass": "db.t3.micro",
                        "AllocatedStorage": "20",
                        "MasterUsername": "hivemind",
                        "MasterUserPassword": password,
                        "DBName": "app",
                    },
                }
            },
            "Outputs": {
                "Address": {"Value": {"Fn::GetAtt": ["Database", "Endpoint.Address"]}},
                "Port": {"Value": {"Fn::GetAtt": ["Database", "Endpoint.Port"]}},
            },
        },
    )
    by_id = {"DBInstanceIdentifier": "metrics-db"}
    since = utc(-1)
    connections = [
        psycopg.connect(
            host=values["Address"],
            port=int(values["Port"]),
            user="hivemind",
            password=password,
            dbname="app",
            autocommit=True,
        )
        for _ in range(3)
    ]
    try:
        connections[0].execute("SELECT count(*) FROM generate_series(1, 3000000)").fetchone()
        eventually(
            lambda: (
                statistics(aws, "AWS/RDS", "DatabaseConnections", by_id, since).get("Maximum") == 3
            )
        )
        cpu = eventually(
            lambda: (
                (s := statistics(aws, "AWS/RDS", "CPUUtilization", by_id, since))
                and s["Maximum"] > 5
                and s
            )
        )
        assert cpu["Maximum"] <= 100
    finally:
        for connection in connections:
            connection.close()
    gone = utc()
    time.sleep(2 * ROUND)
    after = statistics(aws, "AWS/RDS", "DatabaseConnections", by_id, gone)
    assert after["Minimum"] == 0

    assert statistics(aws, "AWS/RDS", "DatabaseConnections", by_id, since)["Maximum"] == 3

    # 20 GiB allocated, less what the cluster's files take (a few dozen MB when new), and
    # no more than the machine's disk has free.
    server = databases.server_of("metrics-db")
    assert server is not None
    expected = min(
        usage.filesystem_usage(server.folder).available,
        20 * 1024**3 - usage.bytes_under(server.data_dir),
    )
    free = statistics(aws, "AWS/RDS", "FreeStorageSpace", by_id, gone)
    assert abs(free["Maximum"] - expected) < 64 * 1024**2
    assert free["Maximum"] < 20 * 1024**3 - 10 * 1024**2  # a cluster takes more than 10 MB
    destroy(aws, values["id"])


# ---------------------------------------------------------------------------
# lifecycle


def test_the_agent_and_the_daemon_run_only_as_the_user_data_says_and_stop_with_the_host(
    aws: Clients, tmp_path: Path
) -> None:
    _, public_key = new_key(tmp_path, "id_ed25519")

    def instance_stack(name: str, user_data: str) -> tuple[str, str, hosts.SandboxHost]:
        body = {
            "Resources": instance_resources(user_data, public_key),
            "Outputs": {"InstanceId": {"Value": {"Ref": "App"}}},
        }
        values = create(aws, name, body)
        host = hosts.host_of(values["InstanceId"])
        assert host is not None
        return values["id"], values["InstanceId"], host

    def agent_metrics(instance_id: str) -> list[Any]:
        listed = aws.cloudwatch.list_metrics(
            Namespace="CWAgent", Dimensions=[{"Name": "InstanceId", "Value": instance_id}]
        )
        return list(listed["Metrics"])

    stack_id, plain, host = instance_stack("plain", "#!/bin/bash\necho hello\n")
    # EC2 measures every instance...
    since = utc(-1)
    eventually(lambda: statistics(aws, "AWS/EC2", "CPUUtilization", {"InstanceId": plain}, since))
    # ...but without an agent or a daemon in its user data, nothing else runs for it.
    assert agent_metrics(plain) == []
    assert not udp_port_taken(host.address, xray_daemon.DAEMON_PORT)
    assert xray_daemon.ADDRESS_VARIABLE not in host.environment()
    destroy(aws, stack_id)

    stack_id, traced, host = instance_stack("traced", hivemind_user_data())
    address = host.address
    assert udp_port_taken(address, xray_daemon.DAEMON_PORT)
    assert host.environment()[xray_daemon.ADDRESS_VARIABLE] == f"{address}:2000"
    eventually(lambda: agent_metrics(traced))
    destroy(aws, stack_id)
    gone = utc(1)
    assert not udp_port_taken(address, xray_daemon.DAEMON_PORT)
    time.sleep(3 * ROUND)
    for namespace, metric in (("CWAgent", "mem_used_percent"), ("AWS/EC2", "CPUUtilization")):
        assert statistics(aws, namespace, metric, {"InstanceId": traced}, gone) == {}


# ---------------------------------------------------------------------------
# finding the agent's configuration, following files


AGENT_CONFIG = {
    "logs": {
        "logs_collected": {
            "files": {"collect_list": [{"file_path": "/var/log/app/*.log", "log_group_name": "g"}]}
        }
    }
}


def test_the_configuration_comes_from_what_the_user_data_writes_and_fetches() -> None:
    config = find_config(hivemind_user_data().encode(), lambda name: None)
    assert config is not None
    assert config.sources == ("file:/opt/aws/amazon-cloudwatch-agent/etc/hivemind.json",)
    assert [(f.file_path, f.log_group_name, f.log_stream_name) for f in config.log_files] == [
        ("/var/log/hivemind/shop/*.log", LOG_GROUP, "{instance_id}")
    ]
    assert config.metrics is not None
    assert [m.name for m in config.metrics.measurements] == [
        "disk_used_percent",
        "mem_used_percent",
    ]

    parameter = json.dumps(AGENT_CONFIG)
    from_ssm = "#!/bin/sh\namazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -c ssm:agent -s\n"
    read = {"agent": parameter}.get
    found = find_config(from_ssm.encode(), read)
    assert found is not None and found.log_files[0].log_stream_name == "{instance_id}"
    # Compressed, as cloud-init accepts it, works the same.
    assert find_config(gzip.compress(from_ssm.encode()), read) == found
    # Fetched but never started (no -s, no start), or stopped again: no agent.
    assert find_config(from_ssm.replace(" -s", "").encode(), read) is None
    stopped = from_ssm + "amazon-cloudwatch-agent-ctl -a stop\n"
    assert find_config(stopped.encode(), read) is None
    # No -c in the user data: no agent; a file the user data does not write: why not.
    assert find_config(b"#!/bin/sh\necho no agent here\n", read) is None
    with pytest.raises(ConfigNotFound, match=r"does not write /etc/agent\.json"):
        find_config(
            b"#!/bin/sh\namazon-cloudwatch-agent-ctl -a fetch-config -s -c file:/etc/agent.json",
            read,
        )


def test_a_followed_file_gives_each_line_once_across_rotation_and_truncation(
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "app.log"
    follower = FileFollower(str(tmp_path / "*.log"))
    log_file.write_text("one\ntwo\npart")
    assert follower.read(time.time()) == ["one", "two"]
    with log_file.open("a") as handle:
        handle.write("ial\n")
    assert follower.read(time.time()) == ["partial"]
    # Rotated: renamed out of the glob with a last line, and a new file started.
    with log_file.open("a") as handle:
        handle.write("last of the old file\n")
    log_file.rename(tmp_path / "app.log.1")
    log_file.write_text("first of the new file\n")
    assert follower.read(time.time()) == ["last of the old file", "first of the new file"]
    assert follower.read(time.time()) == []
    # Truncated in place, then written again.
    log_file.write_text("")
    assert follower.read(time.time()) == []
    with log_file.open("a") as handle:
        handle.write("after truncation\n")
    assert follower.read(time.time()) == ["after truncation"]
    # A line that never gets its newline is shipped after a whole round without more.
    with log_file.open("a") as handle:
        handle.write("no newline")
    assert follower.read(time.time()) == []
    assert follower.read(time.time()) == []
    assert follower.read(time.time()) == ["no newline"]
    follower.close()
