"""The least-privilege IAM policy an operator attaches to whoever runs HiveMind.

CloudFormation creates a stack's resources with the caller's credentials, so the
policy grants, per resource type HiveMind's stacks contain, the calls that create,
update, describe and delete it; and the calls HiveMind itself makes. Where AWS
supports it the grant is scoped to HiveMind's own names (`hivemind-*` stacks,
roles, log groups, secrets); EC2, Elastic Load Balancing, RDS and CloudWatch
creation calls cannot be scoped to a name before the resource exists and use "*".
"""

from __future__ import annotations

import json
from typing import Any

from hivemind.foundation import BOUNDARY_NAME

# What creating, updating and deleting each resource type needs (one table).
ACTIONS_BY_RESOURCE_TYPE: dict[str, tuple[str, ...]] = {
    "AWS::EC2::VPC": (
        "ec2:CreateVpc",
        "ec2:DeleteVpc",
        "ec2:ModifyVpcAttribute",
        "ec2:DescribeVpcs",
        "ec2:DescribeVpcAttribute",
    ),
    "AWS::EC2::Subnet": (
        "ec2:CreateSubnet",
        "ec2:DeleteSubnet",
        "ec2:ModifySubnetAttribute",
        "ec2:DescribeSubnets",
    ),
    "AWS::EC2::RouteTable": (
        "ec2:CreateRouteTable",
        "ec2:DeleteRouteTable",
        "ec2:DescribeRouteTables",
    ),
    "AWS::EC2::SubnetRouteTableAssociation": (
        "ec2:AssociateRouteTable",
        "ec2:DisassociateRouteTable",
    ),
    "AWS::EC2::Route": ("ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute"),
    "AWS::EC2::InternetGateway": (
        "ec2:CreateInternetGateway",
        "ec2:DeleteInternetGateway",
        "ec2:DescribeInternetGateways",
    ),
    "AWS::EC2::VPCGatewayAttachment": ("ec2:AttachInternetGateway", "ec2:DetachInternetGateway"),
    "AWS::EC2::EIP": (
        "ec2:AllocateAddress",
        "ec2:ReleaseAddress",
        "ec2:DescribeAddresses",
        "ec2:DisassociateAddress",
    ),
    "AWS::EC2::NatGateway": (
        "ec2:CreateNatGateway",
        "ec2:DeleteNatGateway",
        "ec2:DescribeNatGateways",
    ),
    "AWS::EC2::SecurityGroup": (
        "ec2:CreateSecurityGroup",
        "ec2:DeleteSecurityGroup",
        "ec2:DescribeSecurityGroups",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
    ),
    "AWS::EC2::SecurityGroupIngress": (
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupIngress",
    ),
    "AWS::EC2::SecurityGroupEgress": (
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupEgress",
    ),
    "AWS::EC2::FlowLog": (
        "ec2:CreateFlowLogs",
        "ec2:DeleteFlowLogs",
        "ec2:DescribeFlowLogs",
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
    ),
    "AWS::EC2::LaunchTemplate": (
        "ec2:CreateLaunchTemplate",
        "ec2:DeleteLaunchTemplate",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
    ),
    "AWS::EC2::KeyPair": ("ec2:ImportKeyPair", "ec2:DeleteKeyPair", "ec2:DescribeKeyPairs"),
    "AWS::EC2::InstanceConnectEndpoint": (
        "ec2:CreateInstanceConnectEndpoint",
        "ec2:DeleteInstanceConnectEndpoint",
        "ec2:DescribeInstanceConnectEndpoints",
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:CreateNetworkInterfacePermission",
    ),
    "AWS::EC2::Instance": (
        "ec2:RunInstances",
        "ec2:TerminateInstances",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceStatus",
        "ec2:StopInstances",
        "ec2:StartInstances",
        "ec2:ModifyInstanceAttribute",
        "ec2:DescribeImages",
    ),
    "AWS::ElasticLoadBalancingV2::LoadBalancer": (
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:ModifyLoadBalancerAttributes",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeLoadBalancerAttributes",
        "elasticloadbalancing:SetSecurityGroups",
    ),
    "AWS::ElasticLoadBalancingV2::TargetGroup": (
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:DeleteTargetGroup",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetGroupAttributes",
        "elasticloadbalancing:RegisterTargets",
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:DescribeTargetHealth",
    ),
    "AWS::ElasticLoadBalancingV2::ListenerRule": (
        "elasticloadbalancing:CreateRule",
        "elasticloadbalancing:DeleteRule",
        "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:DescribeRules",
        "elasticloadbalancing:SetRulePriorities",
    ),
    "AWS::ElasticLoadBalancingV2::Listener": (
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:ModifyListener",
        "elasticloadbalancing:DescribeListeners",
    ),
    "AWS::RDS::DBInstance": (
        "rds:CreateDBInstance",
        "rds:CreateDBInstanceReadReplica",
        "rds:DeleteDBInstance",
        "rds:ModifyDBInstance",
        "rds:DescribeDBInstances",
        "rds:CreateDBSnapshot",
        "rds:DescribeDBSnapshots",
        "rds:DescribeDBEngineVersions",
    ),
    "AWS::RDS::DBSubnetGroup": (
        "rds:CreateDBSubnetGroup",
        "rds:DeleteDBSubnetGroup",
        "rds:ModifyDBSubnetGroup",
        "rds:DescribeDBSubnetGroups",
    ),
    "AWS::SecretsManager::Secret": (
        "secretsmanager:CreateSecret",
        "secretsmanager:DeleteSecret",
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetRandomPassword",
        "secretsmanager:UpdateSecret",
    ),
    "AWS::SecretsManager::SecretTargetAttachment": (
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
    ),
    "AWS::IAM::Role": (
        "iam:CreateRole",
        "iam:DeleteRole",
        "iam:GetRole",
        "iam:UpdateRole",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:TagRole",
        "iam:UntagRole",
        "iam:ListAttachedRolePolicies",
        "iam:ListRolePolicies",
        "iam:PutRolePermissionsBoundary",
    ),
    "AWS::IAM::Policy": ("iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:GetRolePolicy"),
    "AWS::IAM::InstanceProfile": (
        "iam:CreateInstanceProfile",
        "iam:DeleteInstanceProfile",
        "iam:GetInstanceProfile",
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
    ),
    "AWS::Logs::LogGroup": (
        "logs:CreateLogGroup",
        "logs:DeleteLogGroup",
        "logs:PutRetentionPolicy",
        "logs:DeleteRetentionPolicy",
        "logs:DescribeLogGroups",
        "logs:TagResource",
        "logs:ListTagsForResource",
    ),
    "AWS::CloudWatch::Alarm": (
        "cloudwatch:PutMetricAlarm",
        "cloudwatch:DeleteAlarms",
        "cloudwatch:DescribeAlarms",
    ),
    "AWS::CloudWatch::Dashboard": (
        "cloudwatch:PutDashboard",
        "cloudwatch:DeleteDashboards",
        "cloudwatch:GetDashboard",
    ),
    "AWS::XRay::Group": (
        "xray:CreateGroup",
        "xray:DeleteGroup",
        "xray:UpdateGroup",
        "xray:GetGroup",
    ),
    "AWS::XRay::SamplingRule": (
        "xray:CreateSamplingRule",
        "xray:DeleteSamplingRule",
        "xray:UpdateSamplingRule",
        "xray:GetSamplingRules",
    ),
}
# Calls every deployment needs whatever its resources: tags, zones, the AMI parameter.
_COMMON_EC2 = (
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeNetworkInterfaces",
)
_TAGGING = (
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:RemoveTags",
    "rds:AddTagsToResource",
    "rds:RemoveTagsFromResource",
    "rds:ListTagsForResource",
    "secretsmanager:TagResource",
    "secretsmanager:UntagResource",
    "cloudwatch:TagResource",
    "cloudwatch:UntagResource",
    "xray:TagResource",
    "xray:UntagResource",
)
_CLOUDFORMATION = (
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:DeleteStack",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStackResources",
    "cloudformation:ListStackResources",
    "cloudformation:GetTemplate",
    "cloudformation:GetTemplateSummary",
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
    "cloudformation:DeleteChangeSet",
    "cloudformation:ContinueUpdateRollback",
    "cloudformation:TagResource",
)
# What `hivemind status --show-logs/--show-metrics/--show-costs/--show-traces` reads.
OPS_ACTIONS: tuple[str, ...] = (
    "logs:FilterLogEvents",
    "cloudwatch:GetMetricData",
    "ce:GetCostAndUsage",
    "xray:GetTraceSummaries",
    "xray:BatchGetTraces",
)
_SCOPED_PREFIXES = ("iam:", "logs:", "secretsmanager:")
_STACKS = "arn:aws:cloudformation:*:*:stack/hivemind-*/*"
_ROLES = ("arn:aws:iam::*:role/hivemind-*", "arn:aws:iam::*:instance-profile/hivemind-*")
_LOG_GROUPS = ("arn:aws:logs:*:*:log-group:/hivemind/*", "arn:aws:logs:*:*:log-group:hivemind-*")
_SECRETS = "arn:aws:secretsmanager:*:*:secret:hivemind*"
# The role actions allowed only with the account's boundary on the role (the policy
# variable is the caller's own account: the boundary must be the account's own policy).
_BOUNDED = frozenset(
    {
        "iam:CreateRole",
        "iam:PutRolePolicy",
        "iam:AttachRolePolicy",
        "iam:DetachRolePolicy",
        "iam:DeleteRolePolicy",
        "iam:PutRolePermissionsBoundary",
    }
)
_BOUNDARY = f"arn:aws:iam::${{aws:PrincipalAccount}}:policy/{BOUNDARY_NAME}"


