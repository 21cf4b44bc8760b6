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
