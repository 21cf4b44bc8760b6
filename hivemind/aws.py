"""Clients for AWS, or for the sandbox: the same code, another endpoint.

boto3 reads the standard credential chain (AWS_PROFILE, ~/.aws, environment) and
`AWS_ENDPOINT_URL`, which is how the sandbox points every client at itself.
"""

from __future__ import annotations

from typing import Any

from hivemind.errors import BadInputError


def client(service: str, region: str) -> Any:
    """A boto3 client for the command's target (AWS, or the sandbox when asked for)."""
    import boto3  # lazy: boto3 costs ~0.2 s to import
    import botocore.exceptions

    from hivemind.targets import prepare

    prepare(region)
    try:
        return boto3.client(service, region_name=region)
    except botocore.exceptions.BotoCoreError as exc:
        raise BadInputError(
            f"cannot talk to AWS {service} in {region}",
            cause=str(exc),
            next_step="run `hivemind doctor` to see what is missing",
        ) from None
