"""The sandbox's load balancers serve for real: a stack's ALB answers on a loopback
address, its listeners forward to healthy targets round robin, health checks report
AWS's states and reasons, a listener switch moves traffic at once, deregistered targets
drain, and deleting the stack closes the ports. Listener rules match requests as ALB
does, and what a blue-green or rolling update relies on holds under load: switching
colours, and a target leaving, stopping and coming back, fail no request.

One sandbox server and two stacks (`deployment`, and `colours` shaped like HiveMind's
blue-green web tier) serve most tests; small web apps on loopback addresses of their own
stand in for the targets. Health checks use AWS's smallest interval (5 s) with
thresholds of 2, so a target is healthy (or unhealthy) about 5 s after it is
registered. The main listener is on port 80 where this process may bind it, else 8000."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sandbox_harness import Clients, events, in_process_sandbox, stack

from hivemind.sandbox import certificates, connect_endpoint, control, forwarder, runtime
from hivemind.sandbox.server import SandboxServer

pytestmark = pytest.mark.sandbox

APP_PORT = 8080
UNPRIVILEGED_PORT_START = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
# What HiveMind's stacks use, where this process may bind it (root, or the sysctl allows it).
HTTP_PORT = 80 if os.geteuid() == 0 or UNPRIVILEGED_PORT_START <= 80 else 8000
INTERVAL = 5  # AWS's minimum HealthCheckIntervalSeconds
SETTLE = 3 * INTERVAL  # long enough for any state change a test waits for
FAULTY_CHECKS = 100  # health checks of app "faulty" that fail: it never gets healthy here


# ---------------------------------------------------------------------------
# targets


@dataclass
class App:
    """A web app on a loopback address of its own: GET /health answers `health`; other
    paths answer with the app's name and what it received. `connections` counts the
    connections open to it now."""

    name: str
    address: str = field(default_factory=lambda: runtime.allocate_address([APP_PORT]))
    health: int = 200
    hits: list[str] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> App:
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with app.lock:
                    app.connections += 1

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with app.lock:
                        app.connections -= 1

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/health":
                    self.reply(app.health, b"health")
                    return
                app.hits.append(url.path)
                if url.path == "/slow":
                    time.sleep(float(parse_qs(url.query)["seconds"][0]))
                if url.path == "/stream":
                    self.send_response(200)
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for part in (b"one,", b"two,", b"three"):
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    return
                self.reply(200, self.described(b""))

            def do_POST(self) -> None:
                app.hits.append(self.path)
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    body = b""
                    while size := int(self.rfile.readline().strip(), 16):
                        body += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                else:
                    body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.reply(200, self.described(body))

            def described(self, body: bytes) -> bytes:
                return json.dumps(
                    {
                        "app": app.name,
                        "headers": dict(self.headers.items()),
                        "body_sha256": hashlib.sha256(body).hexdigest(),
                    }
                ).encode()

            def reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that left early (the balancer timing a request out)

        self.server = Server((self.address, APP_PORT), Handler)
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop serving (new connections are refused); `release=False` keeps the address
        for `start` to serve on again."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if release:
            runtime.release_address(self.address)

    @property
    def target(self) -> dict[str, Any]:
        return {"Id": self.address, "Port": APP_PORT}


# ---------------------------------------------------------------------------
# templates and clients


def network() -> dict[str, Any]:
    return {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}},
        **{
            f"Subnet{zone.upper()}": {
                "Type": "AWS::EC2::Subnet",
                "Properties": {
                    "VpcId": {"Ref": "Vpc"},
                    "CidrBlock": f"10.0.{index}.0/24",
                    "AvailabilityZone": f"eu-west-1{zone}",
                },
            }
            for index, zone in enumerate("ab")
        },
        "Balancer": {
            "Type": "AWS::ElasticLoadBalancingV2::LoadBalancer",
            "Properties": {"Subnets": [{"Ref": "SubnetA"}, {"Ref": "SubnetB"}]},
        },
    }


def target_group(targets: list[dict[str, Any]], target_type: str = "ip") -> dict[str, Any]:
    return {
        "Type": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "Properties": {
            "VpcId": {"Ref": "Vpc"},
            "Protocol": "HTTP",
            "Port": APP_PORT,
            "TargetType": target_type,
            "HealthCheckPath": "/health",
            "HealthCheckIntervalSeconds": INTERVAL,
            "HealthCheckTimeoutSeconds": 2,
            "HealthyThresholdCount": 2,
            "UnhealthyThresholdCount": 2,
            "Matcher": {"HttpCode": "200-399"},
            "TargetGroupAttributes": [
                {"Key": "deregistration_delay.timeout_seconds", "Value": "2"}
            ],
            "Targets": targets,
        },
    }


def listener(port: int, action: dict[str, Any], protocol: str = "HTTP") -> dict[str, Any]:
    return {
        "Type": "AWS::ElasticLoadBalancingV2::Listener",
        "Properties": {
            "LoadBalancerArn": {"Ref": "Balancer"},
            "Port": port,
            "Protocol": protocol,
            "DefaultActions": [action],
        },
    }


def forward(group: str) -> dict[str, Any]:
    return {"Type": "forward", "TargetGroupArn": {"Ref": group}}


def template(resources: dict[str, Any]) -> str:
    outputs = {
        "Dns": {"Value": {"Fn::GetAtt": ["Balancer", "DNSName"]}},
        "Balancer": {"Value": {"Ref": "Balancer"}},
        **{
            name: {"Value": {"Ref": name}}
            for name, resource in resources.items()
            if resource["Type"].startswith("AWS::ElasticLoadBalancingV2::")
        },
    }
    return json.dumps({"Resources": {**network(), **resources}, "Outputs": outputs})


def create_stack(aws: Clients, name: str, body: str) -> dict[str, str]:
    """Create a stack; its outputs by name (the ARNs of its ELB resources and `Dns`)."""
    stack_id = aws.cloudformation.create_stack(StackName=name, TemplateBody=body)["StackId"]
    described = stack(aws, stack_id)
    assert described["StackStatus"] == "CREATE_COMPLETE", described.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in described["Outputs"]} | {"id": stack_id}


def get(
    address: str, port: int, path: str = "/", method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection(address, port, timeout=10)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def app_of(body: bytes) -> str:
    return str(json.loads(body)["app"])


def health(aws: Clients, group_arn: str) -> dict[str, tuple[str, str | None, str | None]]:
    """DescribeTargetHealth as {target id: (state, reason, description)}."""
    described = aws.elbv2.describe_target_health(TargetGroupArn=group_arn)
    return {
        d["Target"]["Id"]: (
            d["TargetHealth"]["State"],
            d["TargetHealth"].get("Reason"),
            d["TargetHealth"].get("Description"),
        )
        for d in described["TargetHealthDescriptions"]
    }


def wait_for(condition: Callable[[], bool], timeout: float = SETTLE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def refused(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


# ---------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxServer]:
    with in_process_sandbox() as server:
        yield server


@pytest.fixture(scope="module")
def aws(sandbox: SandboxServer) -> Clients:
    return Clients(sandbox.url)


@dataclass
class Deployment:
    """The shared stack, by target group and the listener ports forwarding to it:

    * `blue` (apps a and b, app sick whose /health answers 500, and gone, where nothing
      listens): 80 and 8086;
    * `green` (app g, and app faulty whose checks an injected fault fails): 8081;
    * `empty` (no targets): 8082; `broken` (only gone): 8087; `idle` (app a): none;
    * `instances` (an EC2 instance whose private IP is app i's address): 8085;
    * and a redirect to HTTPS on 8083, a fixed response on 8084."""

    dns: str
    arns: dict[str, str]
    apps: dict[str, App]
    instance_id: str

    def reset_hits(self) -> None:
        for app in self.apps.values():
            app.hits.clear()


@pytest.fixture(scope="module")
def deployment(aws: Clients, sandbox: SandboxServer) -> Iterator[Deployment]:
    apps = {name: App(name).start() for name in ("a", "b", "sick", "g", "faulty", "i")}
    apps["sick"].health = 500
    apps["gone"] = App("gone")  # never started: connections are refused
    control.add_fault(
        control.SandboxInfo(sandbox.url, 0, sandbox.port),
        "Sandbox::HealthCheck",
        on="health",
        times=FAULTY_CHECKS,
        match=apps["faulty"].address,
        message="the app never came up",
    )
    # An instance target: a moto instance whose private IP is where app i listens (as the
    # sandbox's own instances listen on theirs).
    vpc = aws.ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = aws.ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/24")["Subnet"]["SubnetId"]
    launched = aws.ec2.run_instances(
        ImageId="ami-12345678", MinCount=1, MaxCount=1, SubnetId=subnet
    )
    instance_id = launched["Instances"][0]["InstanceId"]
    from moto.ec2.models import ec2_backends

    instance = ec2_backends["123456789012"][aws.region].get_instance_by_id(instance_id)
    instance.nics[0].private_ip_address = apps["i"].address

    body = template(
        {
            "Blue": target_group([apps[n].target for n in ("a", "b", "sick", "gone")]),
            "Green": target_group([apps["g"].target, apps["faulty"].target]),
            "Empty": target_group([]),
            "Idle": target_group([apps["a"].target]),
            "Broken": target_group([apps["gone"].target]),
            "Instances": target_group([{"Id": instance_id}], "instance"),
            "Http": listener(HTTP_PORT, forward("Blue")),
            "BlueTest": listener(8086, forward("Blue")),
            "GreenTest": listener(
                8081,
                {
                    "Type": "forward",
                    "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": {"Ref": "Green"}}]},
                },
            ),
            "EmptyListener": listener(8082, forward("Empty")),
            "BrokenListener": listener(8087, forward("Broken")),
            "InstanceListener": listener(8085, forward("Instances")),
            "Redirect": listener(
                8083,
                {
                    "Type": "redirect",
                    "RedirectConfig": {
                        "Protocol": "HTTPS",
                        "Port": "443",
                        "StatusCode": "HTTP_301",
                    },
                },
            ),
            "Fixed": listener(
                8084,
                {
                    "Type": "fixed-response",
                    "FixedResponseConfig": {
                        "StatusCode": "418",
                        "ContentType": "text/plain",
                        "MessageBody": "short and stout",
                    },
                },
            ),
        }
    )
    outputs = create_stack(aws, "forwarding", body)
    deployment = Deployment(outputs.pop("Dns"), outputs, apps, instance_id)

    def settled() -> bool:
        blue, green = health(aws, deployment.arns["Blue"]), health(aws, deployment.arns["Green"])
        states = {
            **{name: blue[apps[name].address][0] for name in ("a", "b", "sick", "gone")},
            **{name: green[apps[name].address][0] for name in ("g", "faulty")},
            "i": health(aws, deployment.arns["Instances"])[instance_id][0],
        }
        return states == {
            "a": "healthy",
            "b": "healthy",
            "sick": "unhealthy",
            "gone": "unhealthy",
            "g": "healthy",
            "faulty": "unhealthy",
            "i": "healthy",
        }

    wait_for(settled)
    yield deployment

    control.clear_faults(control.SandboxInfo(sandbox.url, 0, sandbox.port))
    aws.cloudformation.delete_stack(StackName=outputs["id"])
    aws.ec2.terminate_instances(InstanceIds=[instance_id])
    aws.ec2.delete_subnet(SubnetId=subnet)
    aws.ec2.delete_vpc(VpcId=vpc)
    for app in apps.values():
        app.stop()


# ---------------------------------------------------------------------------
# the shared stack


def test_the_dns_name_is_a_loopback_address_that_answers(
    aws: Clients, deployment: Deployment
) -> None:
    arn = deployment.arns["Balancer"]
    balancer = aws.elbv2.describe_load_balancers(LoadBalancerArns=[arn])["LoadBalancers"][0]

    assert balancer["DNSName"] == deployment.dns
    assert deployment.dns.startswith("127.") and not deployment.dns.startswith("127.0.0.")
    status, _, body = get(deployment.dns, HTTP_PORT)
    assert status == 200
    assert app_of(body) in ("a", "b")
    assert "X-Amzn-Trace-Id" in json.loads(body)["headers"]


def test_requests_go_round_robin_to_the_healthy_targets_only(deployment: Deployment) -> None:
    deployment.reset_hits()

    answered = [app_of(get(deployment.dns, HTTP_PORT, "/page")[2]) for _ in range(6)]

    assert sorted(answered) == ["a", "a", "a", "b", "b", "b"]
    assert answered[0] != answered[1]
    assert deployment.apps["sick"].hits == []


def test_describe_target_health_says_why_a_target_is_unhealthy(
    aws: Clients, deployment: Deployment
) -> None:
    blue = health(aws, deployment.arns["Blue"])
    apps = deployment.apps

    assert blue[apps["a"].address] == ("healthy", None, None)
    assert blue[apps["sick"].address] == (
        "unhealthy",
        "Target.ResponseCodeMismatch",
        "Health checks failed with these codes: [500]",
    )
    assert blue[apps["gone"].address] == (
        "unhealthy",
        "Target.FailedHealthChecks",
        "Health checks failed",
    )
    assert health(aws, deployment.arns["Idle"])[apps["a"].address] == (
        "unused",
        "Target.NotInUse",
        "Target group is not configured to receive traffic from the load balancer",
    )
    described = aws.elbv2.describe_target_health(
        TargetGroupArn=deployment.arns["Blue"], Targets=[apps["a"].target]
    )["TargetHealthDescriptions"]
    assert [(d["Target"]["Port"], d["HealthCheckPort"]) for d in described] == [
        (APP_PORT, str(APP_PORT))
    ]


def test_the_balancer_answers_itself_when_targets_cannot(
    aws: Clients, deployment: Deployment
) -> None:
    dns = deployment.dns
    # No target registered: 503.
    assert get(dns, 8082)[0] == 503
    # Every target unhealthy: the balancer fails open, and the refused connection is a 502.
    status, headers, body = get(dns, 8087)
    assert (status, headers["Server"]) == (502, "awselb/2.0")
    assert b"502 Bad Gateway" in body
    # A target slower than the idle timeout: 504.
    balancer = deployment.arns["Balancer"]
    attribute = {"Key": "idle_timeout.timeout_seconds", "Value": "1"}
    aws.elbv2.modify_load_balancer_attributes(LoadBalancerArn=balancer, Attributes=[attribute])
    try:
        assert get(dns, HTTP_PORT, "/slow?seconds=2")[0] == 504
    finally:
        attribute["Value"] = "60"
        aws.elbv2.modify_load_balancer_attributes(LoadBalancerArn=balancer, Attributes=[attribute])

    counted = forwarder.traffic(balancer)
    assert counted.elb_codes[503] >= 1 and counted.elb_codes[502] >= 1
    assert counted.elb_codes[504] >= 1 and counted.target_codes[200] >= 1
    assert counted.target_connection_errors >= 1
    assert forwarder.traffic(deployment.arns["Empty"]).elb_codes == {503: 1}


def test_redirects_and_fixed_responses_are_built_as_aws_builds_them(
    deployment: Deployment,
) -> None:
    status, headers, _ = get(deployment.dns, 8083, "/cart?item=7", Host="shop.example.com")
    assert status == 301
    assert headers["Location"] == "https://shop.example.com:443/cart?item=7"

    status, headers, body = get(deployment.dns, 8084)
    assert (status, headers["Content-Type"], body) == (418, "text/plain", b"short and stout")


def test_bodies_stream_both_ways_on_a_kept_alive_connection(deployment: Deployment) -> None:
    payload = os.urandom(300_000)
    connection = http.client.HTTPConnection(deployment.dns, HTTP_PORT, timeout=10)
    try:
        connection.request("POST", "/upload", body=payload, headers={"X-Forwarded-For": "10.1.2.3"})
        sized = json.loads(connection.getresponse().read())
        connection.request(
            "POST", "/upload", body=iter([payload[:1000], payload[1000:]]), encode_chunked=True
        )
        chunked = json.loads(connection.getresponse().read())
        connection.request("GET", "/stream")
        streamed = connection.getresponse()
        assert streamed.getheader("Transfer-Encoding") == "chunked"
        assert streamed.read() == b"one,two,three"
    finally:
        connection.close()

    digest = hashlib.sha256(payload).hexdigest()
    assert sized["body_sha256"] == chunked["body_sha256"] == digest
    forwarded = sized["headers"]
    assert forwarded["X-Forwarded-For"] == "10.1.2.3, 127.0.0.1"
    assert (forwarded["X-Forwarded-Proto"], forwarded["X-Forwarded-Port"]) == (
        "http",
        str(HTTP_PORT),
    )
    # The Host header as the client sent it (http.client leaves out the default port).
    assert forwarded["Host"] == deployment.dns + ("" if HTTP_PORT == 80 else f":{HTTP_PORT}")


def test_an_instance_target_is_its_private_ip_and_unused_when_stopped(
    aws: Clients, deployment: Deployment
) -> None:
    assert app_of(get(deployment.dns, 8085)[2]) == "i"

    aws.ec2.stop_instances(InstanceIds=[deployment.instance_id])

    assert health(aws, deployment.arns["Instances"])[deployment.instance_id] == (
        "unused",
        "Target.InvalidState",
        "Target is in the stopped state",
    )
    assert get(deployment.dns, 8085)[0] == 503


def test_switching_the_listener_moves_traffic_to_the_other_group_at_once(
    aws: Clients, deployment: Deployment
) -> None:
    listener_arn = deployment.arns["Http"]
    switch = aws.elbv2.modify_listener
    switch(
        ListenerArn=listener_arn,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": deployment.arns["Green"]}],
    )
    try:
        assert {app_of(get(deployment.dns, HTTP_PORT)[2]) for _ in range(3)} == {"g"}
        # Weighted forwarding: all of it to green, none to blue.
        switch(
            ListenerArn=listener_arn,
            DefaultActions=[
                {
                    "Type": "forward",
                    "ForwardConfig": {
                        "TargetGroups": [
                            {"TargetGroupArn": deployment.arns["Blue"], "Weight": 0},
                            {"TargetGroupArn": deployment.arns["Green"], "Weight": 1},
                        ]
                    },
                }
            ],
        )
        assert {app_of(get(deployment.dns, HTTP_PORT)[2]) for _ in range(4)} == {"g"}
        assert app_of(get(deployment.dns, 8081)[2]) == "g"  # a ForwardConfig from the stack
    finally:
        switch(
            ListenerArn=listener_arn,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": deployment.arns["Blue"]}],
        )
    assert {app_of(get(deployment.dns, HTTP_PORT)[2]) for _ in range(4)} == {"a", "b"}


def test_a_new_target_gets_traffic_once_healthy_and_a_deregistered_one_drains(
    aws: Clients, deployment: Deployment
) -> None:
    blue = deployment.arns["Blue"]
    new = App("new").start()
    try:
        aws.elbv2.register_targets(TargetGroupArn=blue, Targets=[new.target])

        # Its first check runs at once (so "registration in progress" is over quickly)...
        assert health(aws, blue)[new.address][:2] in {
            ("initial", "Elb.RegistrationInProgress"),
            ("initial", "Elb.InitialHealthChecking"),
        }
        wait_for(lambda: health(aws, blue)[new.address][1] == "Elb.InitialHealthChecking")
        for _ in range(4):
            get(deployment.dns, HTTP_PORT)
        assert new.hits == []
        # ...and the second one an interval later makes it healthy (threshold 2).
        wait_for(lambda: health(aws, blue)[new.address][0] == "healthy")
        assert "new" in {app_of(get(deployment.dns, HTTP_PORT)[2]) for _ in range(3)}

        # Three slow requests, one per healthy target, are under way when "new" leaves.
        answers: list[int] = []
        slow = [
            threading.Thread(
                target=lambda: answers.append(get(deployment.dns, HTTP_PORT, "/slow?seconds=1")[0])
            )
            for _ in range(3)
        ]
        for thread in slow:
            thread.start()
        wait_for(lambda: "/slow" in new.hits, timeout=2)
        aws.elbv2.deregister_targets(TargetGroupArn=blue, Targets=[new.target])

        assert health(aws, blue)[new.address] == (
            "draining",
            "Target.DeregistrationInProgress",
            "Target deregistration is in progress",
        )
        new.hits.clear()
        assert {app_of(get(deployment.dns, HTTP_PORT)[2]) for _ in range(4)} == {"a", "b"}
        assert new.hits == []
        for thread in slow:
            thread.join()
        assert answers == [200, 200, 200]
        wait_for(lambda: new.address not in health(aws, blue), timeout=4)  # the delay is 2 s
    finally:
        new.stop()


def test_a_health_fault_fails_the_checks_of_a_healthy_app(
    aws: Clients, sandbox: SandboxServer, deployment: Deployment
) -> None:
    faulty = deployment.apps["faulty"]

    assert health(aws, deployment.arns["Green"])[faulty.address] == (
        "unhealthy",
        "Target.FailedHealthChecks",
        "the app never came up",
    )
    armed = control.faults(control.SandboxInfo(sandbox.url, 0, sandbox.port))
    assert [fault["remaining"] < FAULTY_CHECKS for fault in armed] == [True]  # checks used it
    assert {app_of(get(deployment.dns, 8081)[2]) for _ in range(4)} == {"g"}
    assert faulty.hits == []


@pytest.mark.parametrize(
    ("codes", "passing", "failing"),
    [
        ("200", [200], [201, 302]),
        ("200-399", [200, 302, 399], [199, 400]),
        ("200,302", [302], [301]),
    ],
)
def test_a_matcher_accepts_the_codes_it_lists(
    codes: str, passing: list[int], failing: list[int]
) -> None:
    assert all(forwarder.code_matches(codes, status) for status in passing)
    assert not any(forwarder.code_matches(codes, status) for status in failing)


# ---------------------------------------------------------------------------
# stacks of their own


def test_deleting_the_stack_closes_the_balancers_ports(aws: Clients) -> None:
    outputs = create_stack(
        aws,
        "short-lived",
        template(
            {
                "Fixed": listener(
                    HTTP_PORT,
                    {
                        "Type": "fixed-response",
                        "FixedResponseConfig": {"StatusCode": "200", "MessageBody": "up"},
                    },
                )
            }
        ),
    )
    dns = outputs["Dns"]
    assert get(dns, HTTP_PORT)[2] == b"up"

    aws.cloudformation.delete_stack(StackName=outputs["id"])

    assert stack(aws, outputs["id"])["StackStatus"] == "DELETE_COMPLETE"
    assert refused(dns, HTTP_PORT)


def _https_listener(certificate_arn: str) -> dict[str, Any]:
    https = listener(
        443,
        {
            "Type": "fixed-response",
            "FixedResponseConfig": {"StatusCode": "200", "MessageBody": "secure"},
        },
        "HTTPS",
    )
    https["Properties"]["Certificates"] = [{"CertificateArn": certificate_arn}]
    return https


def _listener_failure(aws: Clients, name: str, https: dict[str, Any]) -> str:
    """The stack's status reason for its HTTPS listener, which must have failed."""
    stack_id = aws.cloudformation.create_stack(
        StackName=name, TemplateBody=template({"Https": https})
    )["StackId"]
    try:
        events = aws.cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
        failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
        assert [e["LogicalResourceId"] for e in failed] == ["Https"]
        assert stack(aws, stack_id)["StackStatus"] == "ROLLBACK_COMPLETE"
        return str(failed[0]["ResourceStatusReason"])
    finally:
        aws.cloudformation.delete_stack(StackName=stack_id)


def test_an_https_listener_serves_an_imported_certificate_for_its_domain(aws: Clients) -> None:
    # As an operator brings a certificate: issued elsewhere (here by the sandbox's CA),
    # imported into ACM, ISSUED at once.
    authority = Path(connect_endpoint.ca_bundle()).parent
    issued = certificates.issue(authority, "shop.example.com")
    certificate = aws.acm.import_certificate(
        Certificate=issued.certificate,
        PrivateKey=issued.private_key,
        CertificateChain=issued.chain,
    )["CertificateArn"]
    outputs = create_stack(aws, "secure", template({"Https": _https_listener(certificate)}))
    try:
        trusted = ssl.create_default_context(cafile=str(connect_endpoint.ca_bundle()))
        connection = http.client.HTTPSConnection("shop.example.com", 443, context=trusted)
        connection.sock = trusted.wrap_socket(
            socket.create_connection((outputs["Dns"], 443), timeout=10),
            server_hostname="shop.example.com",
        )  # the load balancer's address, the domain's name
        connection.request("GET", "/")
        assert connection.getresponse().read() == b"secure"
        connection.close()
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            trusted.wrap_socket(
                socket.create_connection((outputs["Dns"], 443), timeout=10),
                server_hostname="www.example.com",
            )
    finally:
        aws.cloudformation.delete_stack(StackName=outputs["id"])
        aws.acm.delete_certificate(CertificateArn=certificate)


def test_a_requested_certificate_is_refused_until_validated_as_elb_refuses_it(
    aws: Clients,
) -> None:
    # ACM issues a requested certificate only once its DNS record validates it; the
    # sandbox validates none, and ELB answers UnsupportedCertificate for a pending one.
    certificate = aws.acm.request_certificate(
        DomainName="shop.example.com", ValidationMethod="DNS"
    )["CertificateArn"]
    try:
        reason = _listener_failure(aws, "pending-certificate", _https_listener(certificate))
        assert (
            f"The certificate '{certificate}' must have a fully-qualified domain name, a "
            "supported signature, and a supported key size." in reason
        )
        assert "Error Code: UnsupportedCertificate" in reason
        assert "ACM status PENDING_VALIDATION" in reason
        described = aws.acm.describe_certificate(CertificateArn=certificate)["Certificate"]
        assert described["Status"] == "PENDING_VALIDATION"
    finally:
        aws.acm.delete_certificate(CertificateArn=certificate)


def test_an_https_listener_with_a_certificate_acm_lacks_fails_as_on_aws(aws: Clients) -> None:
    missing = "arn:aws:acm:eu-west-1:111122223333:certificate/real-one"
    reason = _listener_failure(aws, "foreign-certificate", _https_listener(missing))
    assert f"Certificate '{missing}' not found" in reason
    assert "Error Code: CertificateNotFound" in reason
    assert "HTTPS only with a certificate from the sandbox's own ACM" in reason


def test_a_health_check_interval_below_aws_minimum_is_refused_as_on_aws(aws: Clients) -> None:
    group = target_group([])
    group["Properties"]["HealthCheckIntervalSeconds"] = 1
    del group["Properties"]["HealthCheckTimeoutSeconds"]
    stack_id = aws.cloudformation.create_stack(
        StackName="too-eager", TemplateBody=template({"Group": group})
    )["StackId"]
    try:
        events = aws.cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
        failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
        assert [e["LogicalResourceId"] for e in failed] == ["Group"]
        assert (
            "Value '1' at 'healthCheckIntervalSeconds' failed to satisfy constraint: Member must "
            "have value greater than or equal to 5" in failed[0]["ResourceStatusReason"]
        )
    finally:
        aws.cloudformation.delete_stack(StackName=stack_id)


PRIVILEGED_BIND = """
import json, sys
from hivemind.sandbox import forwarder, runtime
address = runtime.allocate_address([80])
try:
    forwarder.Forwarder(None, "lb", "listener", address, 80)
except forwarder.ListenerUnavailable as error:
    print(json.dumps(str(error)))
"""


def test_a_port_below_1024_without_privileges_fails_saying_how_to_allow_it() -> None:
    if UNPRIVILEGED_PORT_START <= 80:
        pytest.skip("unprivileged processes may bind port 80 on this machine")
    as_user = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    result = subprocess.run(
        [*(as_user if os.geteuid() == 0 else []), sys.executable, "-c", PRIVILEGED_BIND],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    message = json.loads(result.stdout)
    assert "ports below 1024 need root or net.ipv4.ip_unprivileged_port_start<=80" in message
    assert "sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80" in message


# ---------------------------------------------------------------------------
# listener rules, as ALB matches them


def request(
    target: str = "/",
    method: str = "GET",
    host: str | None = "shop.example.com",
    headers: tuple[tuple[str, str], ...] = (),
    source_ip: str = "10.0.0.7",
) -> forwarder.RequestFacts:
    path, _, query = target.partition("?")
    return forwarder.RequestFacts(method, path, query, host, headers, source_ip)


def header(name: str, *values: str) -> dict[str, Any]:
    config = {"HttpHeaderName": name, "Values": list(values)}
    return {"Field": "http-header", "HttpHeaderConfig": config}


STANDBY = header("X-HiveMind-Standby", "Token-*")


@pytest.mark.parametrize(
    ("condition", "matching", "other"),
    [
        # Header names and values case-insensitively, wildcards, any of repeated headers.
        (STANDBY, request(headers=(("x-hivemind-standby", "token-1234"),)), request()),
        (
            STANDBY,
            request(headers=(("X-HiveMind-Standby", "no"), ("X-HiveMind-Standby", "TOKEN-9"))),
            request(headers=(("X-HiveMind-Standby", "a-token-1"),)),
        ),
        (
            header("X-Version", "v?"),
            request(headers=(("X-Version", "v2"),)),
            request(headers=(("X-Version", "v10"),)),
        ),
        # Paths case-sensitively, without the query string; the legacy Values form too.
        (
            {"Field": "path-pattern", "PathPatternConfig": {"Values": ["/api/*"]}},
            request("/api/users?page=2"),
            request("/API/users"),
        ),
        ({"Field": "path-pattern", "Values": ["/health"]}, request("/health"), request("/healthz")),
        # Host names case-insensitively.
        (
            {"Field": "host-header", "HostHeaderConfig": {"Values": ["*.example.com"]}},
            request(host="Shop.Example.COM"),
            request(host="example.com"),
        ),
        (
            {"Field": "host-header", "Values": ["api.example.com"]},
            request(host="API.example.com"),
            request(host=None),
        ),
        # Methods exactly.
        (
            {
                "Field": "http-request-method",
                "HttpRequestMethodConfig": {"Values": ["POST", "PUT"]},
            },
            request(method="PUT"),
            request(method="GET"),
        ),
        # Query strings: key/value pairs (or any key) case-insensitively, decoded, with a
        # backslash for a literal wildcard character.
        (
            {
                "Field": "query-string",
                "QueryStringConfig": {"Values": [{"Key": "version", "Value": "b*"}]},
            },
            request("/?lang=en&Version=Beta"),
            request("/?other=beta"),
        ),
        (
            {"Field": "query-string", "QueryStringConfig": {"Values": [{"Value": "what\\?"}]}},
            request("/?q=what%3F"),
            request("/?q=whats"),
        ),
        # The connection's source address, not X-Forwarded-For.
        (
            {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/24", "2001:db8::/32"]}},
            request(),
            request(source_ip="10.0.1.7", headers=(("X-Forwarded-For", "10.0.0.7"),)),
        ),
    ],
)
def test_a_rule_condition_matches_as_alb_matches_it(
    condition: dict[str, Any], matching: forwarder.RequestFacts, other: forwarder.RequestFacts
) -> None:
    assert forwarder.rule_matches([condition], matching)
    assert not forwarder.rule_matches([condition], other)


def test_a_rule_matches_when_every_condition_does() -> None:
    conditions = [STANDBY, {"Field": "path-pattern", "Values": ["/api/*"]}]
    standby = (("X-HiveMind-Standby", "token-1"),)

    assert forwarder.rule_matches(conditions, request("/api/users", headers=standby))
    assert not forwarder.rule_matches(conditions, request("/", headers=standby))


@pytest.mark.parametrize(
    ("condition", "named"),
    [
        ({"Field": "sni-host", "Values": ["a.example.com"]}, "condition type 'sni-host'"),
        (
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": "X-A", "RegexValues": ["^a$"]},
            },
            "condition http-header with RegexValues",
        ),
        ({"Field": "query-string"}, "condition query-string without a QueryStringConfig"),
        (
            {"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.300/8"]}},
            "condition source-ip",
        ),
    ],
)
def test_a_condition_the_sandbox_cannot_evaluate_is_never_skipped(
    condition: dict[str, Any], named: str
) -> None:
    # Even after a condition that does not match: the rule cannot be decided.
    with pytest.raises(forwarder.UnsupportedCondition, match=named):
        forwarder.rule_matches([header("X-Absent", "x"), condition], request())


