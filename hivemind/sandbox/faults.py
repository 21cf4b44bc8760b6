"""Faults the sandbox injects on purpose, so rollback and recovery paths can be tested.

A fault makes the next `times` operations of one kind fail with a message that says
the sandbox caused it:

* `create`, `update`, `delete` of a CloudFormation resource type (`AWS::RDS::*`);
* `connect` to a sandbox host's SSH server (`resource_type` `Sandbox::SSH`): refused;
* `command` run on a sandbox host (`Sandbox::Command`) whose text contains `match`:
  exits 1 with the fault's message on stderr (a build that fails);
* `health` check of a load balancer target (`Sandbox::HealthCheck`): the target
  reports unhealthy (an app that never becomes healthy).

Faults live in the sandbox server's memory; `hivemind.sandbox.control` adds, lists
and clears them over the server's control endpoint.
"""

from __future__ import annotations

import fnmatch
import re
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

Operation = Literal["create", "update", "delete", "connect", "command", "health"]
OPERATIONS: tuple[Operation, ...] = ("create", "update", "delete", "connect", "command", "health")
# The resource type each host-level operation is armed under.
HOST_FAULT_TYPES: dict[str, str] = {
    "connect": "Sandbox::SSH",
    "command": "Sandbox::Command",
    "health": "Sandbox::HealthCheck",
}


class InjectedFault(Exception):
    """Raised instead of creating or deleting a resource while a fault is armed."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.code = code or "SandboxInjectedFault"


@dataclass
class Fault:
    """Fail the next `remaining` `on` operations of resources matching `resource_type`
    (a type name, or a pattern such as `AWS::RDS::*`)."""

    resource_type: str
    on: Operation
    remaining: int
    message: str
    match: str = ""  # only operations whose subject contains this (e.g. a command's text)
    code: str = ""  # the error code AWS would give (e.g. InsufficientInstanceCapacity)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_fault(data: dict[str, Any]) -> Fault:
    """A fault from its JSON form; ValueError says what is wrong with it."""
    resource_type = data.get("resource_type")
    if not isinstance(resource_type, str) or not resource_type.strip():
        raise ValueError("resource_type must be a CloudFormation type such as AWS::RDS::DBInstance")
    on = data.get("on", "create")
    if on not in OPERATIONS:
        raise ValueError(f"on must be one of {', '.join(OPERATIONS)}, not {on!r}")
    times = data.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or times < 1:
        raise ValueError(f"times must be a positive whole number, not {times!r}")
    match = data.get("match") or ""
    if not isinstance(match, str):
        raise ValueError(f"match must be text, not {match!r}")
    message = data.get("message") or (
        f"Fault injected by the HiveMind sandbox: {on} of {resource_type}"
        + (f" matching {match!r}" if match else "")
        + " fails"
    )
    code = data.get("code") or ""
    if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z0-9.]*", code):
        raise ValueError(f"code must be an error code such as LimitExceeded, not {code!r}")
    return Fault(resource_type.strip(), cast(Operation, on), times, str(message), match, code)


class FaultBook:
    """The armed faults of one sandbox server (safe to use from its request threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def armed(self) -> list[Fault]:
        with self._lock:
            return [Fault(**asdict(f)) for f in self._faults]

    def trip(self, resource_type: str, on: Operation, subject: str = "") -> None:
        """Raise InjectedFault if a fault is armed for this operation (and, for a fault
        with `match`, this subject), using it up."""
        with self._lock:
            for fault in self._faults:
                if (
                    fault.on == on
                    and fnmatch.fnmatchcase(resource_type, fault.resource_type)
                    and fault.match in subject
                ):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    raise InjectedFault(fault.message, fault.code)


FAULTS = FaultBook()
