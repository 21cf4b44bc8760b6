"""The cost model: what a synthesized CloudFormation template will cost a month.

`estimate` is a pure function of a template (the parsed JSON), a region and a
`PriceTable`: no clock, no I/O, no randomness. It prices each resource that
costs money by the hour or by the month, says in plain words what it priced,
and lists every assumption it had to make, so the number shown before a
deployment can be checked by a person.

The one price table lives here (`DEFAULT_PRICES`: on-demand us-east-1 list
prices, dated by `PRICES_AS_OF`); other regions are approximated as that table
times a regional factor (`REGIONS`). `live_prices` replaces the instance and
database prices with the AWS Price List API's for one region.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, NamedTuple, NoReturn, Protocol

from pydantic import BaseModel, ConfigDict

from hivemind.errors import HiveMindError

HOURS_PER_MONTH: Final = 730
BASE_REGION: Final = "us-east-1"
PRICES_AS_OF: Final = "2025-01"
PRICE_SOURCE: Final = (
    "AWS public on-demand price pages for us-east-1 (EC2 Linux, EBS, VPC, Elastic Load "
    "Balancing, RDS, Secrets Manager, CloudWatch, KMS), transcribed into HiveMind as of "
    f"{PRICES_AS_OF}, not fetched"
)

# Usage HiveMind cannot know before the application runs; stated in every estimate
# that relies on them.
ASSUMED_ALB_LCUS: Final = 1.0
ASSUMED_LOG_GB_PER_MONTH: Final = 1.0
# What an instance gets when its template names no EBS volume: the Amazon Linux 2023
# AMI's root volume.
DEFAULT_ROOT_VOLUME_GIB: Final = 8
DEFAULT_ROOT_VOLUME_TYPE: Final = "gp3"
# EC2 and RDS both default to gp2 when a volume's size is given without a type.
DEFAULT_VOLUME_TYPE: Final = "gp2"

ENGINE_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {"postgres": "PostgreSQL", "mysql": "MySQL"}
)


@dataclass(frozen=True)
class Region:
    """A commercial AWS region HiveMind can price.

    `location` is the Price List API's name for it; `price_factor` approximates its
    prices as the us-east-1 price times this factor.
    """

    code: str
    location: str
    price_factor: float


REGIONS: Final[Mapping[str, Region]] = MappingProxyType(
    {
        region.code: region
        for region in (
            Region("us-east-1", "US East (N. Virginia)", 1.0),
            Region("us-east-2", "US East (Ohio)", 1.0),
            Region("us-west-1", "US West (N. California)", 1.2),
            Region("us-west-2", "US West (Oregon)", 1.0),
            Region("ca-central-1", "Canada (Central)", 1.1),
            Region("sa-east-1", "South America (Sao Paulo)", 1.6),
            Region("eu-west-1", "EU (Ireland)", 1.1),
            Region("eu-west-2", "EU (London)", 1.15),
            Region("eu-west-3", "EU (Paris)", 1.15),
            Region("eu-central-1", "EU (Frankfurt)", 1.15),
            Region("eu-north-1", "EU (Stockholm)", 1.05),
            Region("ap-south-1", "Asia Pacific (Mumbai)", 1.1),
            Region("ap-northeast-1", "Asia Pacific (Tokyo)", 1.3),
            Region("ap-northeast-2", "Asia Pacific (Seoul)", 1.25),
            Region("ap-southeast-1", "Asia Pacific (Singapore)", 1.25),
            Region("ap-southeast-2", "Asia Pacific (Sydney)", 1.25),
        )
    }
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PriceTable(_Frozen):
    """On-demand prices in USD for one region, with where and when they came from.

    Hourly prices are per hour of running; storage is per GiB-month; database
    prices are single-AZ (Multi-AZ costs twice as much, instance and storage alike).
    `notes` are caveats about the table itself, repeated in every estimate made with it.
    """

    region: str
    as_of: str
    source: str
    ec2_instance_hourly: dict[str, float]
    # engine ("postgres", "mysql") -> DB instance class -> single-AZ hourly price
    rds_instance_hourly: dict[str, dict[str, float]]
    ebs_gib_month: dict[str, float]
    rds_storage_gib_month: dict[str, float]
    nat_gateway_hourly: float
    public_ipv4_hourly: float
    alb_hourly: float
    alb_lcu_hourly: float
    secret_month: float
    dashboard_month: float
    alarm_month: float
    logs_ingestion_gb: float
    kms_key_month: float
    # A manual RDS snapshot (a final snapshot kept after `destroy`) is billed as backup
    # storage, per GiB-month, with no free allowance once its instance is gone
    # (aws.amazon.com/rds/postgresql/pricing, "Backup Storage", us-east-1).
    rds_snapshot_gib_month: float = 0.095
    notes: tuple[str, ...] = ()


DEFAULT_PRICES: Final = PriceTable(
    region=BASE_REGION,
    as_of=PRICES_AS_OF,
    source=PRICE_SOURCE,
    ec2_instance_hourly={
        "t3.nano": 0.0052,
        "t3.micro": 0.0104,
        "t3.small": 0.0208,
        "t3.medium": 0.0416,
        "t3.large": 0.0832,
        "t3.xlarge": 0.1664,
        "t3.2xlarge": 0.3328,
        "t3a.nano": 0.0047,
        "t3a.micro": 0.0094,
        "t3a.small": 0.0188,
        "t3a.medium": 0.0376,
        "t3a.large": 0.0752,
        "t3a.xlarge": 0.1504,
        "t3a.2xlarge": 0.3008,
        "t4g.nano": 0.0042,
        "t4g.micro": 0.0084,
        "t4g.small": 0.0168,
        "t4g.medium": 0.0336,
        "t4g.large": 0.0672,
        "t4g.xlarge": 0.1344,
        "t4g.2xlarge": 0.2688,
        "m5.large": 0.096,
        "m5.xlarge": 0.192,
        "m5.2xlarge": 0.384,
        "m6i.large": 0.096,
        "m6i.xlarge": 0.192,
        "m6i.2xlarge": 0.384,
        "m7g.medium": 0.0408,
        "m7g.large": 0.0816,
        "m7g.xlarge": 0.1632,
        "m7g.2xlarge": 0.3264,
        "c5.large": 0.085,
        "c5.xlarge": 0.17,
        "c5.2xlarge": 0.34,
        "c6i.large": 0.085,
        "c6i.xlarge": 0.17,
        "c6i.2xlarge": 0.34,
        "r5.large": 0.126,
        "r5.xlarge": 0.252,
        "r5.2xlarge": 0.504,
        "r6i.large": 0.126,
        "r6i.xlarge": 0.252,
        "r6i.2xlarge": 0.504,
    },
    rds_instance_hourly={
        "postgres": {
            "db.t3.micro": 0.018,
            "db.t3.small": 0.036,
            "db.t3.medium": 0.072,
            "db.t3.large": 0.145,
            "db.t4g.micro": 0.016,
            "db.t4g.small": 0.032,
            "db.t4g.medium": 0.065,
            "db.t4g.large": 0.129,
            "db.m5.large": 0.178,
            "db.m5.xlarge": 0.356,
            "db.m5.2xlarge": 0.712,
            "db.m6g.large": 0.159,
            "db.m6g.xlarge": 0.318,
            "db.m6g.2xlarge": 0.636,
            "db.r5.large": 0.25,
            "db.r5.xlarge": 0.5,
            "db.r5.2xlarge": 1.0,
            "db.r6g.large": 0.225,
            "db.r6g.xlarge": 0.45,
            "db.r6g.2xlarge": 0.899,
        },
        "mysql": {
            "db.t3.micro": 0.017,
            "db.t3.small": 0.034,
            "db.t3.medium": 0.068,
            "db.t3.large": 0.136,
            "db.t4g.micro": 0.016,
            "db.t4g.small": 0.032,
            "db.t4g.medium": 0.065,
            "db.t4g.large": 0.129,
            "db.m5.large": 0.171,
            "db.m5.xlarge": 0.342,
            "db.m5.2xlarge": 0.684,
            "db.m6g.large": 0.152,
            "db.m6g.xlarge": 0.304,
            "db.m6g.2xlarge": 0.608,
            "db.r5.large": 0.24,
            "db.r5.xlarge": 0.48,
            "db.r5.2xlarge": 0.96,
            "db.r6g.large": 0.215,
            "db.r6g.xlarge": 0.43,
            "db.r6g.2xlarge": 0.86,
        },
    },
    ebs_gib_month={
        "gp3": 0.08,
        "gp2": 0.10,
        "io1": 0.125,
        "io2": 0.125,
        "st1": 0.045,
        "sc1": 0.015,
        "standard": 0.05,
    },
    rds_storage_gib_month={"gp3": 0.115, "gp2": 0.115, "io1": 0.125, "standard": 0.10},
    nat_gateway_hourly=0.045,
    public_ipv4_hourly=0.005,
    alb_hourly=0.0225,
    alb_lcu_hourly=0.008,
    secret_month=0.40,
    dashboard_month=3.00,
    alarm_month=0.10,
    logs_ingestion_gb=0.50,
    kms_key_month=1.00,
)


class CostLine(_Frozen):
    """The estimated monthly cost of one resource, and what was priced, in plain words."""

    logical_id: str
    resource_type: str
    description: str
    monthly_usd: float


class CostEstimate(_Frozen):
    """A template's estimated monthly cost: one line per priced resource, and the total.

    `lines` are sorted by cost, highest first, then by logical id; `total_usd` is their
    sum. `assumptions` lists everything the numbers rest on that a person should know.
    """

    region: str
    lines: tuple[CostLine, ...]
    total_usd: float
    prices_as_of: str
    price_source: str
    assumptions: tuple[str, ...]

    def by_type(self) -> dict[str, float]:
        """Monthly cost per resource type, highest first (then by type name)."""
        totals: dict[str, list[float]] = {}
        for line in self.lines:
            totals.setdefault(line.resource_type, []).append(line.monthly_usd)
        summed = {resource_type: math.fsum(costs) for resource_type, costs in totals.items()}
        return dict(sorted(summed.items(), key=lambda item: (-item[1], item[0])))


def known_regions() -> tuple[str, ...]:
    """The region codes `estimate` and `live_prices` accept, sorted."""
    return tuple(sorted(REGIONS))


def estimate(
    template: Mapping[str, Any], region: str, prices: PriceTable = DEFAULT_PRICES
) -> CostEstimate:
    """Estimate the monthly on-demand cost (730 hours) of `template` deployed in `region`.

    Every resource that costs money by the hour or month gets one line; free resources
    (VPC, subnets, routes, security groups, IAM, listeners, ...) get none. A resource
    whose type or class has no price gets a line that does not count that part, named
    in `assumptions`. Raises `ValueError` for a region not in `REGIONS`, or for a price
    table made for another region than us-east-1 and `region`.
    """
    factor, region_note = _region_factor(prices, region)
    pricer = _Pricer(_Template(template), prices)
    lines: list[CostLine] = []
    unpriced: Counter[str] = Counter()
    for logical_id, resource_type, properties in pricer.template.resources():
        price = _PRICERS.get(resource_type)
        if price is None:
            if not _is_free(resource_type):
                unpriced[resource_type] += 1
            continue
        priced = price(pricer, logical_id, properties)
        if priced is not None:
            lines.append(
                CostLine(
                    logical_id=logical_id,
                    resource_type=resource_type,
                    description=priced.description,
                    monthly_usd=priced.monthly_usd * factor,
                )
            )
    lines.sort(key=lambda line: (-line.monthly_usd, line.logical_id))

    assumptions = [
        f"Monthly cost is {HOURS_PER_MONTH} hours of on-demand use: no Savings Plans, "
        "Reserved Instances or free tier (the account's free tier may be used elsewhere).",
        region_note,
        *prices.notes,
        "Data transfer, requests and other charges by usage are not counted.",
        *pricer.notes,
    ]
    if unpriced:
        listed = ", ".join(f"{name} x{count}" for name, count in sorted(unpriced.items()))
        assumptions.append(f"Not priced (charged only by usage, or not modelled): {listed}.")
    return CostEstimate(
        region=region,
        lines=tuple(lines),
        total_usd=math.fsum(line.monthly_usd for line in lines),
        prices_as_of=prices.as_of,
        price_source=prices.source,
        assumptions=tuple(dict.fromkeys(assumptions)),
    )


def _region(region: str) -> Region:
    try:
        return REGIONS[region]
    except KeyError:
        known = ", ".join(known_regions())
        raise ValueError(f"no prices for region {region!r}; known regions: {known}") from None


def _region_factor(prices: PriceTable, region: str) -> tuple[float, str]:
    """The factor that turns `prices` into `region`'s prices, and how to say so."""
    target = _region(region)
    if prices.region == region:
        if region == BASE_REGION:
            return 1.0, (
                f"Prices are {BASE_REGION} list prices; other regions use them times a "
                "regional factor."
            )
        return 1.0, f"Prices are the price table's {region} prices ({prices.as_of})."
    if prices.region != BASE_REGION:
        raise ValueError(
            f"the price table is for {prices.region}; estimate in {prices.region} "
            f"or use prices for {region}"
        )
    return target.price_factor, (
        f"Prices for {region} are the {BASE_REGION} table times {target.price_factor:g}, "
        "an approximation of that region's list prices."
    )