# ---------------------------------------------------------------------------
# blue-green: the standby rule, the switch and a rolling update under load

STANDBY_HEADER = "X-HiveMind-Standby"
STANDBY_TOKEN = "9f2c7e-standby-token"
DELAY = 2  # the groups' deregistration delay (seconds)


def standby_rule(group: str, token: str = STANDBY_TOKEN, priority: int = 10) -> dict[str, Any]:
    return {
        "Type": "AWS::ElasticLoadBalancingV2::ListenerRule",
        "Properties": {
            "ListenerArn": {"Ref": "Http"},
            "Priority": priority,
            "Conditions": [header(STANDBY_HEADER, token)],
            "Actions": [forward(group)],
        },
    }


def forward_to(group_arn: str) -> dict[str, Any]:
    return {"Type": "forward", "TargetGroupArn": group_arn}


@dataclass
class BlueGreen:
    """A stack shaped like HiveMind's: listener `Http` forwards to `Blue` (apps x and y),
    and its `StandbyRule` (priority 10) forwards requests with the standby header and
    token to `Green` (apps p and q)."""

    dns: str
    arns: dict[str, str]
    apps: dict[str, App]

    def healthy(self, aws: Clients) -> bool:
        states = {
            **health(aws, self.arns["Blue"]),
            **health(aws, self.arns["Green"]),
        }
        return all(states.get(app.address, ("",))[0] == "healthy" for app in self.apps.values())


