"""The sandbox's S3 additions: `AWS::S3::BucketPolicy` (which `cdk bootstrap` needs and
moto lacks), bucket policies enforced without the statements moto cannot evaluate, and
templates read from TemplateURLs on the sandbox's own endpoint.

moto enforces a bucket policy's Deny statements but ignores their conditions, so
the CDK bootstrap bucket's "deny unless aws:SecureTransport" statement would deny
every upload. `install()` makes moto skip conditional statements instead: the
sandbox serves plain HTTP on loopback, where no condition of that kind applies.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlparse

from moto.cloudformation import models as cloudformation_models
from moto.cloudformation import responses as cloudformation_responses
from moto.cloudformation import utils as cloudformation_utils
from moto.cloudformation.exceptions import ValidationError
from moto.s3.models import FakeBucket, s3_backends

from hivemind.sandbox import patching
from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceType,
    implements,
)


def _s3(ctx: Context) -> MotoBackend:
    return s3_backends[ctx.account_id][ctx.partition]


@implements
class BucketPolicy(ResourceType):
    type_name = "AWS::S3::BucketPolicy"
    attributes = frozenset()

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        s3 = _s3(ctx)
        bucket = properties["Bucket"]
        document = properties["PolicyDocument"]
        text = document if isinstance(document, str) else json.dumps(document)
        s3.put_bucket_policy(bucket, text.encode())
        return Provisioned(bucket, delete=lambda: s3.delete_bucket_policy(bucket))


def _get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    """moto's `FakeBucket.get_permission`, leaving out statements that have conditions."""
    from moto.iam.access_control import IAMPolicy, PermissionResult

    if self.policy is None:
        return PermissionResult.NEUTRAL
    policy = json.loads(self.policy.decode())
    statements = policy.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    evaluable = [s for s in statements if not s.get("Condition")]
    if not evaluable:
        return PermissionResult.NEUTRAL
    document = json.dumps({**policy, "Statement": evaluable})
    return IAMPolicy(document).is_action_permitted(action, resource)


def install() -> None:
    """Enforce bucket policies without their conditional statements (idempotent)."""
    patching.replace(FakeBucket, "get_permission", _get_permission)


def template_from_url(template_url: str, account_id: str, partition: str) -> str:
    """The template a TemplateURL names, read from the sandbox's S3. Besides the S3 URLs
    moto understands, a path-style URL on the sandbox's own loopback endpoint
    (http://127.0.0.1:PORT/BUCKET/KEY), which the CDK CLI sends for a template too large
    to pass inline when S3 is reached through the sandbox endpoint."""
    parts = urlparse(template_url)
    if parts.hostname not in ("127.0.0.1", "localhost"):
        return _moto_template_from_url(template_url, account_id, partition)
    bucket, _, key = parts.path.lstrip("/").partition("/")
    found = s3_backends[account_id][partition].get_object(bucket, key)
    if found is None:
        raise ValidationError(message=f"TemplateURL {template_url} names no S3 object")
    return str(found.value.decode("utf-8"))


_moto_template_from_url = cloudformation_utils.get_stack_from_s3_url


def install_template_urls() -> None:
    """Let CloudFormation read templates from loopback URLs too (idempotent)."""
    # moto's modules imported the function by name: each module's reference is replaced.
    for module in (cloudformation_utils, cloudformation_models, cloudformation_responses):
        patching.replace(module, "get_stack_from_s3_url", template_from_url)
