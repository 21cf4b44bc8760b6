"""`hivemind iam-policy`"""

from __future__ import annotations

import json

import click


@click.command("iam-policy")
def iam_policy() -> None:
    """Print the least-privilege IAM policy (JSON) for whoever runs HiveMind.

    Attach it to the user or role that runs `hivemind`. CloudFormation creates the
    stack's resources with these credentials; names are scoped to hivemind-* where
    AWS allows it.

    \b
    Example:
      hivemind iam-policy > hivemind-policy.json
      aws iam create-policy --policy-name HiveMind --policy-document file://hivemind-policy.json
    """
    from hivemind.iam_policy import policy_document

    click.echo(json.dumps(policy_document(), indent=2))
