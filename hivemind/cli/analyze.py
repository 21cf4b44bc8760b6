"""`hivemind analyze REPO`"""

from __future__ import annotations

import json

import click

from hivemind.cli.options import advisor_from, default_region, llm_options


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
@llm_options
def analyze(
    repo: str, subdir: str | None, as_json: bool, llm: str | None, llm_region: str | None
) -> None:
    """Read REPO (a path or git URL) and print what was found, each fact with its evidence.

    Nothing in the repository is executed. A git URL is cloned shallow into the cache.
    With --llm, a model also reads the README and docs for what the rules left
    unknown; each proposal must quote the file it came from, and is checked.

    \b
    Examples:
      hivemind analyze .
      hivemind analyze https://github.com/acme/shop.git --json
      hivemind analyze ./monorepo --subdir services/api
    """
    from hivemind.recon.report import render_profile
    from hivemind.resolve import Overrides, read_repo

    overrides = Overrides({"app.subdir": (subdir, "--subdir")} if subdir else {})
    progress = lambda line: click.echo(line, err=True)  # noqa: E731
    advisor = advisor_from(llm, llm_region, default_region())
    advisor.log = progress
    reading = read_repo(repo, overrides, progress=progress, advisor=advisor)
    if as_json:
        click.echo(json.dumps(reading.profile.model_dump(mode="json"), indent=2))
    else:
        click.echo(render_profile(reading.profile))