# Resources that cost nothing to exist; anything neither here nor priced is named in
# the estimate's assumptions, so a total never silently leaves something out.
_FREE_TYPES: Final = frozenset(
    {
        "AWS::CDK::Metadata",
        "AWS::CloudFormation::WaitCondition",
        "AWS::CloudFormation::WaitConditionHandle",
        "AWS::EC2::EIPAssociation",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::KeyPair",
        "AWS::EC2::LaunchTemplate",
        "AWS::EC2::NetworkAcl",
        "AWS::EC2::NetworkAclEntry",
        "AWS::EC2::Route",
        "AWS::EC2::RouteTable",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::SecurityGroupEgress",
        "AWS::EC2::SecurityGroupIngress",
        "AWS::EC2::Subnet",
        "AWS::EC2::SubnetNetworkAclAssociation",
        "AWS::EC2::SubnetRouteTableAssociation",
        "AWS::EC2::VPC",
        "AWS::EC2::VPCGatewayAttachment",
        "AWS::ElasticLoadBalancingV2::Listener",
        "AWS::ElasticLoadBalancingV2::ListenerCertificate",
        "AWS::ElasticLoadBalancingV2::ListenerRule",
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        "AWS::KMS::Alias",
        "AWS::Logs::MetricFilter",
        "AWS::Logs::SubscriptionFilter",
        "AWS::RDS::DBParameterGroup",
        "AWS::RDS::DBSubnetGroup",
        "AWS::RDS::OptionGroup",
        "AWS::SSM::Parameter",
        "AWS::SecretsManager::ResourcePolicy",
        "AWS::SecretsManager::SecretTargetAttachment",
    }
)
_FREE_PREFIXES: Final = ("AWS::IAM::",)


