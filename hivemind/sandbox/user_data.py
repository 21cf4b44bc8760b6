"""What an instance's user data gets done before it stops, as far as the sandbox follows it.

A sandbox host does not run its user data; it reads it (`cloudwatch_agent`, `telemetry`,
`host_tools.users`) for what it would have started and created. AL2023 runs the user
data once, with cloud-init, and HiveMind's begins `set -euo pipefail`: the first command
that fails stops it, and nothing after it happens. The command the sandbox checks is
`dnf install`: every package it names must be one AL2023's repositories carry
(`hivemind.al2023.PACKAGES`; a local `.rpm` path is installed as it is). The first name
that is not stops the script there, with dnf's own words (dnf 4, AL2023's):

    No match for argument: nodejs18
    Error: Unable to find a match: nodejs18

so the users created after that line do not exist, and the CloudWatch agent the same
line installs never starts, exactly as on an instance whose user data failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hivemind.al2023 import PACKAGES
from hivemind.sandbox.host_tools.users import simple_commands


@dataclass(frozen=True)
class Outcome:
    """How far the user data got: the scripts (or their first part) that ran, and the
    failure's output lines, None when every `dnf install` could succeed."""

    ran: list[str]
    failure: list[str] | None = None


def follow(scripts: Iterable[str]) -> Outcome:
    """The user data's scripts up to the first `dnf install` of a package AL2023 lacks
    (that line excluded), and dnf's error for it."""
    ran: list[str] = []
    for script in scripts:
        kept: list[str] = []
        for line in script.splitlines():
            missing = _missing_packages(line)
            if missing:
                ran.append("\n".join(kept))
                failure = [f"No match for argument: {name}" for name in missing]
                failure.append(f"Error: Unable to find a match: {' '.join(missing)}")
                return Outcome(ran, failure)
            kept.append(line)
        ran.append("\n".join(kept))
    return Outcome(ran)


def _missing_packages(line: str) -> list[str]:
    """The packages AL2023 lacks that a `dnf install` on this line names (a local path or
    `.rpm` file is installed as it is)."""
    missing: list[str] = []
    for command in simple_commands(line):
        if command[0] != "dnf" or "install" not in command[1:3]:
            continue
        operands = command[command.index("install") + 1 :]
        missing += [
            name
            for name in operands
            if not name.startswith("-")
            and not name.endswith(".rpm")
            and "/" not in name
            and name not in PACKAGES
        ]
    return missing
