"""Clients for AWS, or for the sandbox: the same code, another endpoint.

boto3 reads the standard credential chain (AWS_PROFILE, ~/.aws, environment) and
`AWS_ENDPOINT_URL`, which is how the sandbox points every client at itself.
"""

from __future__ import annotations

from typing import Any

from hivemind.errors import BadInputError


def client(service: str, region: str) -> Any:
    """A client for the command's target (AWS, or the sandbox when asked for): the same
    client boto3 gives, made by botocore directly (boto3's import, which pulls in
    s3transfer, costs ~0.1 s more on every command)."""
    import botocore.exceptions
    import botocore.session

    from hivemind.targets import prepare

    prepare(region)
    try:
        return botocore.session.get_session().create_client(service, region_name=region)
    except botocore.exceptions.BotoCoreError as exc:
        raise BadInputError(
            f"cannot talk to AWS {service} in {region}",
            cause=str(exc),
            next_step="run `hivemind doctor` to see what is missing",
        ) from None
