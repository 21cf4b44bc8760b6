"""`hivemind synth REPO | --spec FILE`"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from hivemind.cli.options import (
    advisor_from,
    default_region,
    llm_options,
    overrides_from,
    repo_or_spec,
    spec_options,
)


@click.command()
@repo_or_spec("Synthesize")
@spec_options
@click.option(
    "--deployment-id",
    envvar="HIVEMIND_DEPLOYMENT_ID",
    show_envvar=True,
    help="Synthesize for this existing deployment and show what would change "
    "against its deployed template.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write spec.json, cdk.out/ and synth.json [default: $HIVEMIND_HOME/previews/ID].",
)
@click.option(
    "--live-prices",
    is_flag=True,
    help="Price with the AWS Pricing API instead of the built-in table.",
)
@click.option(
    "--allow-findings",
    is_flag=True,
    help="Write the output even when a security or lint gate finds something.",
)
@click.option("--no-cache", is_flag=True, help="Synthesize even when the cache has this spec.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@llm_options
def synth(
    repo: str | None,
    spec_file: Path | None,
    deployment_id: str | None,
    out_dir: Path | None,
    live_prices: bool,
    allow_findings: bool,
    no_cache: bool,
    as_json: bool,
    llm: str | None,
    llm_region: str | None,
    **params: Any,
) -> None:
    """Compile REPO's deployment spec into CloudFormation (AWS CDK) for review.

    Prints the resources, the estimated monthly cost per resource and in total, the
    estimated provisioning time with its critical path, and the gate results
    (cdk-nag AwsSolutions, cfn-lint). A finding fails with exit 1 unless
    --allow-findings. Nothing is created in AWS.

    \b
    Examples:
      hivemind synth examples/flask-notes
      hivemind synth . --stage-1 --xray --out ./review
      hivemind synth --spec spec.json --json
      hivemind synth . --deployment-id shop-k2j4m6p7q3   # what would change
    """
    from hivemind.synth_command import run_synth

    progress = lambda line: click.echo(line, err=True)  # noqa: E731
    advisor = advisor_from(llm, llm_region, params.get("region") or default_region())
    advisor.log = progress
    report = run_synth(
        repo=repo,
        spec_file=spec_file,
        overrides=overrides_from(params),
        deployment_id=deployment_id,
        out_dir=out_dir,
        live_prices=live_prices,
        use_cache=not no_cache,
        progress=progress,
        advisor=advisor,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(report.render())
    if report.blocked and not allow_findings:
        click.echo(
            "\nerror: the security and lint gates found problems (listed above)\n"
            "  next:  fix them, or acknowledge each in code with its reason; "
            "--allow-findings proceeds knowingly",
            err=True,
        )
        sys.exit(1)
