"""`hivemind analyze REPO`"""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("repo")
@click.option(
    "--subdir",
    default=None,
    envvar="HIVEMIND_SUBDIR",
    show_envvar=True,
    help="Analyze this folder of the repository (monorepos).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def analyze(repo: str, subdir: str | None, as_json: bool) -> None:
    """Read REPO (a path or git URL) and print what was found, each fact with its evidence.

    Nothing in the repository is executed. A git URL is cloned shallow into the cache.

    \b
    Examples:
      hivemind analyze .
      hivemind analyze https://github.com/acme/shop.git --json
      hivemind analyze ./monorepo --subdir services/api
    """
    from hivemind.recon.report import render_profile
    from hivemind.resolve import Overrides, read_repo

    overrides = Overrides({"app.subdir": (subdir, "--subdir")} if subdir else {})
    reading = read_repo(repo, overrides, progress=lambda line: click.echo(line, err=True))
    if as_json:
        click.echo(json.dumps(reading.profile.model_dump(mode="json"), indent=2))
    else:
        click.echo(render_profile(reading.profile))