def policy_document(llm_model: str | None = None) -> dict[str, Any]:
    """The policy, as a dict ready for `json.dumps`; with `llm_model` (a Bedrock model
    id, `--llm bedrock:<id>`), also the right to invoke that model for the agents."""
    document = _policy()
    if llm_model:
        document["Statement"].append(
            {
                "Sid": "AgentsModel",
                "Effect": "Allow",
                "Action": ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"],
                # A model id, or an inference profile (which routes to the model in
                # several regions, so both resource kinds are named).
                "Resource": [
                    f"arn:aws:bedrock:*::foundation-model/{_base_model(llm_model)}",
                    f"arn:aws:bedrock:*:*:inference-profile/{llm_model}",
                ],
            }
        )
    return document


def _base_model(model_id: str) -> str:
    """`us.anthropic.claude-…` (an inference profile) → `anthropic.claude-…`."""
    region_prefix, _, rest = model_id.partition(".")
    return rest if region_prefix in ("us", "eu", "apac", "global") and rest else model_id


def _policy() -> dict[str, Any]:
    actions = {a for group in ACTIONS_BY_RESOURCE_TYPE.values() for a in group}
    unscoped = sorted(
        a for a in actions | set(_COMMON_EC2) | set(_TAGGING) if not a.startswith(_SCOPED_PREFIXES)
    )

    def scoped(prefix: str) -> list[str]:
        return sorted(a for a in actions if a.startswith(prefix))

    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "HiveMindStacks",
                "Effect": "Allow",
                "Action": sorted(_CLOUDFORMATION),
                "Resource": _STACKS,
            },
            {
                "Sid": "ReadStacksAndTemplates",
                "Effect": "Allow",
                "Action": ["cloudformation:ListStacks", "cloudformation:ValidateTemplate"],
                "Resource": "*",
            },
            {
                "Sid": "StackResourcesCreatedThroughCloudFormation",
                "Effect": "Allow",
                "Action": unscoped,
                "Resource": "*",
            },
            {
                "Sid": "HiveMindRoles",
                "Effect": "Allow",
                "Action": [a for a in scoped("iam:") if a != "iam:PassRole" and a not in _BOUNDED],
                "Resource": list(_ROLES),
            },
            {
                # Creating a role, or giving it permissions: only a role bounded by the
                # account's hivemind-boundary (hivemind.foundation), which caps whatever
                # is attached to it. Without this condition these four actions would be a
                # path to an administrator role.
                "Sid": "OnlyBoundedHiveMindRoles",
                "Effect": "Allow",
                "Action": sorted(_BOUNDED),
                "Resource": _ROLES[0],
                "Condition": {"StringEquals": {"iam:PermissionsBoundary": _BOUNDARY}},
            },
            {
                "Sid": "ReadTheBoundary",
                "Effect": "Allow",
                "Action": ["iam:GetPolicy", "iam:GetPolicyVersion"],
                "Resource": _BOUNDARY,
            },
            {
                "Sid": "PassHiveMindRolesToEc2",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": _ROLES[0],
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
            {
                "Sid": "ServiceLinkedRolesOnFirstUse",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {
                    "StringLike": {
                        "iam:AWSServiceName": [
                            "elasticloadbalancing.amazonaws.com",
                            "rds.amazonaws.com",
                        ]
                    }
                },
            },
            {
                "Sid": "HiveMindLogGroups",
                "Effect": "Allow",
                "Action": scoped("logs:"),
                "Resource": [*_LOG_GROUPS, *(f"{g}:*" for g in _LOG_GROUPS)],
            },
            {
                "Sid": "LogDeliveryForFlowLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogDelivery", "logs:DeleteLogDelivery"],
                "Resource": "*",
            },
            {
                "Sid": "HiveMindDatabaseSecrets",
                "Effect": "Allow",
                "Action": [
                    *scoped("secretsmanager:"),
                    "secretsmanager:TagResource",
                    "secretsmanager:UntagResource",
                ],
                "Resource": _SECRETS,
            },
            {
                "Sid": "RandomPasswords",
                "Effect": "Allow",
                "Action": "secretsmanager:GetRandomPassword",
                "Resource": "*",
            },
            {
                "Sid": "AmazonLinuxImage",
                "Effect": "Allow",
                "Action": "ssm:GetParameters",
                "Resource": "arn:aws:ssm:*::parameter/aws/service/ami-amazon-linux-latest/*",
            },
            {
                "Sid": "OnBoxDeploy",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeInstances",
                    "ec2:GetConsoleOutput",
                    "ec2:DescribeInstanceConnectEndpoints",
                    "elasticloadbalancing:DescribeTargetHealth",
                ],
                "Resource": "*",
            },
            {
                "Sid": "SshThroughHiveMindConnectEndpoints",
                "Effect": "Allow",
                "Action": "ec2-instance-connect:OpenTunnel",
                "Resource": "arn:aws:ec2:*:*:instance-connect-endpoint/*",
                # Only endpoints of HiveMind's stacks (they carry its tag), only to port 22.
                "Condition": {
                    "Null": {"aws:ResourceTag/hivemind:deployment-id": "false"},
                    "NumericEquals": {"ec2-instance-connect:remotePort": "22"},
                },
            },
            {
                "Sid": "ReadHiveMindAppLogs",
                "Effect": "Allow",
                "Action": [a for a in OPS_ACTIONS if a.startswith("logs:")],
                "Resource": [*_LOG_GROUPS, *(f"{g}:*" for g in _LOG_GROUPS)],
            },
            {
                # None of these reads takes a resource: metrics, costs and traces are
                # read per account and region.
                "Sid": "ReadMetricsCostsAndTraces",
                "Effect": "Allow",
                "Action": sorted(a for a in OPS_ACTIONS if not a.startswith("logs:")),
                "Resource": "*",
            },
            {
                # Before creating an HTTPS deployment: is its certificate issued, and
                # for its domain (hivemind.certificate)?
                "Sid": "CheckTheCertificate",
                "Effect": "Allow",
                "Action": "acm:DescribeCertificate",
                "Resource": "arn:aws:acm:*:*:certificate/*",
            },
            {
                "Sid": "HiveMindItself",
                "Effect": "Allow",
                "Action": [
                    "sts:GetCallerIdentity",
                    "pricing:GetProducts",
                    "tag:GetResources",
                ],
                "Resource": "*",
            },
        ],
    }