@pytest.fixture(scope="module")
def colours(aws: Clients) -> Iterator[BlueGreen]:
    apps = {name: App(name).start() for name in ("x", "y", "p", "q")}
    body = template(
        {
            "Blue": target_group([apps["x"].target, apps["y"].target]),
            "Green": target_group([apps["p"].target, apps["q"].target]),
            "Http": listener(HTTP_PORT, forward("Blue")),
            "StandbyRule": standby_rule("Green"),
        }
    )
    outputs = create_stack(aws, "blue-green", body)
    colours = BlueGreen(outputs.pop("Dns"), outputs, apps)
    wait_for(lambda: colours.healthy(aws))
    yield colours
    aws.cloudformation.delete_stack(StackName=outputs["id"])
    for app in apps.values():
        app.stop()


class RequestLoop:
    """`clients` threads sending GET / through a listener until the block ends; `answers`
    holds (status, app or error) of every request."""

    def __init__(self, address: str, port: int, clients: int = 2, **headers: str) -> None:
        self.clients = clients
        self.answers: list[tuple[int, str]] = []
        self._target = (address, port)
        self._headers = headers
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> RequestLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                status, _, body = get(*self._target, **self._headers)
                self.answers.append((status, app_of(body) if status == 200 else body.decode()))
            except Exception as error:  # the client saw no answer at all
                self.answers.append((0, repr(error)))
            time.sleep(0.01)

    def apps_since(self, count: int) -> set[str]:
        return {app for status, app in self.answers[count:] if status == 200}

    @property
    def failures(self) -> list[tuple[int, str]]:
        return [answer for answer in self.answers if answer[0] != 200]


