"""Options shared by every command that resolves a deployment spec.

Each option overrides one spec field (CLI flags > hivemind.yaml > detection >
defaults) and has an environment-variable twin.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hivemind.errors import BadInputError

F = TypeVar("F", bound=Callable[..., Any])

# (option declaration, spec path, click type, help)
_SPEC_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--subdir", "app.subdir", str, "The app's folder inside the repository (monorepos)."),
    ("--name", "app.name", str, "The app's name (lowercase slug, 2-24 chars)."),
    ("--runtime-version", "app.runtime_version", str, "Runtime version, e.g. 20 or 3.12."),
    ("--build-command", "app.build_command", str, "Shell command that builds the app."),
    ("--start-command", "app.start_command", str, "Shell command that starts it ($PORT is set)."),
    ("--port", "app.port", int, "The port the app listens on."),
    ("--health-path", "app.health_path", str, "The path the load balancer checks, e.g. /health."),
    (
        "--db-engine",
        "database.engine",
        click.Choice(["postgres", "mysql", "none"]),
        "The managed database to provision.",
    ),
    ("--db-version", "database.engine_version", str, "Database engine version, e.g. 16."),
    ("--db-instance-class", "database.instance_class", str, "RDS class, e.g. db.t3.micro."),
    ("--db-storage", "database.storage_gb", int, "Database storage in GiB (20+)."),
    ("--instance-type", "compute.instance_type", str, "EC2 instance type, e.g. t3.small."),
    ("--count", "compute.count", int, "Number of instances."),
    (
        "--profile",
        "profile",
        click.Choice(["stage-1", "production"]),
        "stage-1: one small instance, no NAT; production: redundant (default).",
    ),
    ("--region", "region", str, "AWS region, e.g. eu-west-1 (default: $AWS_REGION)."),
    (
        "--certificate-arn",
        "access.certificate_arn",
        str,
        "ACM certificate for HTTPS on 443 (port 80 then redirects); needs --domain.",
    ),
    (
        "--domain",
        "access.domain",
        str,
        "The name people reach the app at, e.g. app.example.com (HTTPS is checked for it).",
    ),
    (
        "--ssh-cidr",
        "access.ssh_cidr",
        str,
        "Your address range allowed to SSH, e.g. 203.0.113.7/32.",
    ),
]


def repo_or_spec(verb: str) -> Callable[[F], F]:
    """REPO (a path or git URL) or `--spec FILE`: where a command's spec comes from."""

    def decorate(function: F) -> F:
        function = click.option(
            "--spec",
            "spec_file",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help=f"{verb} this spec.json instead of reading a repository.",
        )(function)
        return click.argument("repo", required=False)(function)

    return decorate


def yes_option(function: F) -> F:
    """`--yes`/`-y`: answer the confirmation before anything destructive, for scripts."""
    return click.option(
        "--yes",
        "-y",
        is_flag=True,
        envvar="HIVEMIND_YES",
        show_envvar=True,
        help="Do not ask for confirmation (for scripts).",
    )(function)


def llm_options(function: F) -> F:
    """`--llm` and `--llm-region`: the model the agents use (none by default)."""
    function = click.option(
        "--llm-region",
        envvar="HIVEMIND_LLM_REGION",
        show_envvar=True,
        help="The model's region (default: the deployment's region).",
    )(function)
    return click.option(
        "--llm",
        envvar="HIVEMIND_LLM",
        show_envvar=True,
        metavar="bedrock:MODEL_ID",
        help="Let the agents use this Bedrock model to explain and propose (every proposal "
        "is checked). Default: none, HiveMind's own rules.",
    )(function)


def advisor_from(llm: str | None, llm_region: str | None, region: str) -> Any:
    """The agents' Advisor for `--llm`/`--llm-region` (none: the deterministic rules)."""
    from hivemind_agents.llm import advisor_for

    return advisor_for(llm, region, llm_region=llm_region)


def default_region() -> str:
    """The region from the environment, as the AWS CLI finds it, else us-east-1."""
    import os

    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _envvar(declaration: str) -> str:
    return "HIVEMIND_" + declaration.lstrip("-").replace("-", "_").upper()


def spec_options(function: F) -> F:
    """Add every spec override option to a command."""
    decorators = [
        click.option(
            declaration,
            path.replace(".", "__"),
            type=kind,
            default=None,
            help=text,
            envvar=_envvar(declaration),
            show_envvar=True,
        )
        for declaration, path, kind, text in _SPEC_OPTIONS
    ]
    decorators += [
        click.option(
            "--stage-1",
            "--minimal",
            "stage_1",
            is_flag=True,
            default=False,
            help="Same as --profile stage-1.",
        ),
        click.option(
            "--allow-wide-ssh",
            "allow_wide_ssh",
            is_flag=True,
            default=False,
            help="Accept an --ssh-cidr wider than a /16 (IPv6: a /48).",
        ),
        click.option(
            "--xray/--no-xray",
            "xray",
            default=None,
            envvar="HIVEMIND_XRAY",
            show_envvar=True,
            help="Trace requests with AWS X-Ray.",
        ),
        click.option(
            "--env-var",
            "env_vars",
            multiple=True,
            metavar="NAME",
            help="An environment variable the operator must provide (repeatable).",
        ),
        click.option(
            "--env",
            "env",
            multiple=True,
            metavar="NAME=VALUE",
            help="A plain (not secret) environment variable for the app (repeatable).",
        ),
        click.option(
            "--tag",
            "tags",
            multiple=True,
            metavar="KEY=VALUE",
            help="A tag for every resource (repeatable).",
        ),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def overrides_from(params: dict[str, Any]) -> Any:
    """The Overrides for the spec options a command received (pops them from params)."""
    from hivemind.resolve import Overrides

    values: dict[str, tuple[object, str]] = {}
    for declaration, path, _kind, _text in _SPEC_OPTIONS:
        value = params.pop(path.replace(".", "__"), None)
        if value is not None:
            values[path] = (value, declaration)
    if params.pop("stage_1", False):
        if "profile" in values and values["profile"][0] != "stage-1":
            raise BadInputError("--stage-1 and --profile production contradict each other")
        values["profile"] = ("stage-1", "--stage-1")
    if params.pop("allow_wide_ssh", False):
        values["access.allow_wide_ssh"] = (True, "--allow-wide-ssh")
    xray = params.pop("xray", None)
    if xray is not None:
        values["xray"] = (xray, "--xray" if xray else "--no-xray")
    env_vars = params.pop("env_vars", ())
    if env_vars:
        values["app.env_vars"] = (tuple(env_vars), "--env-var")
    env = params.pop("env", ())
    if env:
        values["app.env"] = (pairs(env, "--env", "--env LOG_LEVEL=info"), "--env")
    tags = params.pop("tags", ())
    if tags:
        values["tags"] = (pairs(tags, "--tag", "--tag team=payments"), "--tag")
    return Overrides(values)


def pairs(given: tuple[str, ...], flag: str, example: str) -> dict[str, str]:
    """`KEY=VALUE` arguments of a repeatable flag, as a mapping."""
    parsed: dict[str, str] = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInputError(f"{flag} {item!r} is not KEY=VALUE", next_step=f"e.g. {example}")
        parsed[key] = value
    return parsed
