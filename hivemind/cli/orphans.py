"""`hivemind find-orphans`"""

from __future__ import annotations

import json
import os

import click


@click.command("find-orphans")
@click.option(
    "--region",
    default=lambda: os.environ.get("AWS_REGION", "us-east-1"),
    show_default="$AWS_REGION or us-east-1",
    help="The region to search.",
)
@click.option("--delete", is_flag=True, help="Remove the orphans (asks first unless --yes).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --delete.")
@click.option("--json", "as_json", is_flag=True, help="Print the orphans as JSON.")
def find_orphans(region: str, delete: bool, yes: bool, as_json: bool) -> None:
    """Find resources tagged hivemind:deployment-id whose deployment is destroyed or
    unknown on this machine, with their monthly cost.

    \b
    Examples:
      hivemind find-orphans --region eu-west-1
      hivemind find-orphans --delete --yes
    """
    from hivemind.aws import client
    from hivemind.cli.render import table
    from hivemind.errors import HiveMindError, RefusedError
    from hivemind.orphans import delete_orphans, find_orphans
    from hivemind.records import RecordStore

    found = find_orphans(
        client("resourcegroupstaggingapi", region), client("ec2", region), RecordStore()
    )
    if as_json and not delete:
        click.echo(json.dumps([vars(o) for o in found], indent=2))
        return
    if not found:
        click.echo(
            f"No orphans in {region}: every HiveMind-tagged resource belongs to a live deployment."
        )
        return
    click.echo(
        table(
            ["deployment", "why", "$/month", "resource"],
            [[o.deployment_id, o.why, f"{o.monthly_usd:,.2f}", o.arn] for o in found],
        )
    )
    if not delete:
        click.echo(f"\n{len(found)} orphan(s); `hivemind find-orphans --delete` removes them")
        return
    if not yes and not click.confirm(f"Delete {len(found)} orphan(s)?", default=False, err=True):
        raise RefusedError("nothing was deleted")
    left = delete_orphans(found, lambda service: client(service, region), say=click.echo)
    if left:
        raise HiveMindError(
            f"{len(left)} orphan(s) HiveMind cannot remove by itself",
            details=[o.arn for o in left],
            next_step="remove them in the AWS console or with the AWS CLI",
        )
    click.echo(f"Removed {len(found)} orphan(s).")
