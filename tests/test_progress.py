"""Provisioning progress built from CloudFormation's stack events."""

from __future__ import annotations

from typing import Any

from hivemind.progress import ProgressDisplay, StackProgress

STACK = "hivemind-shop-abcdefghij"


def event(
    n: int, logical_id: str, status: str, kind: str = "AWS::EC2::VPC", reason: str = ""
) -> dict[str, Any]:
    return {
        "EventId": f"e{n}",
        "Timestamp": f"2026-11-24T10:00:{n:02d}Z",
        "LogicalResourceId": logical_id,
        "ResourceType": kind,
        "ResourceStatus": status,
        "ResourceStatusReason": reason,
    }


def test_counts_done_in_progress_and_failed_from_events() -> None:
    progress = StackProgress(STACK, total=3)
    # Newest first, as DescribeStackEvents returns them; repeats are ignored.
    newest_first = [
        event(5, "Db", "CREATE_FAILED", "AWS::RDS::DBInstance", "DB quota exceeded"),
        event(4, "Nat", "CREATE_FAILED", "AWS::EC2::NatGateway", "Resource creation cancelled"),
        event(3, "Vpc", "CREATE_COMPLETE"),
        event(2, "Db", "CREATE_IN_PROGRESS", "AWS::RDS::DBInstance"),
        event(1, "Vpc", "CREATE_IN_PROGRESS"),
        event(0, STACK, "CREATE_IN_PROGRESS", "AWS::CloudFormation::Stack"),
    ]
    changed = progress.feed(newest_first)
    assert [c.logical_id for c in changed] == ["Vpc", "Db", "Vpc", "Nat", "Db"]
    assert progress.feed(newest_first) == []
    assert progress.done == 1
    # The cancelled NAT gateway is a consequence, not a cause: only the database is reported.
    assert [(f.logical_id, f.reason) for f in progress.failed] == [("Db", "DB quota exceeded")]


def test_a_terminal_gets_one_rewritten_line() -> None:
    written: list[str] = []
    display = ProgressDisplay(written.append, terminal=True)
    progress = StackProgress(STACK, total=10)
    changed = progress.feed(
        [
            event(1, "Vpc", "CREATE_COMPLETE"),
            event(2, "Db", "CREATE_IN_PROGRESS", "AWS::RDS::DBInstance"),
        ]
    )
    display.update(progress, changed)
    assert written[-1].startswith("\r\033[K[1/10] 0m00s  in progress: Db")


def test_plain_output_gets_a_line_per_finished_resource() -> None:
    written: list[str] = []
    display = ProgressDisplay(written.append, terminal=False)
    progress = StackProgress(STACK, total=2)
    display.update(
        progress,
        progress.feed(
            [
                event(1, "Vpc", "CREATE_IN_PROGRESS"),
                event(2, "Vpc", "CREATE_COMPLETE"),
                event(3, "Db", "CREATE_FAILED", "AWS::RDS::DBInstance", "quota"),
            ]
        ),
    )
    assert written == [
        "1/2 0m00s CREATE_COMPLETE Vpc (AWS::EC2::VPC)\n",
        "1/2 0m00s CREATE_FAILED Db (AWS::RDS::DBInstance): quota\n",
    ]