# IAM's quota for a customer managed policy: 6,144 characters, white space not counted
# (IAM User Guide, "IAM and AWS STS quotas": "Managed policy size").
MANAGED_POLICY_LIMIT = 6144
POLICY_NAME = "HiveMind"


def policy_size(document: dict[str, Any]) -> int:
    """A document's size as IAM counts it against MANAGED_POLICY_LIMIT: its characters
    without white space (outside strings and in; HiveMind's strings hold none)."""
    return len("".join(json.dumps(document, separators=(",", ":")).split()))


def policy_documents(llm_model: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """`policy_document` as managed policies each within IAM's size limit, named
    HiveMind-1, HiveMind-2, ...: statements in order, each whole, a new document when
    the next would not fit. Attached together they grant exactly `policy_document`."""
    statements = policy_document(llm_model)["Statement"]
    documents: list[dict[str, Any]] = []
    for statement in statements:
        if documents:
            trial = {**documents[-1], "Statement": [*documents[-1]["Statement"], statement]}
            if policy_size(trial) <= MANAGED_POLICY_LIMIT:
                documents[-1] = trial
                continue
        single = {"Version": "2012-10-17", "Statement": [statement]}
        if policy_size(single) > MANAGED_POLICY_LIMIT:
            raise ValueError(f"statement {statement.get('Sid')} alone exceeds IAM's limit")
        documents.append(single)
    return [(f"{POLICY_NAME}-{n}", document) for n, document in enumerate(documents, start=1)]
