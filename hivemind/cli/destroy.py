"""`hivemind destroy ID`"""

from __future__ import annotations

import sys

import click

from hivemind.cli.options import yes_option
from hivemind.cli.render import write_stderr

_skip_snapshot_option = click.option(
    "--skip-snapshot",
    is_flag=True,
    help="Delete the databases without a final snapshot: their data is lost.",
)


@click.command()
@click.argument("deployment_id")
@yes_option
@click.option(
    "--force",
    is_flag=True,
    help="Do not ask, and tear down again a deployment already marked destroyed "
    "(to remove stragglers).",
)
@_skip_snapshot_option
def destroy(deployment_id: str, yes: bool, force: bool, skip_snapshot: bool) -> None:
    """Delete a deployment: its stack and everything tagged with its id.

    Shows what will go and the monthly savings, asks, turns off deletion
    protection, deletes each database keeping a final snapshot (every profile)
    unless --skip-snapshot, deletes the stack with progress, then checks that
    nothing tagged with the id is left. The report names each snapshot kept and
    what keeping it costs per month.

    \b
    Example:
      hivemind destroy shop-k2j4m6p7q3 --yes
    """
    _tear_down(
        deployment_id, yes=yes or force, skip_snapshot=skip_snapshot, rollback=False, force=force
    )


@click.command()
@click.argument("deployment_id")
@yes_option
@_skip_snapshot_option
def rollback(deployment_id: str, yes: bool, skip_snapshot: bool) -> None:
    """Undo a deployment that failed or was left half-built: tear everything down
    in dependency order, past what is already gone, and say precisely what, if
    anything, is left. A database is deleted with a final snapshot unless
    --skip-snapshot. A deployment that is deployed and serving is refused: that
    is `hivemind destroy`.

    \b
    Example:
      hivemind rollback shop-k2j4m6p7q3 --yes
    """
    _tear_down(deployment_id, yes=yes, skip_snapshot=skip_snapshot, rollback=True, force=False)


def _tear_down(
    deployment_id: str, *, yes: bool, skip_snapshot: bool, rollback: bool, force: bool
) -> None:
    from hivemind.aws import client
    from hivemind.cli.render import table
    from hivemind.destroy import Destroyer
    from hivemind.errors import BadInputError, RefusedError
    from hivemind.progress import ProgressDisplay
    from hivemind.records import RecordStore, Status

    verb = "roll back" if rollback else "destroy"
    record = RecordStore().get(deployment_id)
    state = record.load()
    if state.status in (Status.DESTROYED, Status.ROLLED_BACK) and not force:
        raise BadInputError(
            f"{deployment_id} is already {state.status.value.replace('_', ' ')}",
            next_step="`hivemind list` shows the live deployments",
        )
    if rollback and state.status == Status.DEPLOYED:
        raise RefusedError(
            f"{deployment_id} is deployed and serving: nothing was changed",
            cause="rollback undoes a deployment that failed or was left half-built",
            next_step=f"`hivemind destroy {deployment_id}` deletes it (keeping a final "
            "database snapshot unless --skip-snapshot)",
        )
    with record.lock(verb.replace(" ", "")):
        destroyer = Destroyer(
            lambda service: client(service, state.region),
            ProgressDisplay(write_stderr, terminal=sys.stderr.isatty()),
            say=click.echo,
        )
        planned = destroyer.plan(record)
        savings = sum(cost for _r, _t, cost in planned)
        click.echo(
            table(["$/month", "type", "resource"], [[f"{c:,.2f}", t, r] for r, t, c in planned])
        )
        click.echo(f"\n{len(planned)} resources; removing them saves about ${savings:,.2f}/month")
        if not yes and not click.confirm(
            f"{verb.capitalize()} {deployment_id}?", default=False, err=True
        ):
            raise RefusedError(f"nothing was deleted: {verb} was declined")
        result = destroyer.destroy(record, planned, skip_snapshot=skip_snapshot, rollback=rollback)
    done = "rolled back" if rollback else "destroyed"
    click.echo(f"\n{deployment_id} is {done}; saving ${result.savings:,.2f}/month.")
    for kept in result.snapshots:
        click.echo(
            f"  kept: final snapshot {kept.identifier} of {kept.database} ({kept.gib} GiB, "
            f"about ${kept.monthly_usd:,.2f}/month until you delete it: {kept.delete_with})"
        )
    click.echo(f"  report: {record.folder / 'destroy-report.md'}")
