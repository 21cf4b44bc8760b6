"""The `hivemind` command line: thin click commands over library code.

Subcommands are imported only when they run, so `hivemind --help` stays fast and
never imports aws_cdk, langchain, boto3 or moto.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import click

from hivemind import __version__
from hivemind.errors import EXIT_BAD_INPUT, EXIT_REFUSED, HiveMindError

# name -> (module under hivemind.cli, attribute, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "analyze": ("analyze", "analyze", "Read a repository and show what was found, with evidence."),
    "spec": ("spec", "spec", "Resolve the deployment spec, or print its JSON Schema."),
    "synth": ("synth", "synth", "Compile the spec into CloudFormation: cost, time, gates."),
    "deploy": ("deploy", "deploy", "Provision a deployment on AWS (or the sandbox)."),
    "retry": ("deploy", "retry", "Resume a failed deployment where it failed."),
    "update": ("deploy", "update", "Put a new release in service: blue-green, or --rolling."),
    "upgrade": ("deploy", "upgrade", "Grow a stage-1 deployment into production, live."),
    "destroy": ("destroy", "destroy", "Delete a deployment and check nothing is left."),
    "rollback": ("destroy", "rollback", "Undo a failed deployment, in dependency order."),
    "find-orphans": ("orphans", "find_orphans", "Find (and remove) resources no deployment owns."),
    "list": ("deployments", "list_deployments", "List the deployments on this machine."),
    "status": ("deployments", "status", "Show a deployment's status, checked against AWS."),
    "dashboard": ("dashboard", "dashboard", "Open a deployment's CloudWatch dashboard."),
    "report": ("report", "report", "Write a deployment's report: Markdown, or an HTML page."),
    "doctor": ("doctor", "doctor", "Check Python, Node, the CDK CLI and AWS access."),
    "iam-policy": ("iam_policy", "iam_policy", "Print the least-privilege IAM policy to attach."),
    "sandbox": (
        "sandbox",
        "sandbox",
        "Run AWS's APIs locally, offline: up, down, reset, status, fault.",
    ),
    "setup": ("doctor", "setup", "Install the pinned AWS CDK CLI into the per-user cache."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attribute, _ = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(f"hivemind.cli.{module}"), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text from the table, so listing commands imports none of them.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hivemind")
def cli() -> None:
    """HiveMind reads an application's repository and runs it on AWS.

    \b
    Start with:
      hivemind analyze PATH-OR-GIT-URL     what the app is, with evidence
      hivemind spec show PATH-OR-GIT-URL   what HiveMind would build, and why
      hivemind doctor                      is this machine ready

    Add --sandbox (or set HIVEMIND_SANDBOX=1) to any command to run it against the
    local sandbox instead of AWS, or --aws-profile NAME to pick AWS credentials.
    """


def main() -> None:
    wants_json = "--json" in sys.argv[1:]
    # `--sandbox` works on any command: it selects the target for the whole process.
    if "--sandbox" in sys.argv[1:]:
        sys.argv.remove("--sandbox")
        os.environ["HIVEMIND_SANDBOX"] = "1"
    # `--aws-profile NAME` likewise picks the AWS credentials profile (AWS_PROFILE);
    # `--profile` is the deployment profile (stage-1 / production).
    if "--aws-profile" in sys.argv[1:-1]:
        at = sys.argv.index("--aws-profile")
        os.environ["AWS_PROFILE"] = sys.argv[at + 1]
        del sys.argv[at : at + 2]
    try:
        code = cli.main(prog_name="hivemind", standalone_mode=False)
    except HiveMindError as error:
        if wants_json:
            click.echo(json.dumps(error.as_dict(), indent=2))
        click.echo(error.render(), err=True)
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_REFUSED)
    except click.ClickException as error:
        error.show()
        sys.exit(EXIT_BAD_INPUT if isinstance(error, click.UsageError) else error.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as error:
        # botocore's, imported lazily: no credentials is bad input, not a crash.
        if type(error).__name__ not in ("NoCredentialsError", "PartialCredentialsError"):
            raise
        problem = HiveMindError(
            "no AWS credentials found",
            cause=str(error),
            next_step="run `aws configure` (or set AWS_PROFILE), or add --sandbox to try "
            "HiveMind offline",
        )
        click.echo(problem.render(), err=True)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code if isinstance(code, int) else 0)
