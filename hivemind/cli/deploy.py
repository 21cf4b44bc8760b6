"""`hivemind deploy REPO`, `retry ID`, `update ID` and `upgrade ID --to-production`"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from hivemind.cli.options import (
    advisor_from,
    default_region,
    llm_options,
    overrides_from,
    pairs,
    repo_or_spec,
    spec_options,
    yes_option,
)
from hivemind.cli.render import write_stderr


def _conductor(region: str, yes: bool, no_input: bool, health_timeout: float, advisor: Any) -> Any:
    from hivemind.conductor import create_conductor

    terminal = sys.stderr.isatty()
    return create_conductor(
        region,
        yes=yes,
        terminal=terminal,
        say=click.echo,
        write=write_stderr,
        ask=lambda question: click.confirm(question, default=False, err=True),
        health_timeout=health_timeout,
        advisor=advisor,
        fixes="report" if no_input else "accept" if yes else "ask",
        ask_value=_ask_value if terminal and not no_input else lambda _question: None,
    )


def _ask_value(question: str) -> str | None:
    value = click.prompt(question, default="", show_default=False, err=True)
    return str(value) or None


def no_input_option(function: Any) -> Any:
    return click.option(
        "--no-input",
        is_flag=True,
        envvar="HIVEMIND_NO_INPUT",
        show_envvar=True,
        help="When a stage fails, only report Medic's diagnosis and fix; never apply it.",
    )(function)


def health_timeout_option(function: Any) -> Any:
    return click.option(
        "--health-timeout",
        type=click.FloatRange(min=10),
        default=300.0,
        show_default=True,
        envvar="HIVEMIND_HEALTH_TIMEOUT",
        show_envvar=True,
        help="Seconds to wait for the load balancer to report every instance healthy.",
    )(function)


@click.command()
@repo_or_spec("Deploy")
@click.option(
    "--source",
    "source_ref",
    help="With --spec: the app's repository (path or git URL) to deploy.",
)
@spec_options
@health_timeout_option
@llm_options
@no_input_option
@yes_option
def deploy(
    repo: str | None,
    spec_file: Path | None,
    source_ref: str | None,
    yes: bool,
    no_input: bool,
    health_timeout: float,
    llm: str | None,
    llm_region: str | None,
    **params: Any,
) -> None:
    """Deploy REPO on AWS (or the sandbox with --sandbox), and verify it answers.

    Packs the app (git archive of HEAD, or the folder minus what .gitignore
    excludes), synthesizes the stack, shows the plan with its monthly cost and asks
    before creating anything. The pinned CDK CLI deploys the stack and
    CloudFormation creates it, or rolls it back. Then each instance gets the release
    over SSH (a key made for this deployment, host keys pinned from the instances'
    console output): build, service, health check; the load balancer must report
    every instance healthy, and QA checks the URL, the ports and the database.

    If a stage fails, Medic says why (with the evidence) and proposes a fix where one
    exists: accept it and the deployment resumes at that stage (--yes accepts,
    --no-input only reports). The failed deployment is otherwise left as it is.

    \b
    Examples:
      hivemind deploy examples/flask-notes --stage-1 --sandbox --yes
      hivemind deploy . --stage-1 --region eu-west-1
    """
    from hivemind.conductor import Source
    from hivemind.deployment_ids import new_deployment_id
    from hivemind.errors import BadInputError
    from hivemind.recon.source import open_repo
    from hivemind.synth_command import load_spec, plan_with_changes

    progress = lambda line: click.echo(line, err=True)  # noqa: E731
    region = params.get("region") or default_region()
    advisor = advisor_from(llm, llm_region, region)
    advisor.log = progress
    spec = load_spec(repo, spec_file, overrides_from(params), progress, advisor)
    ref = repo or source_ref
    if ref is None:
        raise BadInputError(
            "deploying --spec needs the app's source too",
            next_step="add --source REPO (the repository the spec was made from)",
        )
    source = Source(ref, open_repo(ref, progress).path, spec.app.subdir)
    spec = _with_operator_ssh(spec)
    deployment_id = new_deployment_id(spec.app.name)
    click.echo(f"Deployment {deployment_id}", err=True)
    conductor = _conductor(spec.region, yes, no_input, health_timeout, advisor)
    state = conductor.deploy(
        spec,
        deployment_id,
        source,
        plan=lambda result, folder, deployed: plan_with_changes(
            spec, folder, result, deployed, advisor
        ),
    )
    _done(state)


def _with_operator_ssh(spec: Any) -> Any:
    """Instances in public subnets (stage-1) are reached over SSH from the operator's
    address only: detect it when the spec names none."""
    from hivemind.spec import Provenance, Source
    from hivemind.targets import operator_cidr

    if spec.profile != "stage-1" or spec.access.ssh_cidr is not None:
        return spec
    cidr = operator_cidr()
    click.echo(f"SSH to the instances: from {cidr} only (your address)", err=True)
    return spec.model_copy(
        update={
            "access": spec.access.model_copy(update={"ssh_cidr": cidr}),
            "provenance": {
                **spec.provenance,
                "access.ssh_cidr": Provenance(
                    source=Source.DETECTED, note="your public address, for the deploy's SSH"
                ),
            },
        }
    )


@click.command()
@click.argument("deployment_id")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="PATH=VALUE",
    help="Change a spec setting first, e.g. --set app.port=3000 (repeatable; the value is "
    "read as JSON when it parses, else as text).",
)
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Give an environment variable of the app a plain value first (repeatable).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Retry even after 3 retries of this deployment have failed.",
)
@health_timeout_option
@llm_options
@no_input_option
@yes_option
def retry(
    deployment_id: str,
    settings: tuple[str, ...],
    env: tuple[str, ...],
    force: bool,
    yes: bool,
    no_input: bool,
    health_timeout: float,
    llm: str | None,
    llm_region: str | None,
) -> None:
    """Resume a failed deployment at the stage that failed.

    A deployment that failed while provisioning shows its plan again (with what
    would change) and provisions; one that failed at the deploy or verify stage
    packs the app again from its repository and resumes there, without touching
    the stack. Fix the cause first (Medic's diagnosis says what it was), or change
    the spec here with --set and --env; a change that alters the stack provisions
    again. After three retries of one deployment, another needs --force.

    \b
    Examples:
      hivemind retry shop-k2j4m6p7q3
      hivemind retry shop-k2j4m6p7q3 --set app.port=3000 --env SECRET_KEY=dev-only
    """
    from hivemind.records import RecordStore
    from hivemind.spec import Provenance, Source
    from hivemind.synth_command import plan_with_changes

    record = RecordStore().get(deployment_id)
    spec = record.spec()
    advisor = advisor_from(llm, llm_region, spec.region)
    conductor = _conductor(spec.region, yes, no_input, health_timeout, advisor)
    changes: dict[str, object] = {
        path: _setting_value(value)
        for path, value in pairs(settings, "--set", "--set app.port=3000").items()
    }
    if env:
        changes["app.env"] = {**spec.app.env, **pairs(env, "--env", "--env LOG_LEVEL=info")}
    if changes:
        flags = " ".join(["--set"] * bool(settings) + ["--env"] * bool(env))
        conductor.change_spec(
            deployment_id, changes, Provenance(source=Source.USER, evidence=f"retry {flags}")
        )
    _done(
        conductor.retry(
            deployment_id,
            plan=lambda result, folder, deployed: plan_with_changes(
                record.spec(), folder, result, deployed, advisor
            ),
            force=force,
        )
    )


@click.command()
@click.argument("deployment_id")
@click.option(
    "--version",
    "version",
    metavar="REF",
    envvar="HIVEMIND_VERSION",
    show_envvar=True,
    help="The commit, tag or branch to deploy (default: the repository's checkout as it "
    "is now). A release the instances still keep (its release id or commit) is switched "
    "back to at once, without a build.",
)
@click.option(
    "--rolling",
    is_flag=True,
    help="Update the serving instances one at a time instead of blue-green (needs two or "
    "more instances).",
)
@health_timeout_option
@llm_options
@yes_option
def update(
    deployment_id: str,
    version: str | None,
    rolling: bool,
    yes: bool,
    health_timeout: float,
    llm: str | None,
    llm_region: str | None,
) -> None:
    """Put a new release of a deployed app in service, without dropping a request.

    Blue-green (the default): the standby colour gets as many instances as serve now
    (a stack update, shown and priced first), the release is deployed there and
    checked through the load balancer before any user sees it; then the listener
    switches to it, the live URL is checked, and the old instances are removed. A
    failure before the switch removes the new instances; a failed check after it
    switches back. Either way the release that served before still serves.

    --rolling: each instance in turn leaves the load balancer, drains, gets the
    release, passes its health check and comes back; the others keep serving. A
    failure switches the instances already updated back.

    --version naming a release the instances still keep (the last three) switches
    back to it instantly: no build, one instance at a time.

    \b
    Examples:
      hivemind update shop-k2j4m6p7q3
      hivemind update shop-k2j4m6p7q3 --version v1.4.2 --rolling
      hivemind update shop-k2j4m6p7q3 --version 20261202101500-3f9c2ab --yes
    """
    conductor, plan = _day_two(deployment_id, yes, health_timeout, llm, llm_region)
    _done(conductor.update(deployment_id, version=version, rolling=rolling, plan=plan))


def _day_two(
    deployment_id: str, yes: bool, health_timeout: float, llm: str | None, llm_region: str | None
) -> tuple[Any, Any]:
    """The Conductor for an update or upgrade of a recorded deployment, and how it shows
    a plan (Medic's fixes are reported, never applied: the old release keeps serving)."""
    from hivemind.records import RecordStore
    from hivemind.synth_command import plan_with_changes

    record = RecordStore().get(deployment_id)
    spec = record.spec()
    advisor = advisor_from(llm, llm_region, spec.region)
    conductor = _conductor(spec.region, yes, True, health_timeout, advisor)
    return conductor, lambda result, folder, deployed: plan_with_changes(
        record.spec(), folder, result, deployed, advisor
    )


@click.command()
@click.argument("deployment_id")
@click.option(
    "--to-production",
    is_flag=True,
    required=True,
    help="Grow a stage-1 deployment into the production profile (required: the only "
    "upgrade there is).",
)
@health_timeout_option
@llm_options
@yes_option
def upgrade(
    deployment_id: str,
    to_production: bool,
    yes: bool,
    health_timeout: float,
    llm: str | None,
    llm_region: str | None,
) -> None:
    """Upgrade a stage-1 deployment to production, without stopping it.

    The spec is recompiled with the production profile and the plan is shown with
    the monthly cost before and after. The stack update is a change set, shown and
    checked first (the database is modified in place, never replaced; the serving
    instance is not touched): NAT gateways per AZ, private subnets, Multi-AZ, a read
    replica and 7-day backups for the database, and the production instances in the
    standby colour, reached through an EC2 Instance Connect Endpoint. The release is
    deployed and checked there, the load balancer switches to it, and the stage-1
    instance is removed. A failure before the switch undoes the upgrade; a failed
    check after it switches back.

    \b
    Examples:
      hivemind upgrade shop-k2j4m6p7q3 --to-production
      hivemind upgrade shop-k2j4m6p7q3 --to-production --yes
    """
    if not to_production:
        raise click.UsageError("name the upgrade: --to-production")
    conductor, plan = _day_two(deployment_id, yes, health_timeout, llm, llm_region)
    _done(conductor.upgrade(deployment_id, plan=plan))


def _setting_value(text: str) -> object:
    """A --set value: JSON when it parses (3000, true, null, ["a"]), else the text."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def _done(state: Any) -> None:
    click.echo(f"\n{state.deployment_id} is {state.status.value}")
    if state.url:
        click.echo(f"  url:  {state.url}")
    balancer = (state.outputs or {}).get("LoadBalancerDns")
    if state.url and balancer and balancer not in state.url:
        click.echo(
            f"  dns:  point {state.url.split('://', 1)[1]} at {balancer} (a CNAME record, "
            "or an alias A record in Route 53)"
        )
    for release in state.releases:
        steps = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in release.seconds.items())
        click.echo(f"  {release.instance_id}: release {release.release_id} ({steps})")
    if state.checks:
        passed = sum(1 for c in state.checks if c.status == "passed")
        failed = [c for c in state.checks if c.status == "failed"]
        click.echo(f"  checks: {passed} passed, {len(failed)} failed")
        for check in state.checks:
            click.echo(f"    {check.status:<14} {check.name}: {check.detail}")
    click.echo(f"  next: hivemind status {state.deployment_id}")
