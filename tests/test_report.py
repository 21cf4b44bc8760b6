"""Deployment reports: each section shows what the record holds, for a deployment that
is up, one that failed, and one that is gone; the HTML page stands alone and escapes
what it shows; `hivemind report ID` writes the file and says where."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from harness import make_spec, run_cli

from hivemind.cli import COMMANDS, cli
from hivemind.records import (
    CheckResult,
    DeploymentState,
    InstanceRelease,
    RecordStore,
    ResourceRecord,
    SourceRecord,
    StageResult,
    Status,
)
from hivemind.report import (
    ActualCosts,
    Diagram,
    Report,
    build_report,
    render_html,
    render_report,
    write_report,
)
from hivemind.spec import DeploymentSpec, Provenance, Source, field_paths

ID = "shop-k2j4m6p7q3"
STACK = f"hivemind-{ID}"
FOLDER = Path("/home/op/.hivemind/deployments") / ID
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
RELEASE = "20261130100000-abc1234"
COMMIT = "abc1234def5678900000"
SCRIPT = "<script>alert('owned')</script>"


def stage(name: str, status: str, at: str, seconds: float, error: str | None = None) -> StageResult:
    return StageResult(
        name=name,
        status=status,  # type: ignore[arg-type]
        started_at=f"2026-11-30T{at}+00:00",
        finished_at=f"2026-11-30T{at}+00:00",
        seconds=seconds,
        error=error,
    )


def resource(logical: str, kind: str, physical: str, usd: float = 0.0) -> ResourceRecord:
    return ResourceRecord(
        logical_id=logical, resource_type=kind, physical_id=physical, monthly_usd=usd
    )


def with_provenance(spec: DeploymentSpec) -> DeploymentSpec:
    return spec.model_copy(
        update={
            "provenance": {
                "app.port": Provenance(
                    source=Source.DETECTED, evidence="app.py:93", note="app.run(port=8000)"
                ),
                "region": Provenance(source=Source.USER, evidence="--region"),
                "compute.instance_type": Provenance(source=Source.DEFAULT),
            }
        }
    )


def stage1_spec() -> DeploymentSpec:
    return with_provenance(
        make_spec("stage-1", "postgres", False, access__ssh_cidr="203.0.113.7/32")
    )


def production_spec() -> DeploymentSpec:
    return with_provenance(make_spec("production", "postgres", True))


def stage1_deployed() -> DeploymentState:
    """Stage-1 with PostgreSQL: one instance in a public subnet, no NAT, no replica."""
    return DeploymentState(
        deployment_id=ID,
        app="shop",
        region="eu-west-1",
        profile="stage-1",
        stack_name=STACK,
        status=Status.DEPLOYED,
        created_at="2026-11-30T10:00:00+00:00",
        stages=[
            stage("synth", "ok", "10:00:01", 7.9),
            stage("provision", "ok", "10:00:10", 422.0),
            stage("deploy", "ok", "10:07:20", 61.4),
            stage("verify", "ok", "10:08:22", 2.5),
        ],
        outputs={
            "VpcId": "vpc-0a1b2c",
            "BlueInstanceIds": "i-0aaa111",
            "GreenInstanceIds": "-",
            "ActiveColor": "blue",
            "LoadBalancerDns": "shop-alb-1.eu-west-1.elb.amazonaws.com",
            "DatabaseEndpoint": "shop-db.abc.eu-west-1.rds.amazonaws.com",
            "DatabasePort": "5432",
            "DatabaseSecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop-db-Xy",
            "DashboardName": f"HiveMind-{ID}",
            "AppLogGroup": f"/hivemind/{ID}/app",
        },
        resources=[
            resource("WebBlue1F00D", "AWS::EC2::Instance", "i-0aaa111", 15.18),
            resource(
                "WebLoadBalancerBEEF",
                "AWS::ElasticLoadBalancingV2::LoadBalancer",
                "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/x",
                22.27,
            ),
            resource("DatabaseInstanceC0DE", "AWS::RDS::DBInstance", "shop-db", 13.14),
            resource("NetworkVpc8A9B", "AWS::EC2::VPC", "vpc-0a1b2c"),
        ],
        monthly_usd=50.59,
        url="http://shop-alb-1.eu-west-1.elb.amazonaws.com",
        source=SourceRecord(ref="/src/shop", release_id=RELEASE, commit=COMMIT, files=42),
        releases=[
            InstanceRelease(
                instance_id="i-0aaa111",
                address="198.51.100.20",
                release_id=RELEASE,
                commit=COMMIT,
                seconds={"upload": 1.25, "build": 41.5, "start": 2.0, "healthy": 3.5},
            )
        ],
        checks=[
            CheckResult(
                name="http health",
                status="passed",
                detail="GET http://shop-alb-1/health: HTTP 200 in 14 ms",
                seconds=0.014,
            ),
            CheckResult(
                name="database",
                status="passed",
                detail="shop-db:5432 accepts connections from i-0aaa111",
                seconds=0.2,
            ),
            CheckResult(
                name="tls",
                status="not_applicable",
                detail="HTTPS is off (no certificate in the spec)",
            ),
        ],
    )


def production_deployed() -> DeploymentState:
    """Production: two instances in two AZs, NAT per AZ, a Multi-AZ database with a
    read replica, the Instance Connect Endpoint, X-Ray."""
    return DeploymentState(
        deployment_id=ID,
        app="shop",
        region="eu-west-1",
        profile="production",
        stack_name=STACK,
        status=Status.DEPLOYED,
        stages=[
            stage("synth", "ok", "10:00:01", 8.2),
            stage("provision", "ok", "10:00:20", 1342.0),
            stage("deploy", "ok", "10:23:00", 95.0),
            stage("verify", "ok", "10:24:40", 3.1),
        ],
        outputs={
            "VpcId": "vpc-0prod",
            "BlueInstanceIds": "i-0aaa111,i-0bbb222",
            "GreenInstanceIds": "-",
            "ActiveColor": "blue",
            "LoadBalancerDns": "shop-alb-2.eu-west-1.elb.amazonaws.com",
            "ConnectEndpointId": "eice-0123456789abcdef0",
            "DatabaseEndpoint": "shop-db.abc.eu-west-1.rds.amazonaws.com",
            "DatabasePort": "5432",
            "DatabaseReplicaEndpoint": "shop-db-replica.abc.eu-west-1.rds.amazonaws.com",
            "DashboardName": f"HiveMind-{ID}",
            "AppLogGroup": f"/hivemind/{ID}/app",
            "XRayGroup": f"hivemind-{ID}",
        },
        resources=[
            resource("WebBlue1F00D", "AWS::EC2::Instance", "i-0aaa111", 15.18),
            resource("WebBlue2F00E", "AWS::EC2::Instance", "i-0bbb222", 15.18),
            resource("NetworkVpcpublicSubnet1NATGateway", "AWS::EC2::NatGateway", "nat-01", 32.85),
            resource("NetworkVpcpublicSubnet2NATGateway", "AWS::EC2::NatGateway", "nat-02", 32.85),
            resource("DatabaseInstanceC0DE", "AWS::RDS::DBInstance", "shop-db", 52.56),
            resource("DatabaseReplicaD00D", "AWS::RDS::DBInstance", "shop-db-replica", 26.28),
            resource("MonitoringCpuAlarm", "AWS::CloudWatch::Alarm", "shop-cpu", 0.10),
        ],
        monthly_usd=175.0,
        url="http://shop-alb-2.eu-west-1.elb.amazonaws.com",
        releases=[
            InstanceRelease(
                instance_id=instance,
                address=address,
                release_id=RELEASE,
                commit=COMMIT,
                seconds={"upload": 1.1, "build": 38.0, "start": 2.1, "healthy": 2.9},
            )
            for instance, address in (("i-0aaa111", "10.0.2.10"), ("i-0bbb222", "10.0.3.11"))
        ],
        checks=[CheckResult(name="http health", status="passed", detail="HTTP 200")],
    )


def failed_at_deploy() -> DeploymentState:
    """The build failed on the instance; the error carries markup that must stay text."""
    return stage1_deployed().model_copy(
        update={
            "status": Status.FAILED,
            "failed_stage": "deploy",
            "stages": [
                stage("synth", "ok", "10:00:01", 7.9),
                stage("provision", "ok", "10:00:10", 422.0),
                stage("deploy", "failed", "10:07:20", 48.0, f"pip install exited 1: {SCRIPT}"),
            ],
            "releases": [],
            "checks": [],
            "url": "http://shop-alb-1.eu-west-1.elb.amazonaws.com",
        }
    )


def destroyed() -> DeploymentState:
    return production_deployed().model_copy(
        update={"status": Status.DESTROYED, "note": "destroyed", "releases": [], "checks": []}
    )


def report(state: DeploymentState, spec: DeploymentSpec, **options: object) -> Report:
    defaults: dict[str, object] = {"record_folder": FOLDER, "now": NOW}
    return build_report(state, spec, **{**defaults, **options})  # type: ignore[arg-type]


def section(state: DeploymentState, spec: DeploymentSpec, key: str, **options: object) -> str:
    return report(state, spec, **options).section(key).markdown()


def diagram(state: DeploymentState, spec: DeploymentSpec) -> Diagram:
    block = report(state, spec).section("architecture").blocks[0]
    assert isinstance(block, Diagram)
    return block


# --- summary and timeline -----------------------------------------------------------


def test_the_summary_says_what_is_deployed_and_where() -> None:
    text = section(stage1_deployed(), stage1_spec(), "summary")
    assert "shop is deployed and answers at" in text
    for value in ("stage-1", "eu-west-1", STACK, "http://shop-alb-1.eu-west-1.elb.amazonaws.com",
                  RELEASE, "/src/shop", COMMIT[:12], "$50.59"):  # fmt: skip
        assert value in text.replace("\\$", "$"), value


def test_the_timeline_has_each_stage_its_duration_and_the_error() -> None:
    text = section(failed_at_deploy(), stage1_spec(), "timeline")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "UTC" in line]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["synth", "provision", "deploy"]
    assert "| provision | ok | 2026-11-30 10:00:10 UTC | 7 min 02 s |" in text
    assert "| deploy | failed | 2026-11-30 10:07:20 UTC | 48.0 s | pip install exited 1:" in text
    assert "3 stage runs, 7 min 58 s in all." in text


def test_the_timeline_shows_the_end_of_the_event_log() -> None:
    events = [f"2026-11-30T10:00:{i:02d}+00:00 event {i}" for i in range(45)]
    text = section(stage1_deployed(), stage1_spec(), "timeline", events=events)
    assert "The last 30 of 45 lines of `events.log`" in text
    assert "event 44" in text and "event 15" in text and "event 14\n" not in text


# --- architecture -------------------------------------------------------------------


def test_stage1_diagram_has_one_public_instance_and_a_single_az_database() -> None:
    chart = diagram(stage1_deployed(), stage1_spec())
    assert set(chart.nodes()) == {"users", "alb", "blue_az1", "db", "operator", "cloudwatch"}
    source = chart.mermaid()
    assert source.startswith("flowchart LR")
    assert 'subgraph az1["AZ 1 · public subnet"]' in source
    assert "1 x t3.small<br/>i-0aaa111" in source
    assert "RDS PostgreSQL 16<br/>db.t3.micro · 20 GiB<br/>single-AZ" in source
    assert "Multi-AZ" not in source
    assert 'users -->|"HTTP :80"| alb' in source
    assert 'alb -->|"HTTP :8000"| blue_az1' in source
    assert 'blue_az1 -->|"TCP :5432"| db' in source
    assert 'operator -.->|"SSH from 203.0.113.7/32"| blue_az1' in source
    assert "dashboard HiveMind-shop-k2j4m6p7q3" in source


def test_production_diagram_has_two_azs_nat_the_replica_the_endpoint_and_xray() -> None:
    chart = diagram(production_deployed(), production_spec())
    assert set(chart.nodes()) == {
        "users", "alb", "blue_az1", "blue_az2", "nat1", "nat2", "internet", "operator",
        "eice", "db", "replica", "cloudwatch", "xray",
    }  # fmt: skip
    source = chart.mermaid()
    assert 'subgraph vpc["VPC vpc-0prod"]' in source
    assert 'subgraph az2["AZ 2 · private subnet"]' in source
    assert "blue instances, AZ 2 (active)<br/>1 x t3.small<br/>i-0bbb222" in source
    assert "Multi-AZ" in source and "single-AZ" not in source
    assert 'db -.->|"replication"| replica' in source
    assert 'blue_az2 -.->|"egress"| nat2' in source
    assert 'eice -.->|"SSH"| blue_az1' in source
    assert "1 alarms" in source and "group hivemind-shop-k2j4m6p7q3" in source


def test_no_database_no_https_no_xray_means_no_such_nodes() -> None:
    spec = make_spec("stage-1", "none", False)
    state = stage1_deployed().model_copy(
        update={"outputs": {k: v for k, v in stage1_deployed().outputs.items()
                            if not k.startswith("Database")}}
    )  # fmt: skip
    chart = diagram(state, spec)
    assert {"db", "replica", "xray", "nat1", "eice", "operator"}.isdisjoint(chart.nodes())
    assert "TCP :" not in chart.mermaid()


def test_before_the_stack_exists_the_diagram_is_the_plan() -> None:
    spec = production_spec().model_copy(
        update={"access": production_spec().access.model_copy(
            update={"certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/abc-1",
                    "domain": "shop.example.com"})}
    )  # fmt: skip
    state = DeploymentState(
        deployment_id=ID, app="shop", region="eu-west-1", profile="production",
        stack_name=STACK, status=Status.FAILED, failed_stage="synth",
        stages=[stage("synth", "failed", "10:00:01", 9.0, "AwsSolutions-EC23 on WebSg")],
    )  # fmt: skip
    chart = diagram(state, spec)
    assert chart.caption == "As planned from the spec: the stack has not been created."
    assert {"blue_az1", "blue_az2", "nat1", "nat2", "eice", "replica"} <= set(chart.nodes())
    assert "HTTPS :443 (HTTP :80 redirects)" in chart.mermaid()
    resources = section(state, spec, "resources")
    assert "No resources are recorded" in resources

    planned_stage1 = diagram(state.model_copy(update={"profile": "stage-1"}), stage1_spec())
    assert {"blue_az1", "db", "operator"} <= set(planned_stage1.nodes())
    assert {"blue_az2", "nat1", "eice", "replica"}.isdisjoint(planned_stage1.nodes())


def test_mermaid_labels_cannot_be_broken_out_of() -> None:
    state = production_deployed()
    hostile = '"] --> evil["x'
    outputs = {**state.outputs, "LoadBalancerDns": hostile, "DashboardName": "a|b#c<d>`e`"}
    source = diagram(state.model_copy(update={"outputs": outputs}), production_spec()).mermaid()
    node = re.compile(r'^\s*\w+(\[|\(|\[\(|\(\[)"[^"\n]*"(\]|\)|\)\]|\]\))$')
    edge = re.compile(r'^\s*\w+ -\.?->(\|"[^"|\n]*"\|)? \w+$')
    group = re.compile(r'^\s*(subgraph \w+\["[^"\n]*"\]|end|flowchart LR)$')
    for line in source.splitlines():
        assert node.match(line) or edge.match(line) or group.match(line), line
    assert "#quot;] --#gt; evil[#quot;x" in source
    assert "a#124;b#35;c#lt;d#gt;#96;e#96;" in source
    assert "evil[" not in source.replace("evil[#quot;", "")


def test_the_diagram_placement_rules_match_the_constructs() -> None:
    from hivemind import report as module
    from hivemind_constructs.network import AZ_COUNT
    from hivemind_constructs.stack import NAT_GATEWAYS

    assert module.AVAILABILITY_ZONES == AZ_COUNT
    assert dict(module.PLANNED_NAT_GATEWAYS) == NAT_GATEWAYS


# --- resources, configuration, verification ----------------------------------------


def test_resources_list_type_ids_and_monthly_cost_with_the_total() -> None:
    text = section(stage1_deployed(), stage1_spec(), "resources")
    assert f"4 resources are in the stack `{STACK}`" in text
    assert "| AWS::EC2::Instance | `WebBlue1F00D` | `i-0aaa111` | \\$15.18 |" in text
    assert "| AWS::RDS::DBInstance | `DatabaseInstanceC0DE` | `shop-db` | \\$13.14 |" in text
    assert "| AWS::EC2::VPC | `NetworkVpc8A9B` | `vpc-0a1b2c` | - |" in text
    assert "| Total | 4 resources |  | \\$50.59 |" in text


def test_configuration_shows_every_spec_field_with_its_provenance() -> None:
    spec = stage1_spec().model_copy(update={"notes": ("sqlite is a file on one instance",)})
    text = section(stage1_deployed(), spec, "configuration")
    for path in field_paths():
        assert f"| `{path}` |" in text, path
    assert "| `app.port` | 8000 | detected (app.py:93): app.run(port=8000) |" in text
    assert "| `region` | eu-west-1 | user (--region) |" in text
    assert "| `compute.instance_type` | t3.small | default |" in text
    assert "| `database.engine` | postgres | not recorded |" in text
    assert "- sqlite is a file on one instance" in text


def test_verification_shows_each_check_and_each_instances_deploy_steps() -> None:
    text = section(stage1_deployed(), stage1_spec(), "verification")
    assert "QA checks: 2 passed, 1 not applicable." in text
    assert (
        "| http health | passed | GET http://shop-alb-1/health: HTTP 200 in 14 ms | 14 ms |" in text
    )
    assert "| tls | not applicable | HTTPS is off (no certificate in the spec) | - |" in text
    assert (
        "| instance | address | release | commit | upload | build | start | healthy | total |"
        in text
    )
    assert (
        f"| `i-0aaa111` | 198.51.100.20 | `{RELEASE}` | {COMMIT[:12]} "
        "| 1.2 s | 41.5 s | 2.0 s | 3.5 s | 48.2 s |"
    ) in text


def test_a_failed_check_shows_its_reason() -> None:
    state = stage1_deployed().model_copy(
        update={"checks": [CheckResult(name="http /", status="failed",
                                       detail="GET http://shop/: HTTP 502 in 3 ms")]}
    )  # fmt: skip
    text = section(state, stage1_spec(), "verification")
    assert "QA checks: 1 failed." in text
    assert "| http / | failed | GET http://shop/: HTTP 502 in 3 ms |" in text


# --- access -------------------------------------------------------------------------


def test_production_is_reached_through_the_instance_connect_endpoint() -> None:
    text = section(production_deployed(), production_spec(), "access")
    dashboard = (
        "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        f"#dashboards:name=HiveMind-{ID}"
    )
    assert f"[HiveMind-{ID}](<{dashboard}>)" in text
    key, known = FOLDER / "ssh" / "id_ed25519", FOLDER / "ssh" / "known_hosts"
    assert (
        f"ssh -i {key} -o IdentitiesOnly=yes -o UserKnownHostsFile={known} "
        "-o StrictHostKeyChecking=yes -o 'ProxyCommand=aws ec2-instance-connect open-tunnel "
        "--instance-id i-0bbb222 --instance-connect-endpoint-id eice-0123456789abcdef0 "
        "--region eu-west-1' ec2-user@10.0.3.11"
    ) in text
    assert (
        "aws ec2-instance-connect ssh --instance-id i-0aaa111 --connection-type eice "
        f"--private-key-file {key} --os-user ec2-user --region eu-west-1"
    ) in text
    assert f"aws logs tail /hivemind/{ID}/app --follow --region eu-west-1" in text
    assert "shop-db-replica.abc.eu-west-1.rds.amazonaws.com" in text


def test_stage1_is_reached_at_its_public_address_from_the_operators_range() -> None:
    text = section(stage1_deployed(), stage1_spec(), "access")
    assert "SSH is open to 203.0.113.7/32 only." in text
    assert "-o StrictHostKeyChecking=yes ec2-user@198.51.100.20" in text
    assert "open-tunnel" not in text
    assert "arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop-db-Xy" in text


def test_another_ssh_port_is_used_everywhere() -> None:
    text = section(production_deployed(), production_spec(), "access", ssh_port=2222)
    assert "-o StrictHostKeyChecking=yes -p 2222 -o 'ProxyCommand=" in text
    assert "--region eu-west-1 --remote-port 2222' ec2-user@10.0.2.10" in text


def test_a_key_folder_with_a_space_is_quoted() -> None:
    spaced = Path("/home/op/my records") / ID
    text = report(stage1_deployed(), stage1_spec(), record_folder=spaced)
    assert f"-i '{spaced}/ssh/id_ed25519'" in text.section("access").markdown()


# --- costs and next steps -----------------------------------------------------------


def test_costs_show_the_estimate_per_resource_and_unknown_actuals() -> None:
    text = section(production_deployed(), production_spec(), "costs")
    assert "Estimated when the stack was synthesized: \\$175.00 a month (730 hours" in text
    lines = [line for line in text.splitlines() if line.startswith("| `")]
    assert lines[0] == "| `DatabaseInstanceC0DE` | AWS::RDS::DBInstance | \\$52.56 |"
    assert len(lines) == 7
    assert "Not known yet." in text and f"`hivemind:deployment-id={ID}`" in text


def test_costs_show_actuals_when_given() -> None:
    billed = ActualCosts(
        "2026-11-01",
        "2026-12-01",
        {"Amazon Relational Database Service": 70.5, "EC2 - Other": 60.0},
    )
    text = section(production_deployed(), production_spec(), "costs", actual_costs=billed)
    assert "Billed from 2026-11-01 to 2026-12-01 (the end excluded; AWS Cost Explorer):" in text
    assert "| Amazon Relational Database Service | \\$70.50 |" in text
    assert "| Total | \\$130.50 |" in text
    assert "Not known yet" not in text


def _offers(command: str, option: str) -> bool:
    found = cli.get_command(click.Context(cli), command)
    return found is not None and any(option in p.opts for p in found.params)


def test_a_failed_deployment_says_where_why_and_what_to_run() -> None:
    text = section(failed_at_deploy(), stage1_spec(), "next-steps")
    assert "Failed at the deploy stage: pip install exited 1:" in text
    assert f"`hivemind retry {ID}` resumes at the deploy stage" in text
    assert f"`hivemind status {ID}" in text
    assert ("--show-logs" in text) == _offers("status", "--show-logs")
    assert "sudo journalctl -u hivemind-shop -n 100" in text
    assert "has been failed for" not in text  # the failure is recent (NOW)


def test_a_deployment_failed_for_days_suggests_destroying_it() -> None:
    later = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    text = section(failed_at_deploy(), stage1_spec(), "next-steps", now=later)
    assert "It has been failed for 2 days 4 hours" in text
    assert "(about \\$50.59 a month)" in text
    assert f"`hivemind destroy {ID}` removes it." in text


def test_a_deployed_deployment_lists_its_commands() -> None:
    text = section(production_deployed(), production_spec(), "next-steps")
    assert f"`hivemind status {ID}` checks it against AWS" in text
    assert f"`hivemind destroy {ID}` removes it all, saving \\$175.00 a month" in text
    assert "#dashboards:name=HiveMind-shop-k2j4m6p7q3" in text
    assert (f"hivemind update {ID}" in text) == ("update" in COMMANDS)
    if "update" not in COMMANDS:
        assert f"--deployment-id {ID}" in text


def test_a_destroyed_deployment_says_what_was_removed_and_the_savings() -> None:
    built = report(destroyed(), production_spec())
    steps = built.section("next-steps").markdown()
    assert "Removed: 1 x AWS::CloudWatch::Alarm, 2 x AWS::EC2::Instance," in steps
    assert "2 x AWS::RDS::DBInstance. That saves \\$175.00 a month (estimated)." in steps
    assert "final snapshot" in steps
    assert "hivemind retry" not in steps
    assert "Nothing to reach" in built.section("access").markdown()
    assert "7 resources were in the stack" in built.section("resources").markdown()
    architecture = built.section("architecture").blocks[0]
    assert isinstance(architecture, Diagram)
    assert architecture.caption == "As it was deployed; none of it exists any more."


# --- escaping and HTML --------------------------------------------------------------


class _Page(HTMLParser):
    VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.problems: list[str] = []
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.attributes += attrs
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.open or self.open[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.open[-1:] or 'nothing'}")
        else:
            self.open.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_html_page_is_well_formed_standalone_and_escaped() -> None:
    page = render_html(report(failed_at_deploy(), stage1_spec(), events=[f"x {SCRIPT}"]))
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert page.startswith("<!DOCTYPE html>")
    assert parser.problems == [] and parser.open == []
    assert parser.tags["script"] == 0 and parser.tags["link"] == 0
    assert not [value for name, value in parser.attributes if name == "src"]
    assert parser.tags["table"] >= 5 and parser.tags["section"] == 9
    text = "".join(parser.text)
    assert f"pip install exited 1: {SCRIPT}" in text  # shown as text, not run
    assert "&lt;script&gt;" in page
    assert '<pre class="mermaid">flowchart LR' in page
    assert "Application Load Balancer · HTTP :80" in text  # the plain-HTML architecture
    assert "Users → Application Load Balancer: HTTP :80" in text


def test_markdown_keeps_markup_from_the_record_as_text() -> None:
    text = render_report(failed_at_deploy(), stage1_spec(), record_folder=FOLDER, now=NOW)
    assert SCRIPT not in text
    assert "\\<script\\>alert('owned')\\</script\\>" in text


# --- the record and the command -----------------------------------------------------


@pytest.fixture
def recorded() -> RecordStore:
    """A deployment record under $HIVEMIND_HOME (the tests' temporary home)."""
    store = RecordStore()
    record = store.create(stage1_spec(), ID, STACK)
    record.save(stage1_deployed())
    record.log("stage synth: started")
    return store


def test_write_report_writes_markdown_and_html_into_the_record(recorded: RecordStore) -> None:
    record = recorded.get(ID)
    path = write_report(record)
    assert path == record.folder / "report.md"
    text = path.read_text("utf-8")
    assert text.startswith(f"# {ID}: shop (deployed)")
    assert "stage synth: started" in text  # from events.log
    assert f"{record.folder}/ssh/id_ed25519" in text
    html_path = write_report(record, fmt="html")
    assert html_path == record.folder / "report.html"
    assert "<h2>Timeline</h2>" in html_path.read_text("utf-8")
    assert not [p for p in record.folder.iterdir() if p.name.startswith(".report")]


def test_report_command_writes_the_file_and_prints_its_path(
    recorded: RecordStore, tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli, ["report", ID])
    assert result.exit_code == 0, result.output
    written = Path(result.output.strip())
    assert written == recorded.get(ID).folder / "report.md"
    assert "## Next steps and troubleshooting" in written.read_text("utf-8")

    target = tmp_path / "out" / "shop.html"
    target.parent.mkdir()  # a folder that does not exist is refused (test_untrusted_repo)
    result = CliRunner().invoke(cli, ["report", ID, "--format", "html", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(target)
    assert target.read_text("utf-8").startswith("<!DOCTYPE html>")


def test_report_command_json_has_the_path_and_sections(recorded: RecordStore) -> None:
    result = CliRunner().invoke(cli, ["report", ID, "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["path"] == str(recorded.get(ID).folder / "report.md")
    assert answer["format"] == "markdown"
    assert [s["key"] for s in answer["sections"]] == [
        "summary", "timeline", "architecture", "resources", "configuration",
        "verification", "access", "costs", "next-steps",
    ]  # fmt: skip
    assert "```mermaid" in answer["sections"][2]["markdown"]


def test_report_on_an_unknown_id_is_bad_input(tmp_path: Path) -> None:
    result = run_cli("report", "shop-zzzzzzzzzz", env={"HIVEMIND_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "no deployment shop-zzzzzzzzzz" in result.stderr
    assert "hivemind list" in result.stderr
