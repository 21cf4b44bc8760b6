"""`hivemind doctor`: is this machine ready, and how to fix what is missing."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass

from hivemind import toolchain
from hivemind.provision import BOOTSTRAP_STACK
from hivemind.reconcile import stack_status
from hivemind.targets import prepare, sandbox_requested

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
    checks += _aws()
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
        detail = f"Node {node.version} ({node.origin}: {node.node})"
        if node.major < toolchain.SUPPORTED_NODE_MAJOR:
            # It still runs jsii and the CDK CLI, which no longer support it.
            detail += (
                f"; end of life, no longer supported by jsii and the CDK CLI (Node "
                f"{toolchain.SUPPORTED_NODE_MAJOR}+ is): {toolchain.NODE_EXTRA_HINT}"
            )
        return Check("node", True, detail)
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


def _aws() -> list[Check]:
    """Credentials and region; then, with them, the account, the CDK bootstrap and
    the permissions HiveMind needs."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if sandbox_requested():
        region = region or "us-east-1"
        prepare(region)
        target = Check("aws", True, f"sandbox ({os.environ['AWS_ENDPOINT_URL']}), region {region}")
    else:
        import botocore.session

        session = botocore.session.Session(profile=os.environ.get("AWS_PROFILE") or None)
        try:
            credentials = session.get_credentials()
            region = region or session.get_config_variable("region")
        except Exception as exc:
            return [
                Check(
                    "aws",
                    False,
                    f"AWS configuration cannot be read: {exc}",
                    "fix ~/.aws/config or AWS_PROFILE",
                )
            ]
        if credentials is None:
            return [
                Check(
                    "aws",
                    False,
                    "no AWS credentials found",
                    "run `aws configure` (or `aws sso login --profile NAME` and set "
                    "AWS_PROFILE), or set HIVEMIND_SANDBOX=1 to try HiveMind offline",
                )
            ]
        method = getattr(credentials, "method", "unknown source")
        if not region:
            return [
                Check(
                    "aws",
                    False,
                    f"credentials from {method}, but no region set",
                    "set AWS_REGION (e.g. export AWS_REGION=us-east-1) or pass --region",
                )
            ]
        target = Check("aws", True, f"credentials from {method}, region {region}")
    return [target, *_account_checks(region)]


def _account_checks(region: str) -> list[Check]:
    import boto3
    import botocore.exceptions

    try:
        identity = boto3.client("sts", region_name=region).get_caller_identity()
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        return [
            Check(
                "account",
                False,
                f"the credentials do not work: {exc}",
                "refresh them (`aws sso login`, new access keys), then retry",
            )
        ]
    checks = [Check("account", True, f"account {identity['Account']} as {identity['Arn']}")]
    bootstrapped = (
        stack_status(boto3.client("cloudformation", region_name=region), BOOTSTRAP_STACK)
        is not None
    )
    checks.append(
        Check(
            "cdk-bootstrap",
            True,
            f"{region} is bootstrapped for the CDK"
            if bootstrapped
            else f"{region} is not bootstrapped: only templates over 51,200 bytes need it, and "
            "`hivemind deploy` bootstraps on confirmation",
        )
    )
    checks.append(_permissions(identity["Arn"], region))
    return checks


def _permissions(caller: str, region: str) -> Check:
    """Simulate the caller's policies against every action `hivemind iam-policy` lists."""
    import boto3

    from hivemind.iam_policy import policy_document

    actions = sorted(
        {
            a
            for statement in policy_document()["Statement"]
            for a in (
                [statement["Action"]]
                if isinstance(statement["Action"], str)
                else statement["Action"]
            )
        }
    )
    principal = _principal_arn(caller)
    iam = boto3.client("iam", region_name=region)
    denied: list[str] = []
    try:
        for start in range(0, len(actions), 100):
            page = iam.simulate_principal_policy(
                PolicySourceArn=principal, ActionNames=actions[start : start + 100]
            )
            denied += [
                r["EvalActionName"]
                for r in page["EvaluationResults"]
                if r["EvalDecision"] != "allowed"
            ]
    except Exception as exc:  # denied, or an endpoint without the simulator
        return Check(
            "permissions",
            True,
            f"not checked: IAM policy simulation is not available ({_first_line(exc)})",
            "attach the policy `hivemind iam-policy` prints",
        )
    if denied:
        shown = ", ".join(denied[:8]) + (f" and {len(denied) - 8} more" if len(denied) > 8 else "")
        return Check(
            "permissions",
            False,
            f"{len(denied)} action(s) not allowed: {shown}",
            "attach the policy `hivemind iam-policy` prints",
        )
    return Check("permissions", True, f"all {len(actions)} actions HiveMind uses are allowed")


def _principal_arn(caller: str) -> str:
    """An assumed-role session's ARN names its role; the simulator wants the role."""
    if ":assumed-role/" in caller:
        account = caller.split(":")[4]
        role = caller.split(":assumed-role/", 1)[1].split("/", 1)[0]
        return f"arn:aws:iam::{account}:role/{role}"
    return caller


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0][:100] if lines else type(error).__name__
