"""`hivemind status`: the record, checked against CloudFormation, the state of record.

When a HiveMind process dies mid-command (killed, a closed laptop), the record is
left saying "provisioning" with nobody working on it. Status notices (the lock is
free), reads the stack's real status, and rewrites the record to what is true.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hivemind.records import IN_PROGRESS, DeploymentRecord, DeploymentState, Status

# The stages of a deployment, in order (the Conductor runs them; `retry` resumes).
STAGES = ("synth", "provision", "deploy", "verify", "monitor")
_NEXT_STAGE = {
    Status.PROVISIONING: "provision",
    Status.DEPLOYING: "deploy",
    Status.VERIFYING: "verify",
    Status.UPDATING: "update",
    Status.ROLLING_BACK: "rollback",
    Status.DESTROYING: "destroy",
}


@dataclass(frozen=True)
class Reconciled:
    state: DeploymentState
    stack_status: str | None  # None: the stack does not exist
    changed: bool
    note: str


def stack_status(cloudformation: Any, stack_name: str) -> str | None:
    """The stack's status, or None when CloudFormation has no such (live) stack."""
    import botocore.exceptions  # lazy: status stays light

    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except botocore.exceptions.ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return str(stacks[0]["StackStatus"]) if stacks else None


def reconcile(state: DeploymentState, stack: str | None, *, locked: bool) -> Reconciled:
    """What the record should say, given the stack's status and whether a HiveMind
    process still holds the deployment's lock. Pure: the caller saves the result."""
    if locked:
        return Reconciled(state, stack, False, "a HiveMind command is working on it now")
    gone = stack in (None, "DELETE_COMPLETE")
    if state.status in IN_PROGRESS:
        if stack is not None and stack.endswith("_IN_PROGRESS"):
            return Reconciled(
                state,
                stack,
                False,
                f"CloudFormation is still at work ({stack}); no HiveMind process is following it",
            )
        if state.status == Status.DESTROYING and gone:
            return _changed(
                state,
                stack,
                Status.DESTROYED,
                None,
                "the stack is deleted; the interrupted destroy had finished",
            )
        if state.status == Status.ROLLING_BACK and gone:
            return _changed(
                state,
                stack,
                Status.ROLLED_BACK,
                None,
                "the stack is deleted; the interrupted rollback had finished",
            )
        stage = _NEXT_STAGE.get(state.status, state.status.value)
        if stack in ("CREATE_COMPLETE", "UPDATE_COMPLETE") and state.status == Status.PROVISIONING:
            stage = "deploy"  # provisioning had finished; the app was never deployed
        return _changed(
            state,
            stack,
            Status.FAILED,
            stage,
            f"HiveMind stopped during {stage} (stack: {stack or 'none'})",
        )
    if state.status == Status.DEPLOYED and gone:
        return _changed(
            state, stack, Status.DESTROYED, None, "the stack was deleted outside HiveMind"
        )
    return Reconciled(state, stack, False, "")


def _changed(
    state: DeploymentState, stack: str | None, status: Status, stage: str | None, note: str
) -> Reconciled:
    # A stage still "running" in the record ran in the process that stopped.
    stages = [
        s.model_copy(update={"status": "failed", "error": "interrupted: HiveMind stopped"})
        if s.status == "running"
        else s
        for s in state.stages
    ]
    updated = state.model_copy(
        update={"status": status, "failed_stage": stage, "note": note, "stages": stages}
    )
    return Reconciled(updated, stack, True, note)


def reconcile_record(record: DeploymentRecord, cloudformation: Any) -> Reconciled:
    """Read, reconcile and (when it changed) save one deployment's record."""
    state = record.load()
    if state.status == Status.DESTROYED or (
        state.status == Status.PENDING and not record.cdk_out.exists()
    ):
        return Reconciled(state, None, False, "")
    result = reconcile(
        state, stack_status(cloudformation, state.stack_name), locked=record.is_locked()
    )
    if result.changed:
        saved = record.save(result.state)
        record.log(f"status reconciled: {state.status} -> {saved.status} ({result.note})")
        return Reconciled(saved, result.stack_status, True, result.note)
    return result