def test_the_standby_header_reaches_the_standby_colour_and_nothing_else_does(
    colours: BlueGreen,
) -> None:
    dns = colours.dns

    with_token = {get(dns, HTTP_PORT, **{STANDBY_HEADER: STANDBY_TOKEN})[2] for _ in range(4)}
    assert {app_of(body) for body in with_token} == {"p", "q"}
    # Header names and values compare case-insensitively, as on AWS.
    assert app_of(get(dns, HTTP_PORT, **{"x-hivemind-standby": STANDBY_TOKEN.upper()})[2]) in {
        "p",
        "q",
    }
    without = {app_of(get(dns, HTTP_PORT)[2]) for _ in range(4)}
    assert without == {"x", "y"}
    assert app_of(get(dns, HTTP_PORT, **{STANDBY_HEADER: "guessed"})[2]) in {"x", "y"}


def test_a_rule_the_sandbox_cannot_evaluate_answers_500_naming_it(
    aws: Clients, colours: BlueGreen, caplog: pytest.LogCaptureFixture
) -> None:
    listener_arn = colours.arns["Http"]
    created = aws.elbv2.create_rule(
        ListenerArn=listener_arn,
        Priority=5,
        Conditions=[header("X-Canary", "on")],
        Actions=[forward_to(colours.arns["Green"])],
    )
    rule_arn = created["Rules"][0]["RuleArn"]
    # AWS also matches by regular expression, which moto cannot store (it fails on
    # RegexValues): the stored rule gets one directly, as a newer moto would store it.
    from moto.elbv2.models import elbv2_backends

    backend = elbv2_backends["123456789012"][aws.region]
    balancer = backend.load_balancers[colours.arns["Balancer"]]
    rule = balancer.listeners[listener_arn].rules[rule_arn]
    rule.conditions = [
        {
            "Field": "http-header",
            "HttpHeaderConfig": {"HttpHeaderName": "X-Canary", "RegexValues": ["^on$"]},
        }
    ]
    try:
        with caplog.at_level(logging.ERROR, logger="hivemind.sandbox.forwarder"):
            answers = [get(colours.dns, HTTP_PORT) for _ in range(3)]
    finally:
        aws.elbv2.delete_rule(RuleArn=rule_arn)

    for status, headers, body in answers:
        assert (status, headers["Content-Type"]) == (500, "text/plain")
        assert (
            f"cannot evaluate listener rule {rule_arn} (priority 5): condition http-header "
            "with RegexValues" in body.decode()
        )
    logged = [r.getMessage() for r in caplog.records if rule_arn in r.getMessage()]
    assert len(logged) == 1  # once, not once per request
    assert get(colours.dns, HTTP_PORT)[0] == 200  # the rule is gone


