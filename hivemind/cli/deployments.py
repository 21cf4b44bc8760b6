"""`hivemind list` and `hivemind status ID`"""

from __future__ import annotations

import json

import click


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the deployments as JSON.")
def list_deployments(as_json: bool) -> None:
    """List the deployments recorded on this machine ($HIVEMIND_HOME/deployments)."""
    from hivemind.cli.render import table  # lazy: keeps --help light
    from hivemind.records import RecordStore

    states = RecordStore().states()
    if as_json:
        click.echo(json.dumps([s.model_dump(mode="json") for s in states], indent=2))
        return
    if not states:
        click.echo("No deployments on this machine yet.")
        return
    rows = [
        [s.deployment_id, s.status.value, s.app, s.region, s.profile, s.updated_at] for s in states
    ]
    click.echo(table(["id", "status", "app", "region", "profile", "updated"], rows))


@click.command()
@click.argument("deployment_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(deployment_id: str, as_json: bool) -> None:
    """Show a deployment's status, checked against its CloudFormation stack.

    When the record and the stack disagree (say the CLI was killed mid-deploy),
    the record is corrected and the change is shown.

    \b
    Example:
      hivemind status shop-k2j4m6p8q1 --json
    """
    from hivemind.status_command import show_status  # lazy: no aws_cdk on this path

    report = show_status(deployment_id)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.render())
