"""`hivemind sandbox up|down|reset|status|fault|certificate`"""

from __future__ import annotations

import json

import click

from hivemind.cli.options import yes_option


@click.group()
def sandbox() -> None:
    """The local sandbox: AWS's APIs served offline on 127.0.0.1, for trying HiveMind
    and for its tests. Any command runs against it with --sandbox or HIVEMIND_SANDBOX=1
    (it starts on demand)."""


@sandbox.command()
def up() -> None:
    """Start the sandbox daemon (no-op when it runs); print its endpoint."""
    from hivemind.paths import home
    from hivemind.sandbox import control

    info = control.up(home())
    click.echo(f"sandbox up: {info.url} (pid {info.pid}); log {control.log_file(home())}")


@sandbox.command()
def down() -> None:
    """Stop the sandbox daemon. Everything created in it is gone with it."""
    from hivemind.paths import home
    from hivemind.sandbox import control

    stopped = control.down(home())
    click.echo("sandbox stopped" if stopped else "the sandbox was not running")


@sandbox.command()
@yes_option
def reset(yes: bool) -> None:
    """Empty the running sandbox, as a new account: every stack, instance, database and
    load balancer in it is gone, every fault disarmed; the daemon keeps running.
    Deployment records stay (`hivemind status` finds their stacks gone).

    \b
    Example:
      hivemind sandbox reset --yes
    """
    from hivemind.errors import RefusedError
    from hivemind.paths import home
    from hivemind.sandbox import control

    info = control.status(home())
    if info is None:
        click.echo("the sandbox is not running: nothing to reset")
        return
    if not yes and not click.confirm(
        f"Delete everything in the sandbox at {info.url}?", default=False, err=True
    ):
        raise RefusedError("nothing was deleted: the reset was declined")
    control.reset(info)
    click.echo(f"sandbox reset: {info.url} is a new, empty account")


@sandbox.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def sandbox_status(as_json: bool) -> None:
    """Is the sandbox running, where, and which faults are armed."""
    from hivemind.paths import home
    from hivemind.sandbox import control

    info = control.status(home())
    armed = control.faults(info) if info else []
    if as_json:
        click.echo(
            json.dumps(
                {
                    "running": info is not None,
                    "url": info.url if info else None,
                    "pid": info.pid if info else None,
                    "faults": armed,
                },
                indent=2,
            )
        )
        return
    if info is None:
        click.echo("sandbox: not running (`hivemind sandbox up`, or any command with --sandbox)")
        return
    click.echo(f"sandbox: running at {info.url} (pid {info.pid})")
    for fault in armed:
        click.echo(f"  fault: {json.dumps(fault, sort_keys=True)}")


@sandbox.command()
@click.option(
    "--resource-type",
    help="e.g. AWS::RDS::DBInstance (patterns like AWS::RDS::*); not needed for "
    "--on connect|command|health.",
)
@click.option(
    "--on",
    "on",
    type=click.Choice(["create", "update", "delete", "connect", "command", "health"]),
    default="create",
    show_default=True,
    help="Fail a resource's creation, update or deletion; or make a sandbox host refuse "
    "SSH (connect), fail a command containing --match (command), or fail its load "
    "balancer health checks (health).",
)
@click.option("--match", default="", help="With --on command: text the failing command contains.")
@click.option(
    "--times",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many times the fault fires.",
)
@click.option(
    "--message",
    default=None,
    help="The error message to fail with, e.g. an AWS error's own wording "
    "(default: one saying the sandbox injected it).",
)
@click.option(
    "--code",
    default="",
    help="With a resource fault: the error code in the status reason, e.g. LimitExceeded.",
)
@click.option("--clear", is_flag=True, help="Disarm every fault instead.")
def fault(
    resource_type: str | None,
    on: str,
    match: str,
    times: int,
    message: str | None,
    code: str,
    clear: bool,
) -> None:
    """Make the sandbox fail a resource's creation or deletion, to try rollback and
    recovery.

    \b
    Example:
      hivemind sandbox fault --resource-type AWS::RDS::DBInstance --on create
      hivemind sandbox fault --on command --match "pip install"
      hivemind sandbox fault --on health --times 100
      hivemind sandbox fault --resource-type AWS::EC2::Instance --code VcpuLimitExceeded \
        --message "You have requested more vCPU capacity than your current vCPU limit"
      hivemind sandbox fault --clear
    """
    from hivemind.errors import BadInputError
    from hivemind.paths import home
    from hivemind.sandbox import control
    from hivemind.sandbox.faults import HOST_FAULT_TYPES

    resource_type = resource_type or HOST_FAULT_TYPES.get(on)
    info = control.up(home())
    if clear:
        control.clear_faults(info)
        click.echo("all faults cleared")
        return
    if not resource_type:
        raise BadInputError(
            "give --resource-type TYPE (or --clear)",
            next_step="hivemind sandbox fault --resource-type AWS::RDS::DBInstance",
        )
    if on == "command" and not match:
        raise BadInputError(
            "give --match TEXT with --on command (the failing command contains it)",
            next_step='hivemind sandbox fault --on command --match "pip install"',
        )
    control.add_fault(
        info, resource_type, on=on, times=times, match=match, message=message, code=code
    )
    what = f" matching {match!r}" if match else ""
    click.echo(f"armed: the next {times} {on}(s) of {resource_type}{what} will fail")