def test_switching_colours_under_load_fails_no_request(aws: Clients, colours: BlueGreen) -> None:
    dns, blue, green = colours.dns, colours.arns["Blue"], colours.arns["Green"]

    def switch(active: str, standby: str) -> None:
        # Between the two calls no listener uses the old active group: when the health
        # monitor looks then, its targets go unused, and through initial health checks
        # again after the second call (the rule's requests fail open to them meanwhile).
        aws.elbv2.modify_listener(
            ListenerArn=colours.arns["Http"], DefaultActions=[forward_to(active)]
        )
        aws.elbv2.modify_rule(RuleArn=colours.arns["StandbyRule"], Actions=[forward_to(standby)])

    with (
        RequestLoop(dns, HTTP_PORT) as public,
        RequestLoop(dns, HTTP_PORT, **{STANDBY_HEADER: STANDBY_TOKEN}) as standby,
    ):
        try:
            for _ in range(3):
                for active, standby_group, serving in ((green, blue, "pq"), (blue, green, "xy")):
                    seen = len(public.answers)
                    switch(active, standby_group)
                    assert app_of(get(dns, HTTP_PORT)[2]) in serving  # at once
                    wait_for(lambda s=seen, a=serving: bool(public.apps_since(s) & set(a)))
                    time.sleep(0.3)
        finally:
            switch(blue, green)

    assert public.failures == [] and standby.failures == []
    assert {app for _, app in public.answers} == {"x", "y", "p", "q"}
    assert {app for _, app in standby.answers} == {"x", "y", "p", "q"}


