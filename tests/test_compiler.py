"""What `hivemind synth` builds, checked on the synthesized CloudFormation: every
security property, across stage-1/production x database or not x X-Ray or not, and
for each bundled example; the gates are clean everywhere; synthesis is deterministic."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import EXAMPLES, make_spec

from hivemind.resolve import Overrides, spec_for_repo
from hivemind.spec import DeploymentSpec
from hivemind.synth import TEMPLATE_BODY_LIMIT, SynthResult, synthesize
from hivemind.toolchain import prepare_jsii

prepare_jsii()
from aws_cdk.assertions import Match, Template  # noqa: E402

from hivemind_constructs.database import PORTS  # noqa: E402

DEPLOYMENT_ID = "shop-abcdefghij"


MATRIX = list(itertools.product(("stage-1", "production"), ("postgres", "none"), (False, True)))


class Synthesized:
    def __init__(self, result: SynthResult, out: Path, spec: DeploymentSpec) -> None:
        self.result = result
        self.out = out
        self.spec = spec
        self.json: dict[str, Any] = json.loads((out / result.template_file).read_text())
        self.template = Template.from_json(self.json)

    def resources(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == kind}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, bool], Synthesized]:
    out: dict[tuple[str, str, bool], Synthesized] = {}
    for profile, engine, xray in MATRIX:
        spec = make_spec(profile, engine, xray)
        folder = tmp_path_factory.mktemp(f"{profile}-{engine}-{xray}")
        out[(profile, engine, xray)] = Synthesized(
            synthesize(spec, DEPLOYMENT_ID, folder, use_cache=False), folder, spec
        )
    return out


def each(matrix: dict[tuple[str, str, bool], Synthesized]) -> Iterator[Synthesized]:
    yield from matrix.values()


def test_gates_are_clean_across_the_matrix(matrix: dict[Any, Synthesized]) -> None:
    for key, synth in matrix.items():
        assert synth.result.findings == [], key


def test_every_template_fits_inline(matrix: dict[Any, Synthesized]) -> None:
    for key, synth in matrix.items():
        assert synth.result.template_bytes < TEMPLATE_BODY_LIMIT, key
        assert not synth.result.needs_bootstrap
        assert "Parameters" not in synth.json or "BootstrapVersion" not in synth.json["Parameters"]


def test_instances_require_imdsv2_and_encrypted_gp3(matrix: dict[Any, Synthesized]) -> None:
    for synth in each(matrix):
        synth.template.has_resource_properties(
            "AWS::EC2::LaunchTemplate",
            {
                "LaunchTemplateData": Match.object_like(
                    {
                        "MetadataOptions": Match.object_like({"HttpTokens": "required"}),
                        "BlockDeviceMappings": [
                            Match.object_like(
                                {
                                    "Ebs": Match.object_like(
                                        {"Encrypted": True, "VolumeType": "gp3"}
                                    ),
                                }
                            )
                        ],
                    }
                ),
            },
        )


def _ssh_ingress(template: dict[str, Any]) -> list[dict[str, Any]]:
    rules = []
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            rules += properties.get("SecurityGroupIngress", [])
        elif resource["Type"] == "AWS::EC2::SecurityGroupIngress":
            rules.append(properties)
    return [r for r in rules if r.get("FromPort") == 22]


def test_no_ssh_from_an_address_range_unless_an_operator_range_is_given(
    matrix: dict[Any, Synthesized], tmp_path: Path
) -> None:
    for (profile, *_rest), synth in matrix.items():
        rules = _ssh_ingress(synth.json)
        # Private instances take SSH from their Instance Connect Endpoint's group only.
        assert all("CidrIp" not in r and "CidrIpv6" not in r for r in rules)
        assert len(rules) == (1 if profile == "production" else 0)
        if rules:
            assert "SourceSecurityGroupId" in rules[0]
    spec = make_spec("stage-1", "none", False, access={"ssh_cidr": "203.0.113.7/32"})
    result = synthesize(spec, DEPLOYMENT_ID, tmp_path, use_cache=False)
    ssh = Synthesized(result, tmp_path, spec)
    ssh.template.has_resource_properties(
        "AWS::EC2::SecurityGroup",
        {
            "SecurityGroupIngress": Match.array_with(
                [Match.object_like({"CidrIp": "203.0.113.7/32", "FromPort": 22, "ToPort": 22})]
            ),
        },
    )
    for group in ssh.resources("AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            if rule.get("FromPort") == 22:
                assert rule["CidrIp"] == "203.0.113.7/32"


def test_ssh_from_the_whole_internet_is_refused() -> None:
    with pytest.raises(ValueError, match="never opened to the whole internet"):
        make_spec("stage-1", "none", False, access={"ssh_cidr": "0.0.0.0/0"})


def test_only_the_load_balancer_faces_the_internet(matrix: dict[Any, Synthesized]) -> None:
    for synth in each(matrix):
        for logical_id, group in synth.resources("AWS::EC2::SecurityGroup").items():
            for rule in group["Properties"].get("SecurityGroupIngress", []):
                if rule.get("CidrIp") == "0.0.0.0/0":
                    assert "LoadBalancer" in logical_id and rule["FromPort"] in (80, 443)
        # The app port accepts traffic from the load balancer's group only.
        synth.template.has_resource_properties(
            "AWS::EC2::SecurityGroupIngress",
            {
                "FromPort": synth.spec.app.port,
                "ToPort": synth.spec.app.port,
                "SourceSecurityGroupId": {
                    "Fn::GetAtt": [Match.string_like_regexp("LoadBalancer"), "GroupId"]
                },
            },
        )


def test_database_is_private_encrypted_and_secret_managed(matrix: dict[Any, Synthesized]) -> None:
    for (profile, engine, _xray), synth in matrix.items():
        databases = synth.resources("AWS::RDS::DBInstance")
        if engine == "none":
            assert databases == {}
            continue
        production = profile == "production"
        primary = next(
            d for d in databases.values() if "SourceDBInstanceIdentifier" not in d["Properties"]
        )
        props = primary["Properties"]
        assert props["StorageEncrypted"] is True
        assert props["PubliclyAccessible"] is False
        assert props["EnableIAMDatabaseAuthentication"] is True
        assert props["MultiAZ"] is production
        assert props["BackupRetentionPeriod"] == (7 if production else 0)
        assert props.get("DeletionProtection", False) is production
        assert primary["DeletionPolicy"] == "Snapshot"  # every profile keeps the data
        assert primary["UpdateReplacePolicy"] == "Snapshot"
        # The password is resolved from Secrets Manager at deploy time, never written here.
        password = json.dumps(props["MasterUserPassword"])
        assert "resolve:secretsmanager" in password
        synth.template.has_resource_properties(
            "AWS::SecretsManager::Secret",
            {
                "GenerateSecretString": Match.object_like({"GenerateStringKey": "password"}),
            },
        )
        assert len(databases) == (2 if production else 1)  # production has a read replica
        # Only the app's instances reach the database port.
        synth.template.has_resource_properties(
            "AWS::EC2::SecurityGroupIngress",
            {
                "FromPort": PORTS[engine],
                "ToPort": PORTS[engine],
                "SourceSecurityGroupId": {
                    "Fn::GetAtt": [Match.string_like_regexp("Instance"), "GroupId"]
                },
            },
        )


def test_instance_role_is_least_privilege(matrix: dict[Any, Synthesized]) -> None:
    for (_p, engine, xray), synth in matrix.items():
        role_id, role = next(
            (k, r) for k, r in synth.resources("AWS::IAM::Role").items() if "Instance" in k
        )
        # No Session Manager (it reads every SSM parameter), no CloudWatchAgentServerPolicy
        # (logs and metrics anywhere): X-Ray's writes only, with --xray.
        managed = json.dumps(role["Properties"].get("ManagedPolicyArns", []))
        assert "AmazonSSMManagedInstanceCore" not in managed
        assert "CloudWatchAgentServerPolicy" not in managed
        assert ("AWSXrayWriteOnlyAccess" in managed) is xray
        assert "Policies" not in role["Properties"]
        granted = [
            statement
            for policy in synth.resources("AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]
        log_group = next(
            k
            for k, r in synth.resources("AWS::Logs::LogGroup").items()
            if re.fullmatch(r"/hivemind/[a-z0-9-]+/app", str(r["Properties"].get("LogGroupName")))
        )

        by_action = {
            action: statement
            for statement in granted
            for action in (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
        }
        for action in ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"):
            assert by_action[action]["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}, action
        metrics = by_action["cloudwatch:PutMetricData"]
        assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "CWAgent"}}
        secrets = {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
        expected = {
            "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams",
            "cloudwatch:PutMetricData", "ec2:DescribeTags", "ec2:DescribeVolumes",
        } | (secrets if engine != "none" else set())  # fmt: skip
        assert set(by_action) == expected
        for policy in synth.resources("AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                assert statement["Action"] != "*"


def test_instances_may_read_their_database_secret_and_nothing_else(
    matrix: dict[Any, Synthesized],
) -> None:
    # The on-box deploy writes the app's environment file from the secret, on the instance.
    for (_p, engine, _x), synth in matrix.items():
        role = next(k for k in synth.resources("AWS::IAM::Role") if "Instance" in k)
        granted = [
            statement
            for policy in synth.resources("AWS::IAM::Policy").values()
            if {"Ref": role} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]
        secret_statements = [
            s for s in granted if any(a.startswith("secretsmanager:") for a in _actions(s))
        ]
        if engine == "none":
            assert secret_statements == []
            continue
        # The secret's ARN: a Ref to it, or to its attachment (whose Ref is the same ARN).
        secrets = {
            *synth.resources("AWS::SecretsManager::Secret"),
            *synth.resources("AWS::SecretsManager::SecretTargetAttachment"),
        }
        assert secret_statements
        assert all(s["Resource"]["Ref"] in secrets for s in secret_statements)
        actions = {a for s in secret_statements for a in _actions(s)}
        assert "secretsmanager:GetSecretValue" in actions
        assert all(a.startswith("secretsmanager:") for a in actions)


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return list(action) if isinstance(action, list) else [action]


def test_network_follows_the_profile(matrix: dict[Any, Synthesized]) -> None:
    for (profile, _e, _x), synth in matrix.items():
        nat = synth.resources("AWS::EC2::NatGateway")
        assert len(nat) == (2 if profile == "production" else 0)
        assert len(synth.resources("AWS::EC2::FlowLog")) == 1
        instances = synth.resources("AWS::EC2::Instance")
        assert len(instances) == (2 if profile == "production" else 1)


def test_dashboard_has_its_eight_sections_and_the_alarms(matrix: dict[Any, Synthesized]) -> None:
    for (_profile, engine, xray), synth in matrix.items():
        (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
        assert dashboard["Properties"]["DashboardName"] == f"HiveMind-{DEPLOYMENT_ID}"
        body = json.dumps(dashboard["Properties"]["DashboardBody"])
        for section in (
            "Application overview",
            "Infrastructure",
            "Load balancer",
            "Database",
            "Application logs",
            "X-Ray",
            "Costs",
            "Alarms",
        ):
            assert f"## {section}" in body, section
        assert "Estimated monthly cost: $" in body and "HIVEMIND_COST_ESTIMATE" not in body
        assert ("No managed database" in body) is (engine == "none")
        assert ("Tracing is off" in body) is (not xray)
        descriptions = " ".join(
            a["Properties"].get("AlarmDescription", "")
            for a in synth.resources("AWS::CloudWatch::Alarm").values()
        )
        for alarm in ("5xx", "health check", "CPU above 80% for 10 minutes"):
            assert alarm in descriptions
        assert ("Database free storage" in descriptions) is (engine != "none")


def test_the_cloud_assembly_names_no_role_and_needs_no_bootstrap(
    matrix: dict[Any, Synthesized],
) -> None:
    # The CDK CLI deploys with the operator's credentials and passes CloudFormation no
    # role: an account never bootstrapped has no cdk-hnb659fds-* role to assume or pass
    # ("Role ... is invalid or cannot be assumed", which the sandbox answers too).
    for synth in matrix.values():
        manifest = json.loads((synth.out / "cdk.out" / "manifest.json").read_text())
        stack = manifest["artifacts"][synth.result.stack_name]["properties"]
        for named in (
            "assumeRoleArn",
            "cloudFormationExecutionRoleArn",
            "lookupRole",
            "requiresBootstrapStackVersion",
            "stackTemplateAssetObjectUrl",
        ):
            assert named not in stack, (named, stack[named])
        assert "cdk-hnb659fds" not in json.dumps(manifest)
        assert not any(a["type"] == "cdk:asset-manifest" for a in manifest["artifacts"].values())


def test_xray_group_and_sampling_rule_only_with_xray(matrix: dict[Any, Synthesized]) -> None:
    for (_p, _e, xray), synth in matrix.items():
        assert len(synth.resources("AWS::XRay::Group")) == int(xray)
        assert len(synth.resources("AWS::XRay::SamplingRule")) == int(xray)


def test_every_resource_is_tagged_and_outputs_are_there(matrix: dict[Any, Synthesized]) -> None:
    for (profile, engine, _x), synth in matrix.items():
        # Stack tags: CloudFormation puts them on every resource it creates (the
        # sandbox tests check they arrive); the template need not repeat them.
        manifest = json.loads((synth.out / "cdk.out" / "manifest.json").read_text())
        stack = manifest["artifacts"][synth.result.stack_name]
        assert stack["properties"]["tags"] == {
            "hivemind:deployment-id": DEPLOYMENT_ID,
            "hivemind:app": "shop",
            "hivemind:profile": profile,
            "team": "shop",
        }
        outputs = set(synth.json["Outputs"])
        assert {
            "LoadBalancerDns",
            "BlueTargetGroupArn",
            "GreenTargetGroupArn",
            "BlueInstanceIds",
            "DashboardName",
            "AppLogGroup",
            "ActiveColor",
        } <= outputs
        assert ({"DatabaseEndpoint", "DatabaseSecretArn"} <= outputs) is (engine != "none")


def test_https_with_a_certificate_redirects_http(tmp_path: Path) -> None:
    arn = "arn:aws:acm:eu-west-1:123456789012:certificate/abcd-1234"
    spec = make_spec(
        "stage-1", "none", False, access={"certificate_arn": arn, "domain": "shop.example.com"}
    )
    synth = Synthesized(synthesize(spec, DEPLOYMENT_ID, tmp_path, use_cache=False), tmp_path, spec)
    assert synth.result.findings == []
    synth.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Port": 443, "Protocol": "HTTPS", "Certificates": [{"CertificateArn": arn}]},
    )
    synth.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::Listener",
        {"Port": 80, "DefaultActions": [Match.object_like({"Type": "redirect"})]},
    )


def test_blue_green_is_a_spec_change(tmp_path: Path) -> None:
    spec = make_spec(
        "production",
        "none",
        False,
        compute={
            "instance_type": "t3.small",
            "count": 2,
            "active_color": "green",
            "standby_count": 1,
        },
    )
    synth = Synthesized(synthesize(spec, DEPLOYMENT_ID, tmp_path, use_cache=False), tmp_path, spec)
    instances = synth.resources("AWS::EC2::Instance")
    assert sorted(instances) == sorted(
        k for k in instances if k.startswith(("WebGreen", "WebBlue"))
    )
    assert sum(k.startswith("WebGreen") for k in instances) == 2
    assert sum(k.startswith("WebBlue") for k in instances) == 1
    (listener,) = synth.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    target = listener["Properties"]["DefaultActions"][0]["TargetGroupArn"]["Ref"]
    assert target.startswith("WebGreenTargets")
    # The standby colour (blue) is reached through the load balancer only with the
    # standby header carrying the token, a NoEcho parameter: how an update checks it.
    (rule,) = synth.resources("AWS::ElasticLoadBalancingV2::ListenerRule").values()
    assert rule["Properties"]["Actions"][0]["TargetGroupArn"]["Ref"].startswith("WebBlueTargets")
    (condition,) = rule["Properties"]["Conditions"]
    assert condition["Field"] == "http-header"
    assert condition["HttpHeaderConfig"] == {
        "HttpHeaderName": "X-HiveMind-Standby",
        "Values": [{"Ref": "StandbyToken"}],
    }
    token = synth.json["Parameters"]["StandbyToken"]
    assert token["NoEcho"] is True and token["MinLength"] == 32


@pytest.mark.parametrize("example", ["flask-notes", "express-hello", "fastapi-mysql"])
def test_each_example_synthesizes_clean(example: str, tmp_path: Path) -> None:
    _, spec = spec_for_repo(
        str(EXAMPLES / example), Overrides({"profile": ("stage-1", "--stage-1")})
    )
    result = synthesize(spec, f"{spec.app.name}-abcdefghij", tmp_path, use_cache=False)
    assert result.findings == []
    synth = Synthesized(result, tmp_path, spec)
    synth.template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"Port": spec.app.port, "HealthCheckPath": spec.app.health_path},
    )
    user_data = json.dumps(synth.resources("AWS::EC2::LaunchTemplate"))
    runtime = {"python": "python3", "node": "nodejs"}[spec.app.language]
    assert runtime in user_data
    # The same security properties as the matrix, on each example's own stack.
    as_matrix = {(spec.profile, spec.database.engine, spec.xray): synth}
    test_instances_require_imdsv2_and_encrypted_gp3(as_matrix)
    test_only_the_load_balancer_faces_the_internet(as_matrix)
    test_database_is_private_encrypted_and_secret_managed(as_matrix)
    test_instance_role_is_least_privilege(as_matrix)


def test_synthesis_is_deterministic(tmp_path: Path) -> None:
    spec = make_spec("production", "postgres", True)
    first = synthesize(spec, DEPLOYMENT_ID, tmp_path / "a", use_cache=False)
    second = synthesize(spec, DEPLOYMENT_ID, tmp_path / "b", use_cache=False)
    assert (tmp_path / "a" / first.template_file).read_bytes() == (
        tmp_path / "b" / second.template_file
    ).read_bytes()


def test_a_repeat_synth_comes_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HIVEMIND_CACHE_DIR", str(tmp_path / "cache"))
    spec = make_spec("stage-1", "none", False)
    first = synthesize(spec, DEPLOYMENT_ID, tmp_path / "one")
    again = synthesize(spec, DEPLOYMENT_ID, tmp_path / "two")
    assert (first.cached, again.cached) == (False, True)
    assert (tmp_path / "one" / first.template_file).read_bytes() == (
        tmp_path / "two" / again.template_file
    ).read_bytes()
    changed = synthesize(make_spec("stage-1", "none", True), DEPLOYMENT_ID, tmp_path / "three")
    assert changed.cached is False


def test_costs_follow_the_profile(matrix: dict[Any, Synthesized]) -> None:
    stage1 = matrix[("stage-1", "postgres", False)].result.cost.total_usd
    production = matrix[("production", "postgres", False)].result.cost.total_usd
    assert 0 < stage1 < production


def test_provisioning_time_follows_the_database(matrix: dict[Any, Synthesized]) -> None:
    with_db = matrix[("production", "postgres", False)].result
    without = matrix[("production", "none", False)].result
    assert with_db.provisioning_seconds > without.provisioning_seconds
    assert any(step["resource_type"] == "AWS::RDS::DBInstance" for step in with_db.critical_path)


def test_an_app_without_a_port_gets_no_load_balancer(tmp_path: Path) -> None:
    spec = make_spec(
        "stage-1",
        "postgres",
        False,
        app={
            "name": "worker",
            "language": "python",
            "runtime_version": "3.12",
            "start_command": "python worker.py",
            "port": None,
        },
    )
    result = synthesize(spec, "worker-abcdefghij", tmp_path, use_cache=False)
    assert result.findings == []
    synth = Synthesized(result, tmp_path, spec)
    assert synth.resources("AWS::ElasticLoadBalancingV2::LoadBalancer") == {}
    assert synth.resources("AWS::ElasticLoadBalancingV2::TargetGroup") == {}
    assert len(synth.resources("AWS::EC2::Instance")) == 1
    body = json.dumps(synth.resources("AWS::CloudWatch::Dashboard"))
    assert "No load balancer: the app serves no port." in body


# EC2 accepts only these characters in security group and rule descriptions.
_EC2_DESCRIPTION = re.compile(r"^[a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]*$")


def test_security_group_descriptions_are_ones_ec2_accepts(tmp_path: Path) -> None:
    spec = make_spec(
        "production",
        "postgres",
        True,
        access={
            "ssh_cidr": "203.0.113.7/32",
            "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/abcd-1234",
            "domain": "shop.example.com",
        },
    )
    synth = Synthesized(synthesize(spec, DEPLOYMENT_ID, tmp_path, use_cache=False), tmp_path, spec)
    assert synth.result.findings == []
    seen = 0
    for resource in synth.json["Resources"].values():
        props = resource.get("Properties", {})
        rules = [*props.get("SecurityGroupIngress", []), *props.get("SecurityGroupEgress", [])]
        if resource["Type"] in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
            rules.append(props)
        texts = [props.get("GroupDescription"), *(rule.get("Description") for rule in rules)]
        for text in filter(None, texts):
            seen += 1
            assert isinstance(text, str) and _EC2_DESCRIPTION.match(text), text
    assert seen > 5


def test_the_root_volume_follows_the_spec_and_its_cost(tmp_path: Path) -> None:
    def synth(size: int | None, folder: Path) -> Synthesized:
        compute: dict[str, Any] = {"instance_type": "t3.small", "count": 1}
        if size is not None:
            compute["root_volume_gb"] = size
        spec = make_spec("stage-1", "none", False, compute=compute)
        folder.mkdir()
        return Synthesized(synthesize(spec, DEPLOYMENT_ID, folder, use_cache=False), folder, spec)

    default, larger = synth(None, tmp_path / "default"), synth(48, tmp_path / "larger")
    for built, size in ((default, 16), (larger, 48)):
        assert built.result.findings == []
        built.template.has_resource_properties(
            "AWS::EC2::LaunchTemplate",
            {
                "LaunchTemplateData": Match.object_like(
                    {"BlockDeviceMappings": [Match.object_like({"Ebs": Match.object_like(
                        {"VolumeSize": size, "Encrypted": True}
                    )})]}
                )
            },
        )  # fmt: skip
    # 32 GiB more of gp3 for the one instance, at $0.08 a GiB-month in us-east-1 and
    # 1.1 times that in eu-west-1 (the spec's region).
    extra = larger.result.cost.total_usd - default.result.cost.total_usd
    assert extra == pytest.approx(32 * 0.08 * 1.1, abs=0.01)


def test_the_load_balancers_checks_and_drain_follow_the_spec(tmp_path: Path) -> None:
    fast = {
        "health_check_interval": 5,
        "healthy_threshold": 3,
        "unhealthy_threshold": 2,
        "deregistration_delay": 0,
    }
    spec = make_spec("stage-1", "none", False, load_balancer=fast)
    built = Synthesized(synthesize(spec, DEPLOYMENT_ID, tmp_path, use_cache=False), tmp_path, spec)
    assert built.result.findings == []
    groups = built.resources("AWS::ElasticLoadBalancingV2::TargetGroup")
    assert len(groups) == 2  # blue and green
    for group in groups.values():
        properties = group["Properties"]
        assert properties["HealthCheckIntervalSeconds"] == 5
        # ELB refuses a timeout that is not shorter than the interval.
        assert properties["HealthCheckTimeoutSeconds"] == 4
        assert properties["HealthyThresholdCount"] == 3
        assert properties["UnhealthyThresholdCount"] == 2
        delay = {a["Key"]: a["Value"] for a in properties["TargetGroupAttributes"]}
        assert delay["deregistration_delay.timeout_seconds"] == "0"
