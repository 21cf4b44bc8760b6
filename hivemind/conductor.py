"""The Conductor runs a deployment's stages and records each one.

    synth ──► provision ──► (deploy the app, verify: later stages)

Each stage's result (status, timings, error) goes into the deployment record; a
failure records the failed stage so `hivemind retry ID` resumes there. The
collaborators (record store, CloudFormation client, target environment, display,
confirmation) are given in the constructor; `create_conductor` wires the real ones.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind.deployment_ids import stack_name
from hivemind.errors import HiveMindError, RefusedError
from hivemind.progress import ProgressDisplay
from hivemind.provision import Provisioner, ProvisionResult
from hivemind.reconcile import stack_status
from hivemind.records import (
    DeploymentRecord,
    DeploymentState,
    RecordStore,
    ResourceRecord,
    StageResult,
    Status,
    now,
)
from hivemind.spec import DeploymentSpec
from hivemind.synth import SynthResult, synthesize

# Shows the plan: the synth result, its folder, and the template deployed now (if any).
Plan = Callable[[SynthResult, Path, "dict[str, Any] | None"], str]
_STAGE_STATUS = {"provision": Status.PROVISIONING}  # other stages keep the status as is


class StageFailed(HiveMindError):
    """A stage failed; the record says which, and what to run next."""


@dataclass(frozen=True)
class Collaborators:
    store: RecordStore
    cloudformation: Any
    environment: dict[str, str]  # what points the CDK CLI at AWS or at the sandbox
    display: ProgressDisplay
    say: Callable[[str], None]
    confirm: Callable[[str], bool]


class Conductor:
    def __init__(self, parts: Collaborators) -> None:
        self.parts = parts

    # --- commands -------------------------------------------------------------------

    def deploy(self, spec: DeploymentSpec, deployment_id: str, *, plan: Plan) -> DeploymentState:
        """Create a deployment: synthesize, show the plan and cost, confirm, provision."""
        record = self.parts.store.create(spec, deployment_id, stack_name(deployment_id))
        with record.lock("deploy"):
            result = self._stage(record, "synth", lambda: self._synth(record, spec))
            self.parts.say(plan(result, record.folder, None))
            if not self.parts.confirm(
                f"Create {result.stack_name} for about ${result.cost.total_usd:,.2f}/month?"
            ):
                record.save(
                    record.load().model_copy(
                        update={
                            "status": Status.DESTROYED,
                            "note": "declined before anything was created",
                        }
                    )
                )
                raise RefusedError("nothing was created: the plan was declined")
            return self._provision(record, result)

    def retry(self, deployment_id: str, *, plan: Plan) -> DeploymentState:
        """Resume a failed deployment: synthesize again, show the plan and what would
        change against the stack as it stands, confirm, provision."""
        record = self.parts.store.get(deployment_id)
        with record.lock("retry"):
            state = record.load()
            if state.status != Status.FAILED:
                raise RefusedError(
                    f"{deployment_id} is {state.status.value}, not failed: nothing to retry"
                )
            spec = record.spec()
            result = self._stage(record, "synth", lambda: self._synth(record, spec))
            self.parts.say(plan(result, record.folder, self._deployed_template(state.stack_name)))
            if not self.parts.confirm(f"Retry {deployment_id}?"):
                raise RefusedError("nothing was changed: the retry was declined")
            return self._provision(record, result)

    def _deployed_template(self, stack: str) -> dict[str, Any] | None:
        """The template the stack runs now; None when there is none worth comparing
        (no stack, or one CloudFormation rolled back to nothing)."""
        if stack_status(self.parts.cloudformation, stack) in (None, "ROLLBACK_COMPLETE"):
            return None
        body = self.parts.cloudformation.get_template(StackName=stack)["TemplateBody"]
        return body if isinstance(body, dict) else dict(json.loads(body))

    # --- stages ---------------------------------------------------------------------

    def _synth(self, record: DeploymentRecord, spec: DeploymentSpec) -> SynthResult:
        result = synthesize(spec, record.deployment_id, record.folder)
        if result.blocking_findings:
            rules = ", ".join(
                sorted({f"{f['rule']} on {f['resource']}" for f in result.blocking_findings})
            )
            raise StageFailed(
                "the security and lint gates found problems",
                where="synth",
                cause=rules,
                next_step=f"`hivemind synth --spec {record.folder / 'spec.json'}` explains each",
            )
        return result

    def _provision(self, record: DeploymentRecord, synth: SynthResult) -> DeploymentState:
        provisioner = Provisioner(
            self.parts.cloudformation, self.parts.environment, self.parts.display, record.log
        )
        total = sum(n for t, n in synth.resources.items() if t != "AWS::CDK::Metadata")
        if synth.needs_bootstrap and not provisioner.bootstrapped():
            self._stage(record, "bootstrap", lambda: self._bootstrap(record, provisioner))
        outcome: ProvisionResult = self._stage(
            record,
            "provision",
            lambda: provisioner.provision(
                record.cdk_out, synth.stack_name, total, record.folder / "cdk-cli.log"
            ),
            check=lambda r: None if r.ok else self._provision_failure(record, r),
        )
        costs = {line.logical_id: line.monthly_usd for line in synth.cost.lines}
        resources = self._resources(synth.stack_name, costs)
        state = record.load().model_copy(
            update={
                "status": Status.DEPLOYED,
                "failed_stage": None,
                "outputs": outcome.outputs,
                "resources": resources,
                "monthly_usd": synth.cost.total_usd,
                "note": "",
            }
        )
        record.log(f"deployed: {synth.stack_name} is {outcome.stack_status}")
        return record.save(state)

    def _bootstrap(self, record: DeploymentRecord, provisioner: Provisioner) -> None:
        question = (
            "The template is over CloudFormation's inline limit, so it is uploaded through "
            "the CDK bootstrap bucket, which this account and region do not have yet. "
            "Bootstrap them now (`cdk bootstrap`: an S3 bucket and the CDK's IAM roles)?"
        )
        if not self.parts.confirm(question):
            raise StageFailed(
                "the account and region are not bootstrapped",
                where="bootstrap",
                next_step=f"run `cdk bootstrap`, then `hivemind retry {record.deployment_id}`",
            )
        self.parts.say("Bootstrapping the account and region for the CDK ...")
        provisioner.bootstrap(record.cdk_out, record.folder / "cdk-cli.log")

    def _provision_failure(self, record: DeploymentRecord, result: ProvisionResult) -> None:
        details = [f"{f.logical_id} ({f.resource_type}): {f.reason}" for f in result.failures]
        raise StageFailed(
            f"CloudFormation could not create the stack (it is {result.stack_status or 'gone'})",
            where="provision",
            cause=details[0] if details else (result.cli_tail.splitlines() or ["?"])[-1],
            details=details[1:],
            next_step=f"fix the cause, then `hivemind retry {record.deployment_id}`; or "
            f"`hivemind destroy {record.deployment_id}` to remove what is left",
        )

    def _resources(self, stack_name: str, costs: dict[str, float]) -> list[ResourceRecord]:
        paginator = self.parts.cloudformation.get_paginator("list_stack_resources")
        out = []
        for page in paginator.paginate(StackName=stack_name):
            for item in page.get("StackResourceSummaries", []):
                out.append(
                    ResourceRecord(
                        logical_id=item["LogicalResourceId"],
                        resource_type=item["ResourceType"],
                        physical_id=item.get("PhysicalResourceId"),
                        monthly_usd=costs.get(item["LogicalResourceId"], 0.0),
                    )
                )
        return out

    def _stage(
        self,
        record: DeploymentRecord,
        name: str,
        run: Callable[[], Any],
        check: Callable[[Any], None] | None = None,
    ) -> Any:
        with self._recorded(record, name):
            result = run()
            if check is not None:
                check(result)
            return result

    @contextmanager
    def _recorded(self, record: DeploymentRecord, name: str) -> Iterator[None]:
        started = time.monotonic()
        state = record.load()
        status = _STAGE_STATUS.get(name, state.status)
        stage = StageResult(name=name, status="running", started_at=now())
        record.save(state.model_copy(update={"status": status, "stages": [*state.stages, stage]}))
        record.log(f"stage {name}: started")
        try:
            yield
        except BaseException as error:
            why = (
                (error.cause or error.what)
                if isinstance(error, HiveMindError)
                else (f"interrupted: {error!r}")
            )
            self._finish(record, stage, started, "failed", why)
            record.save(
                record.load().model_copy(update={"status": Status.FAILED, "failed_stage": name})
            )
            raise
        self._finish(record, stage, started, "ok", "")

    def _finish(
        self, record: DeploymentRecord, stage: StageResult, started: float, outcome: str, error: str
    ) -> None:
        state = record.load()
        done = stage.model_copy(
            update={
                "status": outcome,
                "finished_at": now(),
                "seconds": time.monotonic() - started,
                "error": error or None,
            }
        )
        stages = [s for s in state.stages if s is not stage and s != stage] + [done]
        record.save(state.model_copy(update={"stages": stages}))
        record.log(f"stage {stage.name}: {outcome}" + (f" ({error})" if error else ""))


def create_conductor(
    region: str,
    *,
    yes: bool,
    terminal: bool,
    say: Callable[[str], None],
    write: Callable[[str], None],
    ask: Callable[[str], bool],
) -> Conductor:
    """Wire the real collaborators: records under $HIVEMIND_HOME, the target's
    CloudFormation (AWS, or the sandbox when asked for), the progress display."""
    from hivemind.aws import client
    from hivemind.targets import prepare

    environment = prepare(region)
    return Conductor(
        Collaborators(
            store=RecordStore(),
            cloudformation=client("cloudformation", region),
            environment=environment,
            display=ProgressDisplay(write, terminal=terminal),
            say=say,
            confirm=(lambda _question: True) if yes else ask,
        )
    )