def test_a_target_leaves_and_comes_back_under_load_without_a_failed_request(
    aws: Clients, colours: BlueGreen
) -> None:
    blue, y = colours.arns["Blue"], colours.apps["y"]
    wait_for(lambda: colours.healthy(aws))  # x and y, after a switch that left them unused

    with RequestLoop(colours.dns, HTTP_PORT) as loop:
        wait_for(lambda: loop.apps_since(0) == {"x", "y"}, timeout=5)
        aws.elbv2.deregister_targets(TargetGroupArn=blue, Targets=[y.target])
        routed_before = len(y.hits)
        assert health(aws, blue)[y.address][0] == "draining"
        wait_for(lambda: y.address not in health(aws, blue), timeout=DELAY + 5)
        # Only requests already on their way when it left reached it.
        assert len(y.hits) - routed_before <= loop.clients

        y.stop(release=False)  # the update: the app is down for a while
        time.sleep(0.5)
        y.start()
        y.hits.clear()
        aws.elbv2.register_targets(TargetGroupArn=blue, Targets=[y.target])
        deadline = time.monotonic() + SETTLE
        while True:
            hits = list(y.hits)  # before the state: these came while it was in that state
            state = health(aws, blue)[y.address][0]
            if state == "healthy":
                break
            assert hits == [], f"y got requests while {state}"
            assert time.monotonic() < deadline, "y never got healthy"
            time.sleep(0.1)
        wait_for(lambda: y.hits != [], timeout=5)

    assert loop.failures == []
    assert len(loop.answers) > 50  # the loop kept sending throughout


