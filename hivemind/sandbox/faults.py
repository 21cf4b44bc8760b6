"""Faults the sandbox injects on purpose, so rollback and recovery paths can be tested.

A fault makes the next `times` creations (updates, deletions) of a resource
type fail with a status reason that says the sandbox caused it. Faults live in the
sandbox server's memory; `hivemind.sandbox.control` adds, lists and clears
them over the server's control endpoint.
"""

from __future__ import annotations

import fnmatch
import threading
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

Operation = Literal["create", "update", "delete"]
OPERATIONS: tuple[Operation, ...] = ("create", "update", "delete")


class InjectedFault(Exception):
    """Raised instead of creating or deleting a resource while a fault is armed."""

    code = "SandboxInjectedFault"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Fault:
    """Fail the next `remaining` `on` operations of resources matching `resource_type`
    (a type name, or a pattern such as `AWS::RDS::*`)."""

    resource_type: str
    on: Operation
    remaining: int
    message: str

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
    message = data.get("message") or (
        f"Fault injected by the HiveMind sandbox: {on} of {resource_type} fails"
    )
    return Fault(resource_type.strip(), cast(Operation, on), times, str(message))


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

    def trip(self, resource_type: str, on: Operation) -> None:
        """Raise InjectedFault if a fault is armed for this operation, using it up."""
        with self._lock:
            for fault in self._faults:
                if fault.on == on and fnmatch.fnmatchcase(resource_type, fault.resource_type):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    raise InjectedFault(fault.message)


FAULTS = FaultBook()
