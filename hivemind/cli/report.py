"""`hivemind report ID`"""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command()
@click.argument("deployment_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "html"]),
    default="markdown",
    show_default=True,
    envvar="HIVEMIND_REPORT_FORMAT",
    show_envvar=True,
    help="Markdown (report.md), or a standalone HTML page (report.html).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="HIVEMIND_REPORT_OUTPUT",
    show_envvar=True,
    help="Write the report to this file instead of the deployment's record folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the path and the sections as JSON.")
def report(deployment_id: str, fmt: str, output: Path | None, as_json: bool) -> None:
    """Write a deployment's report and print where it is.

    The report holds the timeline of its stages, its architecture (a Mermaid
    diagram), its resources with their monthly cost, its spec with where each value
    came from, the QA checks and each instance's release, how to reach it (URL,
    dashboard, SSH), its costs, and the next steps for the state it is in. It is
    made from the deployment record as it stands, without asking AWS (`hivemind
    status ID` checks the record against AWS first).

    \b
    Examples:
      hivemind report shop-k2j4m6p7q3
      hivemind report shop-k2j4m6p7q3 --format html -o shop.html
    """
    from hivemind.errors import BadInputError
    from hivemind.records import RecordStore, write_atomically
    from hivemind.report import REPORT_FILES, report_of, report_text

    if output is not None and not output.parent.is_dir():
        raise BadInputError(
            f"cannot write the report to {output}: the folder {output.parent} does not exist",
            next_step="create the folder first, or give a file in an existing folder",
        )
    record = RecordStore().get(deployment_id)
    document = report_of(record)
    path = output or record.folder / REPORT_FILES[fmt]
    write_atomically(path, report_text(document, "html" if fmt == "html" else "markdown"))
    if not as_json:
        click.echo(str(path))
        return
    sections = [
        {"key": s.key, "title": s.title, "markdown": s.markdown()} for s in document.sections
    ]
    click.echo(
        json.dumps(
            {
                "deployment_id": deployment_id,
                "format": fmt,
                "path": str(path),
                "sections": sections,
            },
            indent=2,
        )
    )
