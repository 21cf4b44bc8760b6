"""The cost model: what a user is told a deployment will cost a month, and why.

Templates here are built by hand in the shapes `cdk synth` gives HiveMind's stacks
(instances that take their type from a launch template, AllocatedStorage as a
string, a read replica naming its source by an ARN built with Fn::Join). Expected
totals are computed from the price table's constants, never by calling `estimate`.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from hivemind.cost import (
    ASSUMED_ALB_LCUS,
    ASSUMED_LOG_GB_PER_MONTH,
    DEFAULT_PRICES,
    HOURS_PER_MONTH,
    PRICE_SOURCE,
    PRICES_AS_OF,
    REGIONS,
    CostEstimate,
    CostLine,
    LivePricesError,
    PriceTable,
    estimate,
    live_prices,
)

P = DEFAULT_PRICES
H = HOURS_PER_MONTH
IPV4 = P.public_ipv4_hourly * H
ALB_INTERNET_FACING_2_SUBNETS = (P.alb_hourly + ASSUMED_ALB_LCUS * P.alb_lcu_hourly) * H + 2 * IPV4
LOG_GROUP = ASSUMED_LOG_GB_PER_MONTH * P.logs_ingestion_gb


# --- Template shapes ----------------------------------------------------------------


def resource(resource_type: str, **properties: Any) -> dict[str, Any]:
    return {"Type": resource_type, "Properties": properties}


def subnet(*, public: bool) -> dict[str, Any]:
    return resource(
        "AWS::EC2::Subnet",
        VpcId={"Ref": "Vpc"},
        CidrBlock="10.0.0.0/24",
        MapPublicIpOnLaunch=public,
    )


def launch_template(
    instance_type: str, *, volume_gib: int = 20, volume_type: str = "gp3", **data: Any
) -> dict[str, Any]:
    return resource(
        "AWS::EC2::LaunchTemplate",
        LaunchTemplateData={
            "InstanceType": instance_type,
            "ImageId": {"Ref": "SsmParameterValueAmiParameter"},
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/xvda",
                    "Ebs": {"VolumeSize": volume_gib, "VolumeType": volume_type},
                }
            ],
            **data,
        },
    )


def instance(launch_template_id: str, subnet_id: str) -> dict[str, Any]:
    return resource(
        "AWS::EC2::Instance",
        LaunchTemplate={
            "LaunchTemplateId": {"Ref": launch_template_id},
            "Version": {"Fn::GetAtt": [launch_template_id, "LatestVersionNumber"]},
        },
        SubnetId={"Ref": subnet_id},
    )


def load_balancer(*subnet_ids: str, scheme: str = "internet-facing") -> dict[str, Any]:
    return resource(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        Scheme=scheme,
        Subnets=[{"Ref": subnet_id} for subnet_id in subnet_ids],
        SecurityGroups=[{"Fn::GetAtt": ["AlbSecurityGroup", "GroupId"]}],
        Type="application",
    )


def database(
    db_class: str,
    *,
    engine: str = "postgres",
    multi_az: bool = False,
    storage: str | int = "20",
    storage_type: str = "gp3",
) -> dict[str, Any]:
    return resource(
        "AWS::RDS::DBInstance",
        AllocatedStorage=storage,
        DBInstanceClass=db_class,
        Engine=engine,
        MultiAZ=multi_az,
        StorageType=storage_type,
        DBSubnetGroupName={"Ref": "DbSubnetGroup"},
    )


def read_replica(source_id: str, db_class: str) -> dict[str, Any]:
    return resource(
        "AWS::RDS::DBInstance",
        DBInstanceClass=db_class,
        SourceDBInstanceIdentifier={
            "Fn::Join": [
                "",
                [
                    "arn:",
                    {"Ref": "AWS::Partition"},
                    ":rds:us-east-1:123456789012:db:",
                    {"Ref": source_id},
                ],
            ]
        },
        StorageType="gp2",
    )


def alarm() -> dict[str, Any]:
    return resource(
        "AWS::CloudWatch::Alarm",
        MetricName="HTTPCode_ELB_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Threshold=1,
        EvaluationPeriods=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
    )


def free_network() -> dict[str, Any]:
    """Resources every stack has that cost nothing to exist."""
    return {
        "Vpc": resource("AWS::EC2::VPC", CidrBlock="10.0.0.0/16"),
        "PublicSubnet1": subnet(public=True),
        "PublicSubnet2": subnet(public=True),
        "PrivateSubnet1": subnet(public=False),
        "PrivateSubnet2": subnet(public=False),
        "PublicRouteTable": resource("AWS::EC2::RouteTable", VpcId={"Ref": "Vpc"}),
        "PublicDefaultRoute": resource(
            "AWS::EC2::Route", RouteTableId={"Ref": "PublicRouteTable"}, GatewayId={"Ref": "Igw"}
        ),
        "Igw": resource("AWS::EC2::InternetGateway"),
        "AlbSecurityGroup": resource("AWS::EC2::SecurityGroup", GroupDescription="alb"),
        "InstanceRole": resource("AWS::IAM::Role", AssumeRolePolicyDocument={}),
        "TargetGroup": resource("AWS::ElasticLoadBalancingV2::TargetGroup", Port=8080),
        "Listener": resource("AWS::ElasticLoadBalancingV2::Listener", Port=80),
        "DbSubnetGroup": resource("AWS::RDS::DBSubnetGroup", DBSubnetGroupDescription="db"),
        "CDKMetadata": {"Type": "AWS::CDK::Metadata", "Metadata": {"Analytics": "v2:deflate64"}},
    }


def template(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": {**free_network(), **resources}}


def stage_1() -> dict[str, Any]:
    """One t3.micro in a public subnet, no NAT, an ALB, a small single-AZ database."""
    return template(
        AppLaunchTemplate=launch_template("t3.micro", volume_gib=8),
        App=instance("AppLaunchTemplate", "PublicSubnet1"),
        Alb=load_balancer("PublicSubnet1", "PublicSubnet2"),
        Db=database("db.t3.micro", storage="20", storage_type="gp3"),
        DbSecret=resource("AWS::SecretsManager::Secret", GenerateSecretString={}),
        Dashboard=resource("AWS::CloudWatch::Dashboard", DashboardBody="{}"),
        **{f"Alarm{n}": alarm() for n in range(5)},
        AppLogs=resource("AWS::Logs::LogGroup", RetentionInDays=30),
        SystemLogs=resource("AWS::Logs::LogGroup", RetentionInDays=30),
    )


def production() -> dict[str, Any]:
    """Two t3.small in private subnets behind two NAT gateways, Multi-AZ db and a replica."""
    return template(
        AppLaunchTemplate=launch_template("t3.small", volume_gib=20),
        App1=instance("AppLaunchTemplate", "PrivateSubnet1"),
        App2=instance("AppLaunchTemplate", "PrivateSubnet2"),
        NatEip1=resource("AWS::EC2::EIP", Domain="vpc"),
        NatEip2=resource("AWS::EC2::EIP", Domain="vpc"),
        Nat1=resource(
            "AWS::EC2::NatGateway",
            AllocationId={"Fn::GetAtt": ["NatEip1", "AllocationId"]},
            SubnetId={"Ref": "PublicSubnet1"},
        ),
        Nat2=resource(
            "AWS::EC2::NatGateway",
            AllocationId={"Fn::GetAtt": ["NatEip2", "AllocationId"]},
            SubnetId={"Ref": "PublicSubnet2"},
        ),
        Alb=load_balancer("PublicSubnet1", "PublicSubnet2"),
        Db=database("db.t3.small", multi_az=True, storage="20", storage_type="gp3"),
        DbReplica=read_replica("Db", "db.t3.small"),
        DbSecret=resource("AWS::SecretsManager::Secret", GenerateSecretString={}),
        Dashboard=resource("AWS::CloudWatch::Dashboard", DashboardBody="{}"),
        **{f"Alarm{n}": alarm() for n in range(8)},
        AppLogs=resource("AWS::Logs::LogGroup", RetentionInDays=30),
        FlowLogs=resource("AWS::Logs::LogGroup", RetentionInDays=30),
        FlowLog=resource(
            "AWS::EC2::FlowLog",
            LogDestinationType="cloud-watch-logs",
            LogGroupName={"Ref": "FlowLogs"},
            ResourceId={"Ref": "Vpc"},
            ResourceType="VPC",
            TrafficType="ALL",
        ),
        TraceGroup=resource("AWS::XRay::Group", GroupName="app"),
        DataKey=resource("AWS::KMS::Key", KeyPolicy={}),
    )


def line(result: CostEstimate, logical_id: str) -> CostLine:
    (found,) = [line for line in result.lines if line.logical_id == logical_id]
    return found


# --- Whole deployments ----------------------------------------------------------------


def test_stage_1_costs_the_sum_of_its_priced_parts() -> None:
    app = P.ec2_instance_hourly["t3.micro"] * H + 8 * P.ebs_gib_month["gp3"] + IPV4
    db = P.rds_instance_hourly["postgres"]["db.t3.micro"] * H + 20 * P.rds_storage_gib_month["gp3"]
    expected = (
        app
        + ALB_INTERNET_FACING_2_SUBNETS
        + db
        + P.secret_month
        + P.dashboard_month
        + 5 * P.alarm_month
        + 2 * LOG_GROUP
    )

    result = estimate(stage_1(), "us-east-1")

    assert result.total_usd == pytest.approx(expected)
    assert result.total_usd == pytest.approx(sum(line.monthly_usd for line in result.lines))
    assert line(result, "App").monthly_usd == pytest.approx(app)
    assert line(result, "Db").monthly_usd == pytest.approx(db)
    assert result.region == "us-east-1"
    assert result.prices_as_of == PRICES_AS_OF
    assert result.price_source == PRICE_SOURCE


def test_production_costs_the_sum_of_its_priced_parts() -> None:
    app = P.ec2_instance_hourly["t3.small"] * H + 20 * P.ebs_gib_month["gp3"]
    db_hourly = P.rds_instance_hourly["postgres"]["db.t3.small"] * H
    db = 2 * (db_hourly + 20 * P.rds_storage_gib_month["gp3"])
    replica = db_hourly + 20 * P.rds_storage_gib_month["gp2"]
    expected = (
        2 * app
        + 2 * P.nat_gateway_hourly * H
        + 2 * IPV4
        + ALB_INTERNET_FACING_2_SUBNETS
        + db
        + replica
        + P.secret_month
        + P.dashboard_month
        + 8 * P.alarm_month
        + 2 * LOG_GROUP
        + P.kms_key_month
    )

    result = estimate(production(), "us-east-1")

    assert result.total_usd == pytest.approx(expected)
    assert [line.description for line in result.lines[:3]] == [
        "db.t3.small PostgreSQL, Multi-AZ, 20 GiB gp3",
        "NAT gateway, 730 h",
        "NAT gateway, 730 h",
    ]


def test_lines_are_sorted_by_cost_then_logical_id() -> None:
    result = estimate(production(), "us-east-1")

    keys = [(-line.monthly_usd, line.logical_id) for line in result.lines]
    assert keys == sorted(keys)
    assert [line.logical_id for line in result.lines if line.description.startswith("NAT")] == [
        "Nat1",
        "Nat2",
    ]


def test_by_type_sums_lines_per_resource_type_highest_first() -> None:
    by_type = estimate(production(), "us-east-1").by_type()

    assert next(iter(by_type)) == "AWS::RDS::DBInstance"
    assert by_type["AWS::CloudWatch::Alarm"] == pytest.approx(8 * P.alarm_month)
    assert by_type["AWS::EC2::EIP"] == pytest.approx(2 * IPV4)
    assert list(by_type.values()) == sorted(by_type.values(), reverse=True)


def test_same_template_gives_an_equal_estimate_whatever_its_key_order() -> None:
    forward = stage_1()
    backward = {"Resources": dict(reversed(list(forward["Resources"].items())))}

    assert estimate(forward, "eu-west-1") == estimate(forward, "eu-west-1")
    assert estimate(forward, "eu-west-1") == estimate(backward, "eu-west-1")


def test_estimate_round_trips_through_json() -> None:
    # synth caches the estimate as JSON beside cdk.out and reads it back.
    result = estimate(production(), "ap-southeast-2")

    assert CostEstimate.model_validate_json(result.model_dump_json()) == result


# --- Instances ------------------------------------------------------------------------


def test_instance_takes_its_type_and_volume_from_its_launch_template() -> None:
    result = estimate(production(), "us-east-1")

    assert line(result, "App1").description == "t3.small instance, 730 h + 20 GiB gp3 volume"
    assert line(result, "App1").resource_type == "AWS::EC2::Instance"


def test_launch_template_alone_costs_nothing() -> None:
    result = estimate(template(Lt=launch_template("m5.2xlarge")), "us-east-1")

    assert result.lines == ()
    assert result.total_usd == 0


def test_instance_type_set_on_the_instance_itself_is_priced() -> None:
    app = resource(
        "AWS::EC2::Instance",
        InstanceType="c6i.large",
        SubnetId={"Ref": "PrivateSubnet1"},
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 30}}],
    )

    result = estimate(template(App=app), "us-east-1")

    # A volume given without a type is gp2, EC2's default.
    assert line(result, "App").description == "c6i.large instance, 730 h + 30 GiB gp2 volume"
    assert result.total_usd == pytest.approx(
        P.ec2_instance_hourly["c6i.large"] * H + 30 * P.ebs_gib_month["gp2"]
    )


def test_instance_without_a_volume_is_assumed_to_have_the_ami_root_volume() -> None:
    app = resource("AWS::EC2::Instance", InstanceType="t4g.nano")

    result = estimate(template(App=app), "us-east-1")

    assert result.total_usd == pytest.approx(
        P.ec2_instance_hourly["t4g.nano"] * H + 8 * P.ebs_gib_month["gp3"]
    )
    assert "App names no EBS volume; assumed the AMI's 8 GiB gp3 root volume." in (
        result.assumptions
    )


def test_instance_in_a_public_subnet_pays_for_a_public_ipv4_address() -> None:
    result = estimate(
        template(
            Lt=launch_template("t3.micro"),
            Public=instance("Lt", "PublicSubnet1"),
            Private=instance("Lt", "PrivateSubnet1"),
        ),
        "us-east-1",
    )

    assert line(result, "Public").description.endswith("+ public IPv4 address")
    assert line(result, "Public").monthly_usd - line(result, "Private").monthly_usd == (
        pytest.approx(IPV4)
    )


def test_launch_template_asking_for_a_public_ip_pays_for_it_even_in_a_private_subnet() -> None:
    lt = launch_template(
        "t3.micro",
        NetworkInterfaces=[{"DeviceIndex": 0, "AssociatePublicIpAddress": True}],
    )

    result = estimate(template(Lt=lt, App=instance("Lt", "PrivateSubnet1")), "us-east-1")

    assert line(result, "App").description == (
        "t3.micro instance, 730 h + 20 GiB gp3 volume + public IPv4 address"
    )


def test_unknown_instance_type_is_not_counted_but_its_volume_is() -> None:
    result = estimate(
        template(Lt=launch_template("x9.huge"), App=instance("Lt", "PrivateSubnet1")), "us-east-1"
    )

    assert line(result, "App").description == (
        "x9.huge instance (no price; not counted) + 20 GiB gp3 volume"
    )
    assert line(result, "App").monthly_usd == pytest.approx(20 * P.ebs_gib_month["gp3"])
    assert "No price for x9.huge (App); not counted." in result.assumptions


def test_instance_type_from_a_template_parameter_default_is_priced() -> None:
    tmpl = template(App=resource("AWS::EC2::Instance", InstanceType={"Ref": "InstanceType"}))
    tmpl["Parameters"] = {"InstanceType": {"Type": "String", "Default": "r6i.xlarge"}}

    result = estimate(tmpl, "us-east-1")

    assert line(result, "App").description.startswith("r6i.xlarge instance, 730 h")


# --- Network --------------------------------------------------------------------------


def test_instance_with_an_elastic_ip_pays_for_one_public_address_not_two() -> None:
    result = estimate(
        template(
            Lt=launch_template("t3.micro"),
            App=instance("Lt", "PublicSubnet1"),
            AppEip=resource("AWS::EC2::EIP", Domain="vpc", InstanceId={"Ref": "App"}),
        ),
        "us-east-1",
    )

    assert line(result, "App").description == "t3.micro instance, 730 h + 20 GiB gp3 volume"
    assert line(result, "AppEip").monthly_usd == pytest.approx(IPV4)


def test_nat_gateway_is_priced_hourly_and_its_elastic_ip_separately() -> None:
    result = estimate(production(), "us-east-1")

    assert line(result, "Nat1").monthly_usd == pytest.approx(P.nat_gateway_hourly * H)
    assert line(result, "NatEip1").monthly_usd == pytest.approx(IPV4)
    assert line(result, "NatEip1").description == "Elastic IP (public IPv4 address), 730 h"
    assert any("data they process" in note for note in result.assumptions)


def test_internet_facing_load_balancer_pays_one_public_ipv4_per_subnet() -> None:
    result = estimate(
        template(
            Public=load_balancer("PublicSubnet1", "PublicSubnet2"),
            Internal=load_balancer("PrivateSubnet1", "PrivateSubnet2", scheme="internal"),
        ),
        "us-east-1",
    )

    assert line(result, "Public").monthly_usd == pytest.approx(ALB_INTERNET_FACING_2_SUBNETS)
    assert line(result, "Public").description == (
        "application load balancer, 730 h + 1 LCU assumed + 2 public IPv4 addresses"
    )
    assert line(result, "Internal").monthly_usd == pytest.approx(
        (P.alb_hourly + ASSUMED_ALB_LCUS * P.alb_lcu_hourly) * H
    )
    assert any("assumed to use 1 LCU" in note for note in result.assumptions)


# --- Databases ------------------------------------------------------------------------


def test_multi_az_doubles_instance_and_storage_cost() -> None:
    result = estimate(
        template(
            Single=database("db.m6g.large", engine="mysql", storage=100),
            Multi=database("db.m6g.large", engine="mysql", storage=100, multi_az=True),
        ),
        "us-east-1",
    )
    single = (
        P.rds_instance_hourly["mysql"]["db.m6g.large"] * H + 100 * P.rds_storage_gib_month["gp3"]
    )

    assert line(result, "Single").monthly_usd == pytest.approx(single)
    assert line(result, "Multi").monthly_usd == pytest.approx(2 * single)
    assert line(result, "Multi").description == "db.m6g.large MySQL, Multi-AZ, 100 GiB gp3"


def test_allocated_storage_may_be_a_string_or_a_number() -> None:
    result = estimate(
        template(
            Text=database("db.t4g.small", storage="50"), Number=database("db.t4g.small", storage=50)
        ),
        "us-east-1",
    )

    assert line(result, "Text").monthly_usd == line(result, "Number").monthly_usd


def test_read_replica_is_a_single_az_instance_with_its_sources_storage_size() -> None:
    result = estimate(production(), "us-east-1")

    replica = line(result, "DbReplica")
    assert replica.description == "db.t3.small PostgreSQL read replica, single-AZ, 20 GiB gp2"
    assert replica.monthly_usd == pytest.approx(
        P.rds_instance_hourly["postgres"]["db.t3.small"] * H + 20 * P.rds_storage_gib_month["gp2"]
    )


def test_unknown_database_class_is_not_counted_but_its_storage_is() -> None:
    result = estimate(template(Db=database("db.x2g.16xlarge", storage="20")), "us-east-1")

    assert line(result, "Db").monthly_usd == pytest.approx(20 * P.rds_storage_gib_month["gp3"])
    assert "No price for db.x2g.16xlarge PostgreSQL (Db); not counted." in result.assumptions


# --- Monitoring, secrets, keys ----------------------------------------------------------


def test_each_log_group_is_assumed_to_ingest_a_stated_amount_a_month() -> None:
    result = estimate(stage_1(), "us-east-1")

    assert line(result, "AppLogs").monthly_usd == pytest.approx(LOG_GROUP)
    assert line(result, "AppLogs").description == "log group, 1 GB/month ingestion assumed"
    assert any(
        f"assumed to ingest {ASSUMED_LOG_GB_PER_MONTH:g} GB a month" in note
        for note in result.assumptions
    )


def test_flow_logs_into_a_log_group_are_counted_once_on_that_group() -> None:
    result = estimate(production(), "us-east-1")

    assert line(result, "FlowLogs").description.startswith("log group for VPC flow logs")
    assert "FlowLog" not in {line.logical_id for line in result.lines}


def test_flow_logs_to_s3_are_priced_on_the_flow_log() -> None:
    # The bucket is referenced by Fn::GetAtt, as CDK writes it; it is not a log group.
    flow_log = resource(
        "AWS::EC2::FlowLog",
        LogDestinationType="s3",
        LogDestination={"Fn::GetAtt": ["FlowLogBucket", "Arn"]},
        ResourceId={"Ref": "Vpc"},
    )

    result = estimate(
        template(FlowLog=flow_log, FlowLogBucket=resource("AWS::S3::Bucket")), "us-east-1"
    )

    assert (
        line(result, "FlowLog").description == "VPC flow logs to s3, 1 GB/month ingestion assumed"
    )
    assert line(result, "FlowLog").monthly_usd == pytest.approx(LOG_GROUP)


def test_secret_dashboard_alarm_and_kms_key_are_priced_per_month() -> None:
    result = estimate(production(), "us-east-1")

    assert line(result, "DbSecret").monthly_usd == P.secret_month
    assert line(result, "Dashboard").monthly_usd == P.dashboard_month
    assert line(result, "Alarm0").monthly_usd == P.alarm_month
    assert line(result, "DataKey").description == "customer managed KMS key"
    assert line(result, "DataKey").monthly_usd == P.kms_key_month


def test_xray_costs_nothing_within_the_free_tier_and_says_so() -> None:
    result = estimate(production(), "us-east-1")

    assert line(result, "TraceGroup").monthly_usd == 0
    assert line(result, "TraceGroup").description == "X-Ray group, within the free tier"
    assert any(note.startswith("X-Ray is priced at $0") for note in result.assumptions)


def test_xray_insights_are_named_as_not_counted() -> None:
    group = resource(
        "AWS::XRay::Group", GroupName="app", InsightsConfiguration={"InsightsEnabled": True}
    )

    result = estimate(template(Traces=group), "us-east-1")

    assert "X-Ray Insights on Traces is charged per trace; not counted." in result.assumptions


def test_free_resources_produce_no_line() -> None:
    result = estimate({"Resources": free_network()}, "us-east-1")

    assert result.lines == ()
    assert result.total_usd == 0
    assert not any("Not priced" in note for note in result.assumptions)


def test_resources_neither_free_nor_priced_are_named_in_the_assumptions() -> None:
    result = estimate(
        template(Bucket=resource("AWS::S3::Bucket"), Fn=resource("AWS::Lambda::Function")),
        "us-east-1",
    )

    assert result.lines == ()
    assert (
        "Not priced (charged only by usage, or not modelled): "
        "AWS::Lambda::Function x1, AWS::S3::Bucket x1."
    ) in result.assumptions


# --- Regions --------------------------------------------------------------------------


def test_other_regions_are_the_us_east_1_table_times_their_factor() -> None:
    home = estimate(production(), "us-east-1")
    frankfurt = estimate(production(), "eu-central-1")
    factor = REGIONS["eu-central-1"].price_factor

    assert factor > 1
    assert frankfurt.total_usd == pytest.approx(home.total_usd * factor)
    assert line(frankfurt, "Db").monthly_usd == pytest.approx(line(home, "Db").monthly_usd * factor)
    assert (
        f"Prices for eu-central-1 are the us-east-1 table times {factor:g}, "
        "an approximation of that region's list prices."
    ) in frankfurt.assumptions
    assert any("other regions use them times a regional factor" in n for n in home.assumptions)


def test_common_commercial_regions_are_known() -> None:
    assert {
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-southeast-2",
        "ap-northeast-1",
    } <= set(REGIONS)
    assert len(REGIONS) >= 15


def test_unknown_region_raises_value_error_listing_the_known_ones() -> None:
    with pytest.raises(ValueError) as raised:
        estimate(stage_1(), "mars-east-1")

    message = str(raised.value)
    assert message.startswith("no prices for region 'mars-east-1'; known regions: ")
    assert all(code in message for code in REGIONS)


# --- The price table ------------------------------------------------------------------


def test_price_table_covers_the_common_instance_types_and_database_classes() -> None:
    sizes = ("nano", "micro", "small", "medium", "large", "xlarge", "2xlarge")
    for family in ("t3", "t3a", "t4g"):
        assert {f"{family}.{size}" for size in sizes} <= set(P.ec2_instance_hourly)
    for family in ("m5", "m6i", "m7g", "c5", "c6i", "r5", "r6i"):
        assert {f"{family}.{size}" for size in ("large", "xlarge", "2xlarge")} <= set(
            P.ec2_instance_hourly
        )
    for engine in ("postgres", "mysql"):
        classes = set(P.rds_instance_hourly[engine])
        for family in ("t3", "t4g"):
            assert {f"db.{family}.{s}" for s in ("micro", "small", "medium", "large")} <= classes
        for family in ("m5", "m6g", "r5", "r6g"):
            assert {f"db.{family}.{s}" for s in ("large", "xlarge", "2xlarge")} <= classes
    assert P.public_ipv4_hourly == 0.005
    assert P.region == "us-east-1"
    assert P.as_of == PRICES_AS_OF


# --- Live prices ----------------------------------------------------------------------

LIVE_BASE = DEFAULT_PRICES.model_copy(
    update={
        "ec2_instance_hourly": {"t3.micro": 0.0104, "t3.small": 0.0208},
        "rds_instance_hourly": {"postgres": {"db.t3.micro": 0.018}},
    }
)


def pricing_client() -> Any:
    return boto3.client(
        "pricing",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def price_list_item(service_code: str, attributes: dict[str, str], usd: str) -> str:
    """One Price List product as the API returns it: a JSON string."""
    sku = "ABCDEFGHIJKLMNOP"
    return json.dumps(
        {
            "product": {"productFamily": "Compute Instance", "attributes": attributes, "sku": sku},
            "serviceCode": service_code,
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "endRange": "Inf",
                                "description": f"${usd} per On Demand Linux Instance Hour",
                                "appliesTo": [],
                                "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2025-01-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                },
                "Reserved": {},
            },
            "version": "20250101000000",
            "publicationDate": "2025-01-01T00:00:00Z",
        }
    )


def ec2_request(instance_type: str, location: str) -> dict[str, Any]:
    fields = [
        ("instanceType", instance_type),
        ("location", location),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
    ]
    return {
        "ServiceCode": "AmazonEC2",
        "Filters": [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in fields],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }


def rds_request(db_class: str, location: str) -> dict[str, Any]:
    fields = [
        ("instanceType", db_class),
        ("location", location),
        ("databaseEngine", "PostgreSQL"),
        ("deploymentOption", "Single-AZ"),
    ]
    return {
        "ServiceCode": "AmazonRDS",
        "Filters": [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in fields],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }


def products(*items: str) -> dict[str, Any]:
    return {"FormatVersion": "aws_v1", "PriceList": list(items)}


def test_live_prices_replace_instance_and_database_prices_for_the_region() -> None:
    client = pricing_client()
    frankfurt = "EU (Frankfurt)"
    factor = REGIONS["eu-central-1"].price_factor
    with Stubber(client) as stub:
        stub.add_response(
            "get_products",
            products(
                price_list_item(
                    "AmazonEC2",
                    {"instanceType": "t3.micro", "location": frankfurt, "operatingSystem": "Linux"},
                    "0.0120000000",
                )
            ),
            ec2_request("t3.micro", frankfurt),
        )
        # No product for t3.small there: it keeps the us-east-1 price times the factor.
        stub.add_response("get_products", products(), ec2_request("t3.small", frankfurt))
        stub.add_response(
            "get_products",
            products(
                price_list_item(
                    "AmazonRDS",
                    {"instanceType": "db.t3.micro", "databaseEngine": "PostgreSQL"},
                    "0.0210000000",
                )
            ),
            rds_request("db.t3.micro", frankfurt),
        )

        table = live_prices("eu-central-1", client, base=LIVE_BASE)
        stub.assert_no_pending_responses()

    assert table.region == "eu-central-1"
    assert table.as_of == "live eu-central-1"
    assert table.ec2_instance_hourly["t3.micro"] == 0.012
    assert table.ec2_instance_hourly["t3.small"] == pytest.approx(0.0208 * factor)
    assert table.rds_instance_hourly["postgres"]["db.t3.micro"] == 0.021
    assert table.nat_gateway_hourly == pytest.approx(P.nat_gateway_hourly * factor)
    assert any("no eu-central-1 price for t3.small" in note for note in table.notes)


def test_estimate_with_live_prices_applies_no_second_regional_factor() -> None:
    live: PriceTable = LIVE_BASE.model_copy(
        update={"region": "eu-central-1", "as_of": "live eu-central-1", "notes": ("live",)}
    )
    app = resource("AWS::EC2::Instance", InstanceType="t3.micro", BlockDeviceMappings=[])
    tmpl = template(App=app)

    result = estimate(tmpl, "eu-central-1", live)

    assert result.prices_as_of == "live eu-central-1"
    assert line(result, "App").monthly_usd == pytest.approx(0.0104 * H + 8 * P.ebs_gib_month["gp3"])
    assert "live" in result.assumptions
    with pytest.raises(ValueError, match="price table is for eu-central-1"):
        estimate(tmpl, "eu-west-1", live)


def test_live_prices_error_names_the_call_and_the_aws_message() -> None:
    client = pricing_client()
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_products",
            service_error_code="AccessDeniedException",
            service_message="User is not authorized to perform: pricing:GetProducts",
            http_status_code=400,
        )
        with pytest.raises(LivePricesError) as raised:
            live_prices("us-east-1", client, base=LIVE_BASE)

    message = str(raised.value)
    assert "pricing:GetProducts (AmazonEC2, instanceType=t3.micro" in message
    assert "AccessDeniedException: User is not authorized to perform: pricing:GetProducts" in (
        message
    )
    assert raised.value.next_step is not None and "--live-prices" in raised.value.next_step


def test_live_prices_for_an_unknown_region_raise_value_error() -> None:
    with pytest.raises(ValueError, match="known regions"):
        live_prices("mars-east-1", pricing_client(), base=LIVE_BASE)
