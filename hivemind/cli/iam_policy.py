"""`hivemind iam-policy`"""

from __future__ import annotations

import json

import click


@click.command("iam-policy")
@click.option(
    "--llm",
    envvar="HIVEMIND_LLM",
    show_envvar=True,
    metavar="bedrock:MODEL_ID",
    help="Also allow invoking this Bedrock model (what the agents use with --llm).",
)
def iam_policy(llm: str | None) -> None:
    """Print the least-privilege IAM policy (JSON) for whoever runs HiveMind.

    Attach it to the user or role that runs `hivemind`. CloudFormation creates the
    stack's resources with these credentials; names are scoped to hivemind-* where
    AWS allows it.

    \b
    Example:
      hivemind iam-policy > hivemind-policy.json
      hivemind iam-policy --llm bedrock:anthropic.claude-3-5-haiku-20241022-v1:0
      aws iam create-policy --policy-name HiveMind --policy-document file://hivemind-policy.json
    """
    from hivemind.iam_policy import policy_document

    model = None
    if llm:
        from hivemind_agents.llm import parse_setting

        model = parse_setting(llm)[1]
    click.echo(json.dumps(policy_document(model), indent=2))
