"""`hivemind list` and `hivemind status ID`"""

from __future__ import annotations

import json
from typing import Literal

import click

from hivemind.cli.options import llm_options


@click.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the deployments as JSON.")
def list_deployments(as_json: bool) -> None:
    """List the deployments recorded on this machine ($HIVEMIND_HOME/deployments).

    A deployment that failed more than a day ago is flagged: its resources were left
    for debugging and still cost money."""
    from hivemind.cli.render import table  # lazy: keeps --help light
    from hivemind.records import RecordStore
    from hivemind.status_command import stale_failure

    store = RecordStore()
    states, unreadable = store.readable()
    if as_json:
        listed = [s.model_dump(mode="json") for s in states]
        listed += [
            {
                "deployment_id": i,
                "status": "unreadable",
                "error": why,
                "record": str(store.root / i),
            }
            for i, why in unreadable.items()
        ]
        click.echo(json.dumps(listed, indent=2))
        return
    if not states and not unreadable:
        click.echo("No deployments on this machine yet.")
        return
    rows = [
        [s.deployment_id, s.status.value, s.app, s.region, s.profile, s.updated_at] for s in states
    ]
    rows += [[i, "unreadable", "?", "?", "?", "?"] for i in unreadable]
    click.echo(table(["id", "status", "app", "region", "profile", "updated"], rows))
    for deployment_id, why in unreadable.items():
        click.echo(
            f"! {deployment_id}: its record cannot be read ({why}); see "
            f"{store.root / deployment_id / 'state.json'}"
        )
    for state in states:
        stale = stale_failure(state)
        if stale:
            click.echo(f"! {state.deployment_id} {stale}")


@click.command()
@click.argument("deployment_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status (and every view) as JSON.")
@click.option(
    "--show-logs",
    is_flag=True,
    help="The app's recent log lines (CloudWatch Logs), errors highlighted and grouped.",
)
@click.option(
    "--show-metrics",
    is_flag=True,
    help="CPU, memory, disk and network per instance, and the load balancer's and "
    "database's key metrics, as sparklines, with anomalies.",
)
@click.option(
    "--show-costs",
    is_flag=True,
    help="Daily costs from Cost Explorer by the deployment's tag (else the estimate).",
)
@click.option(
    "--show-traces", is_flag=True, help="Recent requests as X-Ray traced them (with --xray)."
)
@click.option("--show-dashboard", is_flag=True, help="The CloudWatch dashboard's URL.")
@click.option(
    "--since",
    default="1h",
    show_default=True,
    envvar="HIVEMIND_SINCE",
    show_envvar=True,
    help="How far back logs, metrics and traces go: 15m, 1h, 6h, 2d (30d at most).",
)
@click.option(
    "--lines",
    type=click.IntRange(1, 10_000),
    default=40,
    show_default=True,
    envvar="HIVEMIND_LOG_LINES",
    show_envvar=True,
    help="How many of the latest log lines --show-logs prints (errors count in the whole window).",
)
@click.option(
    "--report",
    "write_report",
    is_flag=True,
    help="Also write the deployment's report into its record and print its path.",
)
@click.option(
    "--report-format",
    type=click.Choice(["markdown", "html"]),
    default="markdown",
    show_default=True,
    help="The report's format: report.md or report.html.",
)
@llm_options
def status(
    deployment_id: str,
    as_json: bool,
    show_logs: bool,
    show_metrics: bool,
    show_costs: bool,
    show_traces: bool,
    show_dashboard: bool,
    since: str,
    lines: int,
    write_report: bool,
    report_format: Literal["markdown", "html"],
    llm: str | None,
    llm_region: str | None,
) -> None:
    """Show a deployment's status, checked against its CloudFormation stack.

    When the record and the stack disagree (say the CLI was killed mid-deploy),
    the record is corrected and the change is shown. The --show-* flags add what
    the deployment is doing now, over the window --since gives; with logs or metrics,
    the Ops agent says how healthy it looks and what to look at next.

    \b
    Examples:
      hivemind status shop-k2j4m6p7q3 --json
      hivemind status shop-k2j4m6p7q3 --show-logs --since 15m
      hivemind status shop-k2j4m6p7q3 --show-metrics --show-traces --since 6h
      hivemind status shop-k2j4m6p7q3 --show-costs --show-dashboard --json
    """
    from hivemind.status_command import show_status  # lazy: no aws_cdk on this path

    ops = None
    if show_logs or show_metrics or show_costs or show_traces or show_dashboard:
        from hivemind.ops.overview import OpsRequest

        ops = OpsRequest(
            logs=show_logs,
            metrics=show_metrics,
            costs=show_costs,
            traces=show_traces,
            dashboard=show_dashboard,
            since=since,
            lines=lines,
        )
    advisor = None
    if ops is not None and (show_logs or show_metrics) and llm:
        from hivemind.cli.options import advisor_from, default_region

        advisor = advisor_from(llm, llm_region, default_region())
    report = show_status(
        deployment_id,
        ops=ops,
        report=report_format if write_report else None,
        advisor=advisor,
    )
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.render())
