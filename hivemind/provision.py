"""The Provisioner: the pinned CDK CLI deploys a synthesized assembly; CloudFormation
creates (or rolls back) the stack; HiveMind follows the stack's events meanwhile.

Before deploying it clears what would block CloudFormation: a stack left in
ROLLBACK_COMPLETE is deleted (it can only be deleted), one in UPDATE_ROLLBACK_FAILED
is continued. After, it reports the stack's status, its outputs, and, on failure,
each resource that failed with CloudFormation's reason.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hivemind import toolchain
from hivemind.errors import HiveMindError
from hivemind.progress import ProgressDisplay, ResourceState, StackProgress
from hivemind.reconcile import stack_status

POLL_SECONDS = 2.0
BOOTSTRAP_STACK = "CDKToolkit"
WAIT_LIMIT_SECONDS = 3 * 3600
_TAIL_LINES = 15


# Reads a change set's resource changes (DescribeChangeSet's ResourceChange items)
# before it runs; raising stops it.
Review = Callable[[list[dict[str, Any]]], None]


@dataclass(frozen=True)
class ProvisionResult:
    ok: bool
    stack_status: str | None
    outputs: dict[str, str]
    failures: list[ResourceState] = field(default_factory=list)
    seconds: float = 0.0
    cli_tail: str = ""


class Provisioner:
    """Runs `cdk deploy` for one stack and follows it. The CloudFormation client and
    the environment (real AWS, or the sandbox's endpoint) are given, not chosen here."""

    def __init__(
        self,
        cloudformation: Any,
        environment: dict[str, str],
        display: ProgressDisplay,
        log: Callable[[str], None],
    ) -> None:
        self.cloudformation = cloudformation
        self.environment = environment
        self.display = display
        self.log = log

    def provision(
        self,
        cdk_out: Path,
        stack_name: str,
        total_resources: int,
        cli_log: Path,
        parameters: dict[str, str] | None = None,
        review: Review | None = None,
    ) -> ProvisionResult:
        """Deploy the assembly's stack and follow it. With `review`, an existing stack
        is changed through a change set: created without executing it, its changes
        given to `review` (which raises to stop; the change set is then deleted), then
        executed and followed."""
        node = toolchain.find_node()
        if node is None or toolchain.cdk_installed_version(node) != toolchain.CDK_CLI_VERSION:
            raise HiveMindError(
                "the pinned AWS CDK CLI is not installed",
                where="provision",
                next_step="run `hivemind setup` (or `hivemind doctor` to see what is missing)",
            )
        self._clear_blockers(stack_name)
        outputs_file = cdk_out.parent / "outputs.json"
        outputs_file.unlink(missing_ok=True)  # never a stale one
        command = toolchain.cdk_command(
            node,
            "deploy",
            stack_name,
            "--app",
            str(cdk_out),
            "--require-approval",
            "never",
            "--outputs-file",
            str(outputs_file),
            "--progress",
            "events",
            *[f"--parameters={name}={value}" for name, value in (parameters or {}).items()],
        )
        change_set = None
        if review is not None and stack_status(self.cloudformation, stack_name) is not None:
            change_set = f"hivemind-{time.strftime('%Y%m%d%H%M%S')}"
            command += ["--no-execute", "--change-set-name", change_set]
        started = time.monotonic()
        progress = StackProgress(stack_name, total_resources)
        since = _latest_event_id(self.cloudformation, stack_name)
        with cli_log.open("a", encoding="utf-8") as output:
            process = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=toolchain.cdk_workdir(cdk_out),
                env={**toolchain.node_env(node), **self.environment},
            )
            try:
                # Follow the stack every POLL_SECONDS, and go on as soon as the CLI ends
                # (not at the next poll: a stack update is often done in seconds).
                while True:
                    self._follow(progress, stack_name, since)
                    try:
                        process.wait(timeout=POLL_SECONDS)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            except BaseException:
                process.terminate()
                process.wait(timeout=30)
                raise
        if change_set is not None and review is not None and process.returncode == 0:
            self._execute_reviewed(stack_name, change_set, review, progress, since)
        self._follow(progress, stack_name, since)
        self.display.finish()
        status = stack_status(self.cloudformation, stack_name)
        tail = cli_log.read_text("utf-8").splitlines()[-_TAIL_LINES:]
        # CloudFormation's answer to an update that changes nothing: the stack is already
        # what was asked for.
        unchanged = bool(tail) and tail[-1].strip() == "No updates are to be performed."
        # A stack an update failed on rolls back to UPDATE_ROLLBACK_COMPLETE: asking it
        # for the template it rolled back to changes nothing, and that is success too.
        ok = (process.returncode == 0 and status in ("CREATE_COMPLETE", "UPDATE_COMPLETE")) or (
            unchanged
            and status in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")
        )
        return ProvisionResult(
            ok=ok,
            stack_status=status,
            # A change set run leaves the file as the CDK CLI wrote it before executing.
            outputs=(None if change_set else _outputs(outputs_file, stack_name))
            or self._stack_outputs(stack_name),
            failures=progress.failed,
            seconds=time.monotonic() - started,
            cli_tail="\n".join(tail),
        )

    def _execute_reviewed(
        self,
        stack_name: str,
        change_set: str,
        review: Review,
        progress: StackProgress,
        since: str | None,
    ) -> None:
        """Show the change set to `review`, then execute it and follow the stack until
        CloudFormation is done (a change set without changes is deleted, not run)."""
        import botocore.exceptions  # lazy

        try:
            described = self.cloudformation.describe_change_set(
                StackName=stack_name, ChangeSetName=change_set
            )
        except botocore.exceptions.ClientError:  # the CDK CLI deletes an empty change set
            self.log(f"change set {change_set}: no changes")
            return
        changes = [c["ResourceChange"] for c in described.get("Changes", [])]
        if described.get("Status") == "FAILED" or not changes:
            self.log(f"change set {change_set}: {described.get('StatusReason') or 'no changes'}")
            self.cloudformation.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            return
        try:
            review(changes)
        except BaseException:
            self.cloudformation.delete_change_set(StackName=stack_name, ChangeSetName=change_set)
            self.log(f"change set {change_set}: not executed")
            raise
        self.log(f"change set {change_set}: executing {len(changes)} change(s)")
        self.cloudformation.execute_change_set(StackName=stack_name, ChangeSetName=change_set)
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while time.monotonic() < deadline:
            self._follow(progress, stack_name, since)
            status = stack_status(self.cloudformation, stack_name) or ""
            if not status.endswith("_IN_PROGRESS"):
                return
            time.sleep(POLL_SECONDS)

    def bootstrapped(self) -> bool:
        """Whether this account and region have the CDK bootstrap stack."""
        return stack_status(self.cloudformation, BOOTSTRAP_STACK) in (
            "CREATE_COMPLETE",
            "UPDATE_COMPLETE",
            "UPDATE_ROLLBACK_COMPLETE",
        )

    def bootstrap(self, cdk_out: Path, cli_log: Path) -> None:
        """Run `cdk bootstrap` for the app's environment (its account and region)."""
        node = toolchain.find_node()
        assert node is not None
        command = toolchain.cdk_command(node, "bootstrap", "--app", str(cdk_out))
        with cli_log.open("a", encoding="utf-8") as output:
            result = subprocess.run(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=False,
                cwd=toolchain.cdk_workdir(cdk_out),
                env={**toolchain.node_env(node), **self.environment},
            )
        if result.returncode != 0:
            tail = cli_log.read_text("utf-8").splitlines()[-_TAIL_LINES:]
            raise HiveMindError(
                "`cdk bootstrap` failed",
                where="provision",
                cause=(tail or ["?"])[-1],
                details=tail[:-1],
                next_step="check the credentials' permissions (`hivemind doctor`), then retry",
            )

    def _follow(self, progress: StackProgress, stack_name: str, since: str | None) -> None:
        events = _events_since(self.cloudformation, stack_name, since)
        changed = progress.feed(events)
        if changed:
            self.display.update(progress, changed)

    def _clear_blockers(self, stack_name: str) -> None:
        status = stack_status(self.cloudformation, stack_name)
        if status == "ROLLBACK_COMPLETE":
            self.log(
                f"{stack_name} is in ROLLBACK_COMPLETE from an earlier failed create: "
                "deleting it before creating it again"
            )
            self.cloudformation.delete_stack(StackName=stack_name)
            self._wait(stack_name, done=(None, "DELETE_COMPLETE"), failed=("DELETE_FAILED",))
        elif status == "UPDATE_ROLLBACK_FAILED":
            self.log(f"{stack_name} is in UPDATE_ROLLBACK_FAILED: continuing the rollback")
            self.cloudformation.continue_update_rollback(StackName=stack_name)
            self._wait(
                stack_name, done=("UPDATE_ROLLBACK_COMPLETE",), failed=("UPDATE_ROLLBACK_FAILED",)
            )

    def _wait(
        self, stack_name: str, *, done: tuple[str | None, ...], failed: tuple[str, ...]
    ) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_SECONDS
        while time.monotonic() < deadline:
            status = stack_status(self.cloudformation, stack_name)
            if status in done:
                return
            if status in failed:
                raise HiveMindError(
                    f"CloudFormation could not clear {stack_name} before deploying",
                    where="provision",
                    cause=f"the stack is {status}",
                    next_step="look at the stack's events in the CloudFormation console, "
                    "then `hivemind destroy` it",
                )
            time.sleep(POLL_SECONDS)
        raise HiveMindError(f"timed out waiting for {stack_name}", where="provision")

    def _stack_outputs(self, stack_name: str) -> dict[str, str]:
        try:
            stack = self.cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        except Exception:  # no stack, no outputs: the failure itself says why
            return {}
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _outputs(path: Path, stack_name: str) -> dict[str, str]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8") or "{}")
    return {str(k): str(v) for k, v in data.get(stack_name, {}).items()}


def _latest_event_id(cloudformation: Any, stack_name: str) -> str | None:
    """The newest event of the stack's past operations, so they are not shown again."""
    events = _events_since(cloudformation, stack_name, None, pages=1)
    return str(events[0]["EventId"]) if events else None


def _events_since(
    cloudformation: Any, stack_name: str, since: str | None, pages: int = 5
) -> list[dict[str, Any]]:
    """Events newer than `since` (newest first); empty when the stack does not exist."""
    import botocore.exceptions  # lazy

    events: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(pages):
        try:
            page = cloudformation.describe_stack_events(
                StackName=stack_name, **({"NextToken": token} if token else {})
            )
        except botocore.exceptions.ClientError:
            return events
        for event in page.get("StackEvents", []):
            if since is not None and event.get("EventId") == since:
                return events
            events.append(event)
        token = page.get("NextToken")
        if not token or pages == 1:
            break
    return events
