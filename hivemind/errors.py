"""Errors a user sees.

Every error names what failed, where, the cause in one line and the next
command to run. The exit code is part of the error (see ARCHITECTURE.md):
0 ok, 1 deployment failed, 2 bad input or usage, 3 refused.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3


class HiveMindError(Exception):
    """A failure explained for a person: what, where, why, and what to run next."""

    exit_code = EXIT_FAILED

    def __init__(
        self,
        what: str,
        *,
        where: str | None = None,
        cause: str | None = None,
        next_step: str | None = None,
        details: list[str] | None = None,
    ) -> None:
        super().__init__(what)
        self.what = what
        self.where = where
        self.cause = cause
        self.next_step = next_step
        self.details = details or []

    def render(self) -> str:
        lines = [f"error: {self.what}"]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.cause:
            lines.append(f"  cause: {self.cause}")
        lines.extend(f"  - {detail}" for detail in self.details)
        if self.next_step:
            lines.append(f"  next:  {self.next_step}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "error": self.what,
            "where": self.where,
            "cause": self.cause,
            "details": self.details,
            "next": self.next_step,
            "exit_code": self.exit_code,
        }


class BadInputError(HiveMindError):
    """The user's input (a path, a flag, hivemind.yaml) cannot be used as given."""

    exit_code = EXIT_BAD_INPUT


class RefusedError(HiveMindError):
    """HiveMind declined to act (a lock is held, a confirmation was declined)."""

    exit_code = EXIT_REFUSED