def test_a_deregistered_target_drains_as_soon_as_its_requests_are_over(
    aws: Clients, colours: BlueGreen
) -> None:
    blue, y = colours.arns["Blue"], colours.apps["y"]
    wait_for(lambda: colours.healthy(aws))
    set_delay(aws, blue, 60)  # the connections close long before the delay ends
    try:
        # A request in flight when the target leaves finishes; then its connection closes.
        slow: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: slow.append(get(colours.dns, HTTP_PORT, "/slow?seconds=1.5")[0])
            )
            for _ in range(2)  # one per target (round robin)
        ]
        for thread in threads:
            thread.start()
        wait_for(lambda: "/slow" in y.hits, timeout=5)
        aws.elbv2.deregister_targets(TargetGroupArn=blue, Targets=[y.target])
        assert y.connections >= 1
        for thread in threads:
            thread.join()
        assert slow == [200, 200]
        wait_for(lambda: y.connections == 0, timeout=5)
        # AWS shows the target draining for the whole delay even so.
        assert health(aws, blue)[y.address][0] == "draining"

        # An idle kept-alive connection closes as soon as the target leaves.
        aws.elbv2.register_targets(TargetGroupArn=blue, Targets=[y.target])
        wait_for(lambda: health(aws, blue)[y.address][0] == "healthy")
        wait_for(lambda: get(colours.dns, HTTP_PORT) and y.connections == 1)
        aws.elbv2.deregister_targets(TargetGroupArn=blue, Targets=[y.target])
        wait_for(lambda: y.connections == 0, timeout=5)
        assert health(aws, blue)[y.address][0] == "draining"
    finally:
        set_delay(aws, blue, DELAY)
        aws.elbv2.register_targets(TargetGroupArn=blue, Targets=[y.target])
        wait_for(lambda: colours.healthy(aws))


