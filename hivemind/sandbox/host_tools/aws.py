"""`aws` on a sandbox host: the one AWS CLI call a deploy makes on an instance, reading the
database secret with the instance role's credentials.

    aws secretsmanager get-secret-value --secret-id ID [--region R] \\
        --query SecretString --output text

It is answered with boto3 against the sandbox's own endpoint: the host gives every
process `AWS_ENDPOINT_URL`, fake credentials and its region (standing in for the
instance role and the metadata service). Anything else exits 2 and says what is
supported. Errors read like the AWS CLI's (exit 254 for an error AWS answered, 255 when
the endpoint cannot be reached).
"""

from __future__ import annotations

import os
import sys

SUPPORTED = (
    "aws secretsmanager get-secret-value --secret-id ID [--region R] "
    "--query SecretString --output text"
)


def _parse(argv: list[str]) -> dict[str, str] | None:
    """The options of the supported call, or None when `argv` is anything else."""
    if argv[:2] != ["secretsmanager", "get-secret-value"]:
        return None
    options: dict[str, str] = {}
    words = iter(argv[2:])
    for word in words:
        name, eq, value = word.partition("=")
        if name not in ("--secret-id", "--region", "--query", "--output"):
            return None
        given = value if eq else next(words, None)
        if given is None:
            return None
        options[name[2:]] = given
    wanted = options.get("query") == "SecretString" and options.get("output") == "text"
    return options if wanted and options.get("secret-id") else None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    options = _parse(args)
    if options is None:
        print(f"the sandbox's aws stand-in supports only: {SUPPORTED}", file=sys.stderr)
        return 2
    if not os.environ.get("AWS_ENDPOINT_URL"):
        # Never AWS itself: without the sandbox's endpoint there is nothing to ask.
        print(
            "the sandbox host does not know the sandbox's endpoint (AWS_ENDPOINT_URL)",
            file=sys.stderr,
        )
        return 255
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    region = options.get("region") or os.environ.get("AWS_REGION") or None
    try:
        client = boto3.client("secretsmanager", region_name=region)
        answer = client.get_secret_value(SecretId=options["secret-id"])
    except ClientError as error:
        details = error.response.get("Error", {})
        print(
            f"\nAn error occurred ({details.get('Code', 'Unknown')}) when calling the "
            f"GetSecretValue operation: {details.get('Message', '')}",
            file=sys.stderr,
        )
        return 254
    except BotoCoreError as error:
        print(f"\n{error}", file=sys.stderr)
        return 255
    if "SecretString" not in answer:
        print("None")
        return 0
    print(answer["SecretString"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
