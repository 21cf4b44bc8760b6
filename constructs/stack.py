"""The one stack a deployment is: composed from a `DeploymentSpec`."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
from hivemind_constructs.network import Network

from constructs import Construct
from hivemind.spec import DeploymentSpec

# Tag names are defined once; every resource in the stack carries them.
TAG_DEPLOYMENT_ID = "hivemind:deployment-id"
TAG_APP = "hivemind:app"
TAG_PROFILE = "hivemind:profile"
NAT_GATEWAYS = {"stage-1": 0, "production": 2}


def stack_name(deployment_id: str) -> str:
    return f"hivemind-{deployment_id}"


class DeploymentStack(Stack):
    """Everything one deployment runs on, built from its spec and nothing else."""

    def __init__(self, scope: Construct, *, spec: DeploymentSpec, deployment_id: str) -> None:
        super().__init__(
            scope,
            stack_name(deployment_id),
            description=f"HiveMind deployment {deployment_id} of {spec.app.name} ({spec.profile})",
        )
        self.network = Network(self, "Network", nat_gateways=NAT_GATEWAYS[spec.profile])
        CfnOutput(self, "VpcId", value=self.network.vpc.vpc_id)

        for key, value in spec.tags.items():
            Tags.of(self).add(key, value)
        Tags.of(self).add(TAG_DEPLOYMENT_ID, deployment_id)
        Tags.of(self).add(TAG_APP, spec.app.name)
        Tags.of(self).add(TAG_PROFILE, spec.profile)