def set_delay(aws: Clients, group_arn: str, seconds: int) -> None:
    aws.elbv2.modify_target_group_attributes(
        TargetGroupArn=group_arn,
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(seconds)}],
    )


# ---------------------------------------------------------------------------
# a stack's listener rule


def rule_stack(blue: App, green: App, rule: dict[str, Any] | None) -> str:
    """Groups `Blue` and `Green` of one app each, a listener answering "default" itself,
    and `rule` as `StandbyRule`."""
    return template(
        {
            "Blue": target_group([blue.target]),
            "Green": target_group([green.target]),
            "Http": listener(
                HTTP_PORT,
                {
                    "Type": "fixed-response",
                    "FixedResponseConfig": {"StatusCode": "200", "MessageBody": "default"},
                },
            ),
            **({"StandbyRule": rule} if rule is not None else {}),
        }
    )


def test_a_stacks_listener_rule_creates_updates_in_place_and_deletes(
    aws: Clients, colours: BlueGreen
) -> None:
    apps = colours.apps

    def body(rule: dict[str, Any] | None) -> str:
        return rule_stack(apps["x"], apps["p"], rule)

    def answer(token: str | None) -> str:
        headers = {STANDBY_HEADER: token} if token else {}
        status, _, text = get(dns, HTTP_PORT, **headers)
        assert status == 200
        return "default" if text == b"default" else app_of(text)

    def update(rule: dict[str, Any] | None) -> None:
        aws.cloudformation.update_stack(StackName=stack_id, TemplateBody=body(rule))
        described = stack(aws, stack_id)
        assert described["StackStatus"] == "UPDATE_COMPLETE", described.get("StackStatusReason")

    outputs = create_stack(aws, "standby-rule", body(standby_rule("Green", "one")))
    dns, stack_id, rule_arn = outputs["Dns"], outputs["id"], outputs["StandbyRule"]
    try:
        assert (answer("one"), answer(None)) == ("p", "default")

        # New conditions and another target group: the same rule, changed.
        update(standby_rule("Blue", "two"))
        assert (answer("two"), answer("one")) == ("x", "default")
        # A new priority too (SetRulePriorities).
        update(standby_rule("Blue", "two", priority=20))
        rules = aws.elbv2.describe_rules(ListenerArn=outputs["Http"])["Rules"]
        assert [(r["RuleArn"], r["Priority"]) for r in rules if not r["IsDefault"]] == [
            (rule_arn, "20")
        ]
        assert answer("two") == "x"

        # A rule the forwarder could not evaluate fails the update, which rolls back.
        regex = standby_rule("Green")
        regex["Properties"]["Conditions"] = [
            {
                "Field": "http-header",
                "HttpHeaderConfig": {"HttpHeaderName": STANDBY_HEADER, "RegexValues": ["^t"]},
            }
        ]
        aws.cloudformation.update_stack(StackName=stack_id, TemplateBody=body(regex))
        assert stack(aws, stack_id)["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
        failed = [e for e in events(aws, stack_id) if e["ResourceStatus"] == "UPDATE_FAILED"]
        assert "condition http-header with RegexValues" in failed[0]["ResourceStatusReason"]
        assert answer("two") == "x"

        # Gone from the template: gone from the listener.
        update(None)
        rules = aws.elbv2.describe_rules(ListenerArn=outputs["Http"])["Rules"]
        assert [r["IsDefault"] for r in rules] == [True]
        assert answer("two") == "default"
        update(standby_rule("Green", "three"))
        assert answer("three") == "p"
    finally:
        aws.cloudformation.delete_stack(StackName=stack_id)

    assert stack(aws, stack_id)["StackStatus"] == "DELETE_COMPLETE"
    assert refused(dns, HTTP_PORT)
