"""`hivemind iam-policy`"""

from __future__ import annotations

import json
from pathlib import Path

import click

from hivemind.errors import BadInputError


@click.command("iam-policy")
@click.option(
    "--llm",
    envvar="HIVEMIND_LLM",
    show_envvar=True,
    metavar="bedrock:MODEL_ID",
    help="Also allow invoking this Bedrock model (what the agents use with --llm).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write each policy document to FOLDER/<name>.json (the folder must exist) and "
    "print the AWS CLI commands that create them.",
    metavar="FOLDER",
)
@click.option("--json", "as_json", is_flag=True, help="The documents as JSON (the default).")
def iam_policy(llm: str | None, out: Path | None, as_json: bool) -> None:
    """Print the least-privilege IAM policy for whoever runs HiveMind, as managed
    policies that each fit IAM's 6,144-character limit (HiveMind-1, HiveMind-2, ...).

    Attach all of them to the user or role that runs `hivemind`. CloudFormation
    creates the stack's resources with these credentials; names are scoped to
    hivemind-* where AWS allows it, and roles may be created or given permissions only
    with the account's permissions boundary, hivemind-boundary, on them (the first
    deploy creates that policy on confirmation; it is also written here, for an
    administrator to create). Without --out, prints
    {"policies": [{"name", "characters", "document"}, ...],
     "boundary": {"name", "document"}}.

    \b
    Example:
      hivemind iam-policy --out .
      aws iam create-policy --policy-name HiveMind-1 --policy-document file://HiveMind-1.json
      aws iam create-policy --policy-name hivemind-boundary \\
        --policy-document file://hivemind-boundary.json
      hivemind iam-policy --json | jq '.policies[0].document'
      hivemind iam-policy --llm bedrock:anthropic.claude-3-5-haiku-20241022-v1:0 --out .
    """
    from hivemind.foundation import BOUNDARY, BOUNDARY_NAME
    from hivemind.iam_policy import policy_documents, policy_size

    model = None
    if llm:
        from hivemind_agents.llm import parse_setting

        model = parse_setting(llm)[1]
    documents = policy_documents(model)
    if out is None:
        listed = [
            {"name": name, "characters": policy_size(document), "document": document}
            for name, document in documents
        ]
        boundary = {"name": BOUNDARY_NAME, "document": BOUNDARY}
        click.echo(json.dumps({"policies": listed, "boundary": boundary}, indent=2))
        return
    if not out.is_dir():
        raise BadInputError(
            f"{out} is not a folder",
            next_step="create it first, or pass --out . for the current folder",
        )
    for name, document in documents:
        path = out / f"{name}.json"
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        click.echo(f"wrote {path} ({policy_size(document)} of 6,144 characters)")
    boundary_file = out / f"{BOUNDARY_NAME}.json"
    boundary_file.write_text(json.dumps(BOUNDARY, indent=2) + "\n", encoding="utf-8")
    click.echo(
        f"wrote {boundary_file} (the permissions boundary of the roles HiveMind's stacks "
        "create: not to attach to anyone)"
    )
    click.echo("\nCreate them, then attach each to the user or role that runs hivemind:")
    for name, _document in documents:
        click.echo(
            f"  aws iam create-policy --policy-name {name} "
            f"--policy-document file://{out / (name + '.json')}"
        )
    click.echo(
        "  aws iam attach-user-policy --user-name YOU "
        "--policy-arn arn:aws:iam::ACCOUNT:policy/NAME   # once per policy"
    )
    click.echo(
        "Once per account (or let the first deploy create it, with iam:CreatePolicy):\n"
        f"  aws iam create-policy --policy-name {BOUNDARY_NAME} "
        f"--policy-document file://{boundary_file}"
    )