def _is_free(resource_type: str) -> bool:
    return resource_type in _FREE_TYPES or resource_type.startswith(_FREE_PREFIXES)


class _Template:
    """Read access to a template's resources, following Ref and Fn::GetAtt inside it."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self._resources = _mapping(template.get("Resources"))
        self._parameters = _mapping(template.get("Parameters"))
        self._mappings = _mapping(template.get("Mappings"))

    def resources(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """(logical id, type, properties) of every resource, by logical id."""
        for logical_id in sorted(self._resources):
            resource = _mapping(self._resources[logical_id])
            yield logical_id, str(resource.get("Type", "")), _mapping(resource.get("Properties"))

    def of_type(self, resource_type: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for logical_id, type_, properties in self.resources():
            if type_ == resource_type:
                yield logical_id, properties

    def target(self, value: object, resource_type: str) -> tuple[str, Mapping[str, Any]] | None:
        """The resource of `resource_type` that `value` (a Ref or Fn::GetAtt) points at."""
        for logical_id in _referenced_ids(value):
            resource = _mapping(self._resources.get(logical_id))
            if resource.get("Type") == resource_type:
                return logical_id, _mapping(resource.get("Properties"))
        return None

    def scalar(self, value: object) -> str | int | float | bool | None:
        """`value` as a plain value: literals as they are, a parameter's Ref as its
        default, Fn::FindInMap with literal keys as the mapped value; else None."""
        if isinstance(value, str | int | float | bool):
            return value
        if isinstance(value, Mapping) and len(value) == 1:
            if "Ref" in value:
                parameter = _mapping(self._parameters.get(str(value["Ref"])))
                return self.scalar(parameter.get("Default"))
            if "Fn::FindInMap" in value:
                keys = value["Fn::FindInMap"]
                if isinstance(keys, list) and len(keys) == 3:
                    found: object = self._mappings
                    for key in (self.scalar(k) for k in keys):
                        found = _mapping(found).get(str(key))
                    return self.scalar(found)
        return None

    def text(self, value: object) -> str | None:
        resolved = self.scalar(value)
        return None if resolved is None else str(resolved)

    def number(self, value: object) -> float | None:
        resolved = self.scalar(value)
        if isinstance(resolved, bool) or resolved is None:
            return None
        try:
            return float(resolved)
        except ValueError:
            return None

    def flag(self, value: object) -> bool | None:
        resolved = self.scalar(value)
        if resolved is None:
            return None
        return resolved is True or str(resolved).lower() == "true"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _referenced_ids(value: object) -> Iterator[str]:
    """Logical ids named by every Ref and Fn::GetAtt anywhere inside `value`."""
    if isinstance(value, Mapping):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                yield inner
            elif key == "Fn::GetAtt" and isinstance(inner, list) and inner:
                yield str(inner[0])
            elif key == "Fn::GetAtt" and isinstance(inner, str):
                yield inner.split(".", 1)[0]
            else:
                yield from _referenced_ids(inner)
    elif isinstance(value, list):
        for item in value:
            yield from _referenced_ids(item)


def _gib(size: float) -> str:
    return f"{size:g} GiB"


class _Priced(NamedTuple):
    monthly_usd: float
    description: str


class _Pricer:
    """Prices one template's resources in the price table's region; collects notes."""

    def __init__(self, template: _Template, prices: PriceTable) -> None:
        self.template = template
        self.prices = prices
        self.notes: list[str] = []
        # An Elastic IP attached to an instance replaces its automatic public address;
        # the EIP's own line counts it.
        self._instances_with_eip = {
            target_id
            for _, eip in template.of_type("AWS::EC2::EIP")
            for target_id in _referenced_ids(eip.get("InstanceId"))
        }
        # Logs a flow log delivers to a log group here are counted on that group.
        self._flow_log_groups: dict[str, str] = {}
        for flow_log_id, flow_log in template.of_type("AWS::EC2::FlowLog"):
            destination = [flow_log.get("LogGroupName"), flow_log.get("LogDestination")]
            group = template.target(destination, "AWS::Logs::LogGroup")
            if group is not None:
                self._flow_log_groups[group[0]] = flow_log_id

    def _note(self, note: str) -> None:
        self.notes.append(note)

    def _hours(self, hourly: float) -> float:
        return hourly * HOURS_PER_MONTH

    def ec2_instance(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        launch_template = self.template.target(
            _mapping(properties.get("LaunchTemplate")).get("LaunchTemplateId")
            or _mapping(properties.get("LaunchTemplate")).get("LaunchTemplateName"),
            "AWS::EC2::LaunchTemplate",
        )
        template_data = (
            _mapping(launch_template[1].get("LaunchTemplateData")) if launch_template else {}
        )
        instance_type = self.template.text(
            properties.get("InstanceType", template_data.get("InstanceType"))
        )
        monthly = 0.0
        hourly = self.prices.ec2_instance_hourly.get(instance_type or "")
        if instance_type is None:
            parts = ["instance of unknown type (not counted)"]
            self._note(f"No instance type found for {logical_id}; its compute is not counted.")
        elif hourly is None:
            parts = [f"{instance_type} instance (no price; not counted)"]
            self._note(f"No price for {instance_type} ({logical_id}); not counted.")
        else:
            monthly += self._hours(hourly)
            parts = [f"{instance_type} instance, {HOURS_PER_MONTH} h"]

        for size, volume_type in self._instance_volumes(logical_id, properties, template_data):
            per_gib = self.prices.ebs_gib_month.get(volume_type)
            if per_gib is None:
                parts.append(f"{_gib(size)} {volume_type} volume (no price; not counted)")
                self._note(f"No price for {volume_type} volumes ({logical_id}); not counted.")
            else:
                monthly += size * per_gib
                parts.append(f"{_gib(size)} {volume_type} volume")

        if self._has_public_ipv4(logical_id, properties, template_data):
            monthly += self._hours(self.prices.public_ipv4_hourly)
            parts.append("public IPv4 address")
        return _Priced(monthly, " + ".join(parts))

    def _instance_volumes(
        self, logical_id: str, properties: Mapping[str, Any], template_data: Mapping[str, Any]
    ) -> Iterator[tuple[float, str]]:
        """(GiB, volume type) of each EBS volume the instance launches with."""
        mappings = properties.get("BlockDeviceMappings", template_data.get("BlockDeviceMappings"))
        volumes = [
            _mapping(mapping.get("Ebs"))
            for mapping in (mappings if isinstance(mappings, list) else [])
            if isinstance(mapping, Mapping) and isinstance(mapping.get("Ebs"), Mapping)
        ]
        if not volumes:
            self._note(
                f"{logical_id} names no EBS volume; assumed the AMI's "
                f"{_gib(DEFAULT_ROOT_VOLUME_GIB)} {DEFAULT_ROOT_VOLUME_TYPE} root volume."
            )
            yield float(DEFAULT_ROOT_VOLUME_GIB), DEFAULT_ROOT_VOLUME_TYPE
            return
        for volume in volumes:
            size = self.template.number(volume.get("VolumeSize"))
            if size is None:
                self._note(
                    f"{logical_id} has a volume without a size; assumed "
                    f"{_gib(DEFAULT_ROOT_VOLUME_GIB)}."
                )
                size = float(DEFAULT_ROOT_VOLUME_GIB)
            yield size, self.template.text(volume.get("VolumeType")) or DEFAULT_VOLUME_TYPE

    def _has_public_ipv4(
        self, logical_id: str, properties: Mapping[str, Any], template_data: Mapping[str, Any]
    ) -> bool:
        if logical_id in self._instances_with_eip:
            return False
        interfaces = [
            _primary_interface(properties.get("NetworkInterfaces")),
            _primary_interface(template_data.get("NetworkInterfaces")),
        ]
        # An interface's explicit choice overrides what the subnet would do.
        for interface in interfaces:
            explicit = self.template.flag(interface.get("AssociatePublicIpAddress"))
            if explicit is not None:
                return explicit
        subnet_ref = properties.get("SubnetId") or next(
            (i["SubnetId"] for i in interfaces if i.get("SubnetId")), None
        )
        subnet = self.template.target(subnet_ref, "AWS::EC2::Subnet")
        return (
            subnet is not None and self.template.flag(subnet[1].get("MapPublicIpOnLaunch")) is True
        )

    def elastic_ip(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        return _Priced(
            self._hours(self.prices.public_ipv4_hourly),
            f"Elastic IP (public IPv4 address), {HOURS_PER_MONTH} h",
        )

    def nat_gateway(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        self._note(
            "NAT gateways are priced by the hour; the data they process is charged per GB "
            "and not counted (their Elastic IPs have lines of their own)."
        )
        return _Priced(
            self._hours(self.prices.nat_gateway_hourly), f"NAT gateway, {HOURS_PER_MONTH} h"
        )

    def load_balancer(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        kind = self.template.text(properties.get("Type")) or "application"
        if kind != "application":
            self._note(f"No price for a {kind} load balancer ({logical_id}); not counted.")
            return _Priced(0.0, f"{kind} load balancer (no price; not counted)")
        self._note(
            f"Each application load balancer is assumed to use {ASSUMED_ALB_LCUS:g} LCU "
            "(load balancer capacity unit) on average."
        )
        monthly = self._hours(
            self.prices.alb_hourly + ASSUMED_ALB_LCUS * self.prices.alb_lcu_hourly
        )
        parts = [
            f"application load balancer, {HOURS_PER_MONTH} h",
            f"{ASSUMED_ALB_LCUS:g} LCU assumed",
        ]
        # CloudFormation's default scheme is internet-facing: one public address per subnet.
        if (self.template.text(properties.get("Scheme")) or "internet-facing") == "internet-facing":
            subnets = properties.get("Subnets", properties.get("SubnetMappings"))
            if isinstance(subnets, list):
                addresses = len(subnets)
            else:
                addresses = 2
                self._note(f"Subnets of {logical_id} are not listed; assumed 2.")
            monthly += addresses * self._hours(self.prices.public_ipv4_hourly)
            parts.append(f"{addresses} public IPv4 address{'es' if addresses != 1 else ''}")
        return _Priced(monthly, " + ".join(parts))

    def db_instance(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        is_replica = "SourceDBInstanceIdentifier" in properties
        source: Mapping[str, Any] = {}
        if is_replica:
            found = self.template.target(
                properties["SourceDBInstanceIdentifier"], "AWS::RDS::DBInstance"
            )
            if found is None:
                self._note(f"The source of read replica {logical_id} is not in this template.")
            else:
                source = found[1]

        def own_or_source(name: str) -> object:
            return properties[name] if name in properties else source.get(name)

        engine = (self.template.text(own_or_source("Engine")) or "").lower()
        engine_name = ENGINE_NAMES.get(engine, engine or "unknown engine")
        db_class = self.template.text(properties.get("DBInstanceClass")) or "unknown class"
        multi_az = self.template.flag(properties.get("MultiAZ")) is True
        copies = 2 if multi_az else 1
        role = " read replica" if is_replica else ""
        parts = [f"{db_class} {engine_name}{role}", "Multi-AZ" if multi_az else "single-AZ"]

        monthly = 0.0
        hourly = self.prices.rds_instance_hourly.get(engine, {}).get(db_class)
        if hourly is None:
            parts[0] += " (no price; not counted)"
            self._note(f"No price for {db_class} {engine_name} ({logical_id}); not counted.")
        else:
            monthly += copies * self._hours(hourly)

        # A replica's storage is the source's size; its type is its own when given.
        storage_gib = self.template.number(own_or_source("AllocatedStorage"))
        storage_type = self.template.text(own_or_source("StorageType")) or DEFAULT_VOLUME_TYPE
        per_gib = self.prices.rds_storage_gib_month.get(storage_type)
        if storage_gib is None:
            parts.append("storage size unknown (not counted)")
            self._note(f"No allocated storage found for {logical_id}; its storage is not counted.")
        elif per_gib is None:
            parts.append(f"{_gib(storage_gib)} {storage_type} (no price; not counted)")
            self._note(f"No price for {storage_type} RDS storage ({logical_id}); not counted.")
        else:
            monthly += copies * storage_gib * per_gib
            parts.append(f"{_gib(storage_gib)} {storage_type}")
        return _Priced(monthly, ", ".join(parts))

    def secret(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        return _Priced(self.prices.secret_month, "Secrets Manager secret")

    def dashboard(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        return _Priced(self.prices.dashboard_month, "CloudWatch dashboard")

    def alarm(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        return _Priced(self.prices.alarm_month, "standard-resolution alarm")

    def log_group(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        what = "log group for VPC flow logs" if logical_id in self._flow_log_groups else "log group"
        return self._log_ingestion(what)

    def flow_log(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced | None:
        if logical_id in self._flow_log_groups.values():
            return None
        destination = self.template.text(properties.get("LogDestinationType")) or "cloud-watch-logs"
        return self._log_ingestion(f"VPC flow logs to {destination}")

    def _log_ingestion(self, what: str) -> _Priced:
        self._note(
            "Each log group, and each flow log not sent to one, is assumed to ingest "
            f"{ASSUMED_LOG_GB_PER_MONTH:g} GB a month; vended logs such as VPC flow logs are "
            "priced like any other log ingestion; log storage is not counted."
        )
        return _Priced(
            ASSUMED_LOG_GB_PER_MONTH * self.prices.logs_ingestion_gb,
            f"{what}, {ASSUMED_LOG_GB_PER_MONTH:g} GB/month ingestion assumed",
        )

    def xray(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        self._note(
            "X-Ray is priced at $0: traces are assumed to stay within the free tier "
            "(100,000 recorded a month)."
        )
        insights = _mapping(properties.get("InsightsConfiguration")).get("InsightsEnabled")
        if self.template.flag(insights):
            self._note(f"X-Ray Insights on {logical_id} is charged per trace; not counted.")
        what = "X-Ray group" if "GroupName" in properties else "X-Ray sampling rule"
        return _Priced(0.0, f"{what}, within the free tier")

    def kms_key(self, logical_id: str, properties: Mapping[str, Any]) -> _Priced:
        return _Priced(self.prices.kms_key_month, "customer managed KMS key")


def _primary_interface(interfaces: object) -> Mapping[str, Any]:
    """The network interface at device index 0 (or the first one listed)."""
    listed = (
        [i for i in interfaces if isinstance(i, Mapping)] if isinstance(interfaces, list) else []
    )
    for interface in listed:
        if str(interface.get("DeviceIndex", "")) == "0":
            return interface
    return listed[0] if listed else {}


_PRICERS: Final[Mapping[str, Callable[[_Pricer, str, Mapping[str, Any]], _Priced | None]]] = (
    MappingProxyType(
        {
            "AWS::EC2::Instance": _Pricer.ec2_instance,
            "AWS::EC2::EIP": _Pricer.elastic_ip,
            "AWS::EC2::NatGateway": _Pricer.nat_gateway,
            "AWS::ElasticLoadBalancingV2::LoadBalancer": _Pricer.load_balancer,
            "AWS::RDS::DBInstance": _Pricer.db_instance,
            "AWS::SecretsManager::Secret": _Pricer.secret,
            "AWS::CloudWatch::Dashboard": _Pricer.dashboard,
            "AWS::CloudWatch::Alarm": _Pricer.alarm,
            "AWS::Logs::LogGroup": _Pricer.log_group,
            "AWS::EC2::FlowLog": _Pricer.flow_log,
            "AWS::XRay::Group": _Pricer.xray,
            "AWS::XRay::SamplingRule": _Pricer.xray,
            "AWS::KMS::Key": _Pricer.kms_key,
        }
    )
)


# --- Live prices ----------------------------------------------------------------------


class PricingClient(Protocol):
    """What `live_prices` needs of a boto3 ``pricing`` client."""

    def get_products(self, **kwargs: Any) -> Mapping[str, Any]: ...


class LivePricesError(HiveMindError):
    """The AWS Price List API refused or failed a call `live_prices` made."""


_EC2_LINUX_ON_DEMAND: Final = (
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
)


def live_prices(
    region: str, client: PricingClient, *, base: PriceTable = DEFAULT_PRICES
) -> PriceTable:
    """`base` with its EC2 instance and RDS database prices replaced by `region`'s live ones.

    Asks the AWS Price List API (`client` is a boto3 ``pricing`` client, which AWS serves
    from us-east-1) for the on-demand hourly price of each instance type and DB class in
    `base`: Linux, shared tenancy; databases single-AZ. Everything else, and any type
    the API has no price for, keeps `base`'s price times the region's factor, and the
    table's `notes` say so. Raises `ValueError` for an unknown region and
    `LivePricesError`, naming the call and AWS's message, when a call fails.
    """
    factor, _ = _region_factor(base, region)
    location = _region(region).location
    scaled = _scaled(base, factor)

    ec2_hourly = dict(scaled.ec2_instance_hourly)
    missing: list[str] = []
    for instance_type in sorted(base.ec2_instance_hourly):
        filters = [("instanceType", instance_type), ("location", location), *_EC2_LINUX_ON_DEMAND]
        hourly = _fetch_hourly(client, "AmazonEC2", filters, region)
        if hourly is None:
            missing.append(instance_type)
        else:
            ec2_hourly[instance_type] = hourly

    rds_hourly = {engine: dict(classes) for engine, classes in scaled.rds_instance_hourly.items()}
    for engine, classes in sorted(base.rds_instance_hourly.items()):
        for db_class in sorted(classes):
            filters = [
                ("instanceType", db_class),
                ("location", location),
                # The Price List API names engines as people do ("PostgreSQL").
                ("databaseEngine", ENGINE_NAMES.get(engine, engine)),
                ("deploymentOption", "Single-AZ"),
            ]
            hourly = _fetch_hourly(client, "AmazonRDS", filters, region)
            if hourly is None:
                missing.append(f"{db_class} {ENGINE_NAMES.get(engine, engine)}")
            else:
                rds_hourly[engine][db_class] = hourly

    notes = [
        f"EC2 instance and RDS database prices are live {region} prices from the AWS Price "
        f"List API; other prices are the {base.region} table ({base.as_of}) times {factor:g}."
    ]
    if missing:
        notes.append(
            f"The Price List API had no {region} price for {', '.join(missing)}; "
            f"used the {base.region} price times {factor:g}."
        )
    return scaled.model_copy(
        update={
            "region": region,
            "as_of": f"live {region}",
            "source": f"AWS Price List API (pricing:GetProducts) for {location}, and {base.source}",
            "ec2_instance_hourly": ec2_hourly,
            "rds_instance_hourly": rds_hourly,
            "notes": (*base.notes, *notes),
        }
    )


def _scaled(table: PriceTable, factor: float) -> PriceTable:
    """`table` with every price multiplied by `factor`."""

    def scale(value: Any) -> Any:
        if isinstance(value, float | int) and not isinstance(value, bool):
            return value * factor
        if isinstance(value, Mapping):
            return {key: scale(inner) for key, inner in value.items()}
        return value

    prices = {name: scale(value) for name, value in table.model_dump().items()}
    return PriceTable.model_validate(prices)


def _fetch_hourly(
    client: PricingClient, service_code: str, filters: list[tuple[str, str]], region: str
) -> float | None:
    """The on-demand hourly USD price of the products matching `filters`, if any.

    When several products match, the highest price wins, so an estimate errs high.
    """
    # botocore is imported only when live prices are asked for: estimates stay fast to load.
    from botocore.exceptions import BotoCoreError, ClientError

    request: dict[str, Any] = {
        "ServiceCode": service_code,
        "Filters": [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in filters],
        "FormatVersion": "aws_v1",
        "MaxResults": 100,
    }
    hourly: list[float] = []
    while True:
        try:
            response = client.get_products(**request)
        except ClientError as error:
            details = error.response.get("Error", {})
            _raise_pricing_error(
                service_code, filters, region, f"{details.get('Code')}: {details.get('Message')}"
            )
        except BotoCoreError as error:
            _raise_pricing_error(service_code, filters, region, str(error))
        for item in response.get("PriceList", []):
            product = json.loads(item) if isinstance(item, str) else item
            hourly.extend(_on_demand_hourly(product))
        next_token = response.get("NextToken")
        if not next_token:
            break
        request["NextToken"] = next_token
    return max(hourly) if hourly else None


def _on_demand_hourly(product: Mapping[str, Any]) -> Iterator[float]:
    """Each positive on-demand per-hour USD price in one Price List product."""
    for term in _mapping(_mapping(product.get("terms")).get("OnDemand")).values():
        for dimension in _mapping(_mapping(term).get("priceDimensions")).values():
            if _mapping(dimension).get("unit") != "Hrs":
                continue
            usd = float(_mapping(dimension.get("pricePerUnit")).get("USD", 0))
            if usd > 0:
                yield usd


def _raise_pricing_error(
    service_code: str, filters: list[tuple[str, str]], region: str, aws_message: str
) -> NoReturn:
    named = ", ".join(f"{field}={value}" for field, value in filters[:2])
    call = f"pricing:GetProducts ({service_code}, {named})"
    raise LivePricesError(
        f"{call} failed: {aws_message}",
        where=f"fetching live prices for {region}",
        next_step=(
            f"run without --live-prices to use the built-in price table ({PRICES_AS_OF}), "
            "or allow pricing:GetProducts for these credentials"
        ),
    )
