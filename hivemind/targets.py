"""Which AWS a command talks to: the real one (the standard credential chain), or the
local sandbox when `--sandbox` / `HIVEMIND_SANDBOX=1` asks for it.

This is the one place that knows the difference: it starts the sandbox on demand and
points this process (boto3) and its children (the CDK CLI) at it. Everything else
just makes AWS calls.
"""

from __future__ import annotations

import os

from hivemind.paths import home

SANDBOX_VARIABLE = "HIVEMIND_SANDBOX"


def sandbox_requested() -> bool:
    return os.environ.get(SANDBOX_VARIABLE, "").lower() in ("1", "true", "yes")


def prepare(region: str) -> dict[str, str]:
    """Point this process at the target for `region`; returns the environment a child
    process (the CDK CLI) needs on top of its own. Idempotent."""
    if not sandbox_requested():
        return {}
    from hivemind.sandbox import control  # lazy: only sandbox runs pay for it

    info = control.up(home())
    for name in control.CONFLICTING_VARIABLES:
        os.environ.pop(name, None)
    environment = control.environment(info, region)
    os.environ.update(environment)
    return environment


CHECKIP_URL = "https://checkip.amazonaws.com"


def operator_cidr(timeout: float = 5.0) -> str:
    """The operator's address as AWS sees it (/32), for the SSH rule of instances in
    public subnets. In the sandbox the operator and the hosts share the loopback."""
    if sandbox_requested():
        return "127.0.0.1/32"
    import ipaddress
    import urllib.request

    import boto3
    import botocore.exceptions

    from hivemind.errors import BadInputError

    # No credentials means no deployment: say so before asking anyone for our address.
    if boto3.Session().get_credentials() is None:
        raise botocore.exceptions.NoCredentialsError()

    try:
        with urllib.request.urlopen(CHECKIP_URL, timeout=timeout) as answer:
            text = answer.read(64).decode().strip()
        address = ipaddress.ip_address(text)
    except (OSError, ValueError) as exc:
        raise BadInputError(
            "could not detect your public address for the SSH rule",
            cause=f"{CHECKIP_URL}: {exc}",
            next_step="pass it yourself: --ssh-cidr 203.0.113.7/32",
        ) from None
    return f"{address}/{32 if address.version == 4 else 128}"
