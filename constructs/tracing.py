"""X-Ray for one deployment: a group that selects its traces and a sampling rule."""

from __future__ import annotations

from aws_cdk import aws_xray as xray
from constructs import Construct

# X-Ray names allow 32 characters; sampling rule names are unique per account.
_MAX_NAME = 32
SAMPLING_RATE = 0.05  # 5% of requests after the first one each second


def xray_name(deployment_id: str) -> str:
    """A name within X-Ray's limit that keeps the id's random tail, so it stays unique."""
    return "hm-" + deployment_id[-(_MAX_NAME - 3) :]


class Tracing(Construct):
    """The deployment's X-Ray group (traces annotated with its id) and sampling rule.
    Attribute: `group_name`."""

    def __init__(
        self, scope: Construct, construct_id: str, *, deployment_id: str, service_name: str
    ) -> None:
        super().__init__(scope, construct_id)
        self.group_name = xray_name(deployment_id)
        xray.CfnGroup(
            self,
            "Group",
            group_name=self.group_name,
            filter_expression=f'service("{service_name}")',
            insights_configuration=xray.CfnGroup.InsightsConfigurationProperty(
                insights_enabled=False, notifications_enabled=False
            ),
        )
        xray.CfnSamplingRule(
            self,
            "SamplingRule",
            sampling_rule=xray.CfnSamplingRule.SamplingRuleProperty(
                rule_name=self.group_name,
                priority=100,
                fixed_rate=SAMPLING_RATE,
                reservoir_size=1,
                service_name=service_name,
                service_type="*",
                host="*",
                http_method="*",
                url_path="*",
                resource_arn="*",
                version=1,
            ),
        )