@sandbox.command()
@click.argument("domain")
@click.option(
    "--alternative-name",
    "alternative_names",
    multiple=True,
    metavar="NAME",
    help="Another name the certificate covers, e.g. www.example.com (repeatable).",
)
@click.option("--region", default=None, help="The ACM region (default: $AWS_REGION or us-east-1).")
@click.option("--json", "as_json", is_flag=True, help="Print the ARN and names as JSON.")
def certificate(
    domain: str, alternative_names: tuple[str, ...], region: str | None, as_json: bool
) -> None:
    """Issue a certificate for DOMAIN from the sandbox's CA and import it into the
    sandbox's ACM; print its ARN, for deploying with HTTPS in the sandbox.

    The sandbox's HTTPS load balancers serve it, and clients given `SSL_CERT_FILE` from
    the sandbox's environment (HiveMind's QA is) trust it. On AWS, request a certificate
    in ACM (or import your own) for your domain instead.

    \b
    Example:
      arn=$(hivemind sandbox certificate notes.example.test)
      hivemind deploy examples/flask-notes --sandbox --stage-1 --yes \\
        --certificate-arn "$arn" --domain notes.example.test
    """
    import os
    import re

    import boto3

    from hivemind.errors import BadInputError
    from hivemind.paths import home
    from hivemind.sandbox import certificates, control
    from hivemind.spec import DOMAIN_PATTERN

    names = [name.lower().removesuffix(".") for name in (domain, *alternative_names)]
    for name in names:
        bare = name.removeprefix("*.")
        if len(name) > 253 or not re.fullmatch(DOMAIN_PATTERN, bare):
            raise BadInputError(
                f"{name!r} is not a domain name",
                where="DOMAIN" if name == names[0] else "--alternative-name",
                next_step="give a name such as notes.example.test (*.example.test for "
                "every name under it)",
            )
    region = (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or control.DEFAULT_REGION
    )
    info = control.up(home())
    issued = certificates.issue(control.state_dir(home()), names[0], tuple(names[1:]))
    variables = control.environment(info, region)
    acm = boto3.client(
        "acm",
        endpoint_url=variables["AWS_ENDPOINT_URL"],
        region_name=region,
        aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
    )
    arn = acm.import_certificate(
        Certificate=issued.certificate,
        PrivateKey=issued.private_key,
        CertificateChain=issued.chain,
        Tags=[{"Key": "hivemind:sandbox-certificate", "Value": names[0]}],
    )["CertificateArn"]
    if as_json:
        click.echo(json.dumps({"certificate_arn": arn, "names": names, "region": region}))
    else:
        click.echo(arn)
        click.echo(
            f"issued by the sandbox's CA for {', '.join(names)}, imported into the "
            f"sandbox's ACM in {region}; deploy with --certificate-arn {arn} "
            f"--domain {names[0]}",
            err=True,
        )
