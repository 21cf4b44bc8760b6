"""`hivemind deploy REPO` and `hivemind retry ID`"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hivemind.cli.options import overrides_from, repo_or_spec, spec_options, yes_option
from hivemind.cli.render import write_stderr


def _conductor(region: str, yes: bool) -> Any:
    from hivemind.conductor import create_conductor

    terminal = sys.stderr.isatty()
    return create_conductor(
        region,
        yes=yes,
        terminal=terminal,
        say=click.echo,
        write=write_stderr,
        ask=lambda question: click.confirm(question, default=False, err=True),
    )


@click.command()
@repo_or_spec("Deploy")
@spec_options
@yes_option
def deploy(repo: str | None, spec_file: Path | None, yes: bool, **params: Any) -> None:
    """Provision REPO's deployment on AWS (or the sandbox with --sandbox).

    Synthesizes the stack, shows the plan with its monthly cost and asks before
    creating anything; then the pinned CDK CLI deploys it and CloudFormation creates
    it, or rolls it back. Progress follows the stack's events.

    \b
    Examples:
      hivemind deploy examples/express-hello --stage-1 --sandbox --yes
      hivemind deploy . --region eu-west-1
    """
    from hivemind.deployment_ids import new_deployment_id
    from hivemind.synth_command import SynthReport, load_spec

    spec = load_spec(
        repo, spec_file, overrides_from(params), lambda line: click.echo(line, err=True)
    )
    deployment_id = new_deployment_id(spec.app.name)
    click.echo(f"Deployment {deployment_id}", err=True)
    conductor = _conductor(spec.region, yes)
    state = conductor.deploy(
        spec,
        deployment_id,
        plan=lambda result, folder, _deployed: SynthReport(spec, folder, result, None).render(),
    )
    _done(state)


@click.command()
@click.argument("deployment_id")
@yes_option
def retry(deployment_id: str, yes: bool) -> None:
    """Resume a failed deployment at the stage that failed.

    \b
    Example:
      hivemind retry shop-k2j4m6p8q1
    """
    from hivemind.records import RecordStore
    from hivemind.synth_command import plan_with_changes

    record = RecordStore().get(deployment_id)
    spec = record.spec()
    _done(
        _conductor(spec.region, yes).retry(
            deployment_id,
            plan=lambda result, folder, deployed: plan_with_changes(spec, folder, result, deployed),
        )
    )


def _done(state: Any) -> None:
    url = state.outputs.get("LoadBalancerDns")
    click.echo(
        f"\n{state.deployment_id} is {state.status.value}" + (f": http://{url}" if url else "")
    )
    click.echo(f"  next: hivemind status {state.deployment_id}")
