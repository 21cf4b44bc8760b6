"""`hivemind dashboard ID`"""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.argument("deployment_id")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    envvar="HIVEMIND_NO_BROWSER",
    show_envvar=True,
    help="Print the URL instead of opening a browser.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the dashboard's name and URL as JSON.")
def dashboard(deployment_id: str, print_only: bool, as_json: bool) -> None:
    """Open a deployment's CloudWatch dashboard in the browser.

    The dashboard (HiveMind-<id>) shows the application, its instances, load
    balancer, database, logs, traces, costs and alarms. Without a browser, when
    the output is not a terminal, or with --print, the URL is printed instead.

    \b
    Examples:
      hivemind dashboard shop-k2j4m6p7q3
      hivemind dashboard shop-k2j4m6p7q3 --print
    """
    from hivemind.ops.dashboard import dashboard_link, open_in_browser  # lazy
    from hivemind.records import RecordStore

    link = dashboard_link(RecordStore().get(deployment_id).load())
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    opened = not (print_only or as_json) and interactive and open_in_browser(link.url)
    if as_json:
        click.echo(json.dumps({**link.model_dump(mode="json"), "opened": opened}, indent=2))
    elif opened:
        click.echo(f"Opened the dashboard {link.name} in your browser:\n  {link.url}")
    else:
        click.echo(link.url)
