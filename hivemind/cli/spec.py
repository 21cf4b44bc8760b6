"""`hivemind spec show REPO` and `hivemind spec schema`"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hivemind.cli.options import (
    advisor_from,
    default_region,
    llm_options,
    overrides_from,
    spec_options,
)


@click.group()
def spec() -> None:
    """The typed deployment spec: what HiveMind would build, and where each value came from."""


@spec.command()
@click.argument("repo")
@spec_options
@click.option("--json", "as_json", is_flag=True, help="Print the spec as JSON.")
@llm_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the spec's JSON to this file.",
)
def show(
    repo: str,
    as_json: bool,
    output: Path | None,
    llm: str | None,
    llm_region: str | None,
    **params: Any,
) -> None:
    """Resolve the deployment spec for REPO and show each field with its provenance.

    Precedence per field: flags > hivemind.yaml in the repo > detection > defaults.

    \b
    Examples:
      hivemind spec show .
      hivemind spec show . --stage-1 --region eu-west-1 --json
      hivemind spec show ./shop --port 8080 --tag team=payments -o spec.json
    """
    from hivemind.resolve import spec_for_repo
    from hivemind.spec_report import render_spec

    progress = lambda line: click.echo(line, err=True)  # noqa: E731
    advisor = advisor_from(llm, llm_region, params.get("region") or default_region())
    advisor.log = progress
    _reading, resolved = spec_for_repo(repo, overrides_from(params), progress, advisor)
    if output is not None:
        output.write_text(resolved.to_json(), encoding="utf-8")
    if as_json:
        click.echo(resolved.to_json(), nl=False)
    else:
        click.echo(render_spec(resolved))
        if output is not None:
            click.echo(f"\nWrote {output}")


@spec.command()
def schema() -> None:
    """Print the JSON Schema of the deployment spec (what hivemind.yaml accepts)."""
    from hivemind.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
