"""`hivemind doctor`: is this machine ready, and how to fix what is missing."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

from hivemind import toolchain

MIN_PYTHON = (3, 11)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def run_checks() -> list[Check]:
    checks = [_python()]
    node = toolchain.find_node()
    checks.append(_node(node))
    checks.append(_cdk(node))
    checks.append(_aws())
    return checks


def _python() -> Check:
    version = ".".join(str(p) for p in sys.version_info[:3])
    ok = sys.version_info[:2] >= MIN_PYTHON
    return Check(
        "python",
        ok,
        f"Python {version} at {sys.executable}",
        "" if ok else "install Python 3.11 or newer and reinstall HiveMind with it",
    )


def _node(node: toolchain.NodeRuntime | None) -> Check:
    if node is not None:
        return Check("node", True, f"Node {node.version} ({node.origin}: {node.node})")
    machine = toolchain.machine_node()
    found = f"Node {machine[1]} at {machine[0]} is too old" if machine else "no Node found"
    return Check(
        "node",
        False,
        f"{found}; the CDK CLI needs Node {toolchain.MIN_NODE_MAJOR}+",
        toolchain.NODE_EXTRA_HINT,
    )


def _cdk(node: toolchain.NodeRuntime | None) -> Check:
    pinned = toolchain.CDK_CLI_VERSION
    if node is None:
        return Check(
            "cdk-cli",
            False,
            f"AWS CDK CLI {pinned}: needs Node first",
            "fix Node, then run `hivemind setup`",
        )
    installed = toolchain.cdk_installed_version(node)
    if installed == pinned:
        return Check("cdk-cli", True, f"AWS CDK CLI {installed} at {toolchain.cdk_dir()}")
    state = f"found {installed}" if installed else "not installed"
    return Check(
        "cdk-cli",
        False,
        f"AWS CDK CLI {pinned} {state} in {toolchain.cdk_dir()}",
        "run `hivemind setup` (installs it with npm into the per-user cache)",
    )


def _aws() -> Check:
    if os.environ.get("HIVEMIND_SANDBOX") == "1":
        return Check("aws", True, "sandbox selected (HIVEMIND_SANDBOX=1): no AWS account needed")
    import botocore.session

    session = botocore.session.Session(profile=os.environ.get("AWS_PROFILE") or None)
    try:
        credentials = session.get_credentials()
        region = session.get_config_variable("region")
    except Exception as exc:
        return Check(
            "aws",
            False,
            f"AWS configuration cannot be read: {exc}",
            "fix ~/.aws/config or AWS_PROFILE",
        )
    if credentials is None:
        return Check(
            "aws",
            False,
            "no AWS credentials found",
            "run `aws configure` (or `aws sso login --profile NAME` and set AWS_PROFILE),"
            " or set HIVEMIND_SANDBOX=1 to try HiveMind offline",
        )
    method = getattr(credentials, "method", "unknown source")
    if not region:
        return Check(
            "aws",
            False,
            f"credentials from {method}, but no region set",
            "set AWS_REGION (e.g. export AWS_REGION=us-east-1) or pass --region",
        )
    return Check("aws", True, f"credentials from {method}, region {region}")
