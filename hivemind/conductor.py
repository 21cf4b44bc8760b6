"""The Conductor runs a deployment's stages and records each one.

    synth ──► provision ──► deploy (the app, on every instance) ──► verify (QA)

Each stage's result (status, timings, error) goes into the deployment record; a
failure records the failed stage so `hivemind retry ID` resumes there. The
collaborators (record store, CloudFormation client, target environment, display,
confirmation) are given in the constructor; `create_conductor` wires the real ones.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hivemind import certificate, foundation
from hivemind.deployer.access import (
    Instance,
    connect,
    describe_instances,
    ensure_key_pair,
    ensure_standby_token,
    pin_host_keys,
)
from hivemind.deployer.health import TargetsUnhealthy, wait_until_healthy
from hivemind.deployer.release import APP_LOG_OF, Deployer, Release, read_details
from hivemind.deployer.source import package_source
from hivemind.deployer.tunnel import describe_endpoint
from hivemind.deployment_ids import (
    SSH_PUBLIC_KEY_PARAMETER,
    STANDBY_HEADER,
    STANDBY_TOKEN_PARAMETER,
    stack_name,
)
from hivemind.errors import BadInputError, HiveMindError, RefusedError
from hivemind.progress import ProgressDisplay
from hivemind.provision import Provisioner, ProvisionResult, Review
from hivemind.reconcile import stack_status
from hivemind.records import (
    MAX_RETRIES,
    CheckResult,
    DeploymentRecord,
    DeploymentState,
    Diagnosis,
    InstanceRelease,
    RecordStore,
    ReleaseEvent,
    ResourceRecord,
    SourceRecord,
    StageResult,
    Status,
    UpdateKind,
    UpdateProgress,
    now,
    shown_value,
)
from hivemind.spec import DeploymentSpec, Provenance
from hivemind.spec import Source as SpecSource
from hivemind.synth import SynthResult, synthesize
from hivemind.template_diff import template_of
from hivemind.update_plan import (
    Steps,
    blue_green_steps,
    kept_release,
    kept_sizes,
    other_color,
    production_steps,
    render_change_set,
    runtime_change,
    serving_release,
    upgrade_blockers,
)
from hivemind_agents.base import Advisor

# Shows the plan: the synth result, its folder, and the template deployed now (if any).
Plan = Callable[[SynthResult, Path, "dict[str, Any] | None"], str]
_STAGE_STATUS = {
    "provision": Status.PROVISIONING,
    "deploy": Status.DEPLOYING,
    "verify": Status.VERIFYING,
}  # other stages keep the status as is
# Stages after the stack exists: a retry of one of these does not touch the stack
# (unless the spec changed since it was provisioned).
_ON_BOX_STAGES = ("deploy", "verify")
# The most recent app log lines Medic reads when a failure carried none.
LOG_LINES_FOR_MEDIC = 60
# How many of Medic's fixes one command applies before it gives up and reports.
MAX_FIXES = 2
# What to do with a fix Medic proposes: ask, accept (--yes), or only report (--no-input).
FixPolicy = Literal["ask", "accept", "report"]


class StageFailed(HiveMindError):
    """A stage failed; the record says which, and what to run next."""


@dataclass(frozen=True)
class Source:
    """The app's repository as the operator gave it, and where it is on this machine."""

    ref: str
    path: Path
    subdir: str


@dataclass(frozen=True)
class Collaborators:
    store: RecordStore
    cloudformation: Any
    client: Callable[[str], Any]  # boto3 clients of the target (ec2, elbv2)
    open_source: Callable[[str], Path]  # a recorded repository ref → a readable folder
    environment: dict[str, str]  # what points the CDK CLI at AWS or at the sandbox
    display: ProgressDisplay
    say: Callable[[str], None]
    confirm: Callable[[str], bool]
    health_timeout: float = 300.0  # seconds for the load balancer to report targets healthy
    advisor: Advisor = field(default_factory=Advisor)  # the agents: a model, or the rules
    fixes: FixPolicy = "ask"
    ask_value: Callable[[str], str | None] = lambda _question: None  # None: cannot ask


class Conductor:
    def __init__(self, parts: Collaborators) -> None:
        self.parts = parts
        self._boundary_checked = False

    # --- commands -------------------------------------------------------------------

    def deploy(
        self, spec: DeploymentSpec, deployment_id: str, source: Source, *, plan: Plan
    ) -> DeploymentState:
        """Create a deployment: pack the release, synthesize, show the plan and cost,
        confirm, provision, deploy the app on the instances, verify it. A failed stage
        is diagnosed by Medic; an accepted fix is applied and the deployment resumes."""
        try:
            return self._deploy(spec, deployment_id, source, plan)
        except HiveMindError as error:
            return self._recover(deployment_id, error, plan)
        finally:
            self._keep_agent_calls(deployment_id)
            self._keep_report(deployment_id)

    def _deploy(
        self, spec: DeploymentSpec, deployment_id: str, source: Source, plan: Plan
    ) -> DeploymentState:
        record = self.parts.store.create(spec, deployment_id, stack_name(deployment_id))
        with record.lock("deploy"):
            try:
                self._pack(record, source)
            except HiveMindError:
                self._nothing_created(record, "the app could not be packed")
                raise
            try:
                if spec.access.certificate_arn is not None:  # no ACM client otherwise
                    certificate.check(self.parts.client("acm"), spec)
            except HiveMindError:
                self._nothing_created(record, "the certificate cannot serve the deployment")
                raise
            result = self._stage(record, "synth", lambda: self._synth(record, spec))
            self.parts.say(plan(result, record.folder, None))
            if not self.parts.confirm(
                f"Create {result.stack_name} for about ${result.cost.total_usd:,.2f}/month?"
            ):
                self._nothing_created(record, "declined before anything was created")
                raise RefusedError("nothing was created: the plan was declined")
            self._provision(record, result)
            return self._release(record, spec)

    def _nothing_created(self, record: DeploymentRecord, why: str) -> None:
        record.update(status=Status.DESTROYED, note=why)

    def retry(self, deployment_id: str, *, plan: Plan, force: bool = False) -> DeploymentState:
        """Resume a failed deployment at its failed stage. After a deploy or verify
        failure (and no change to the spec since it was provisioned): pack the app again
        and redeploy, the stack untouched. Otherwise: synthesize again, show the plan and
        what would change against the stack as it stands, confirm, provision, then
        deploy and verify. A new failure is diagnosed, as in `deploy`. After MAX_RETRIES
        retries of one deployment, another needs `force`."""
        try:
            return self._retry(deployment_id, plan, counted=True, force=force)
        except HiveMindError as error:
            return self._recover(deployment_id, error, plan)
        finally:
            self._keep_agent_calls(deployment_id)
            self._keep_report(deployment_id)

    def _retry(
        self,
        deployment_id: str,
        plan: Plan,
        *,
        confirmed: bool = False,
        counted: bool = False,
        force: bool = False,
    ) -> DeploymentState:
        """Resume at the failed stage; `counted` (the user's `retry`, not Medic's
        resumption after an accepted fix) counts against MAX_RETRIES."""
        record = self.parts.store.get(deployment_id)
        confirm = (lambda _question: True) if confirmed else self.parts.confirm
        with record.lock("retry"):
            state = record.load()
            if state.status != Status.FAILED:
                raise RefusedError(
                    f"{deployment_id} is {state.status.value}, not failed: nothing to retry"
                )
            if counted and state.retry_count >= MAX_RETRIES and not force:
                raise RefusedError(
                    f"{deployment_id} has been retried {state.retry_count} times",
                    cause=f"the last failure: {_last_error(state)}",
                    next_step=f"`hivemind status {deployment_id}` shows Medic's diagnosis; "
                    f"fix the cause, then `hivemind retry {deployment_id} --force`, or "
                    f"`hivemind destroy {deployment_id}`",
                )
            if state.source is None:
                raise BadInputError(
                    f"{deployment_id} has no recorded source to deploy (it was made by an "
                    "older HiveMind)",
                    next_step=f"`hivemind destroy {deployment_id}`, then deploy again",
                )
            source = state.source
            if state.update is not None:
                return self._undo_interrupted_update(record, state, confirm, counted)
            spec = record.spec()
            if state.failed_stage in _ON_BOX_STAGES and state.provisioned_spec == _digest(spec):
                self.parts.say(
                    f"{deployment_id} failed at the {state.failed_stage} stage; its stack is "
                    f"in place. The retry packs {source.ref} again and resumes there."
                )
                if not confirm(f"Retry {deployment_id}?"):
                    raise RefusedError("nothing was changed: the retry was declined")
                self._resume(record, counted)
                self._pack(record, self._recorded_source(source), source.version)
                return self._release(record, spec)
            result = self._stage(record, "synth", lambda: self._synth(record, spec))
            deployed = self._deployed_template(state.stack_name)
            self.parts.say(plan(result, record.folder, deployed))
            if not confirm(f"Retry {deployment_id}?"):
                raise RefusedError("nothing was changed: the retry was declined")
            self._resume(record, counted)
            self._pack(record, self._recorded_source(source), source.version)
            if state.failed_stage in _ON_BOX_STAGES and _unchanged(deployed, record, result):
                # The spec changed where the stack does not (say app.env): no provisioning.
                self.parts.say("The stack needs no change; resuming at the deploy stage.")
                record.update(provisioned_spec=_digest(spec))
            else:
                self._provision(record, result)
            return self._release(record, spec)

    def _undo_interrupted_update(
        self,
        record: DeploymentRecord,
        state: DeploymentState,
        confirm: Callable[[str], bool],
        counted: bool,
    ) -> DeploymentState:
        """Undo an update that stopped half-way (its process was killed): the spec goes
        back to what it was before (provisioning removes what the update added and puts
        the listener back), and any serving instance whose `current` release is not the
        one that served before is switched back to it, one at a time. Nothing is built:
        the release that served is still on its instances."""
        assert state.update is not None
        serving = serving_release(state)
        self.parts.say(
            f"The {state.update.how} update to {state.update.release_id} stopped after "
            f"'{state.update.phase}'; the retry puts release {serving} back in service as "
            "it was before the update."
        )
        if not confirm(f"Retry {record.deployment_id}?"):
            raise RefusedError("nothing was changed: the retry was declined")
        self._resume(record, counted)
        record.log(f"retry: undoing the interrupted {state.update.how} update")
        record.update(status=Status.UPDATING)
        spec = record.spec_before_update() or record.spec()
        if spec != record.spec() or state.update.how in ("blue-green", "upgrade"):
            self._provision_spec(record, spec, "restore")
        color = _active_color(record.load().outputs, spec)
        instances = self._instances(record, spec, color)
        deployer = self._deployer(record, spec)
        found = {i.instance_id: deployer.releases(i) for i in instances}
        behind = [i for i in instances if found[i.instance_id][0] != serving]
        group = record.load().outputs.get(f"{color.capitalize()}TargetGroupArn")
        results = self._stage(
            record,
            "switch back",
            lambda: self._one_at_a_time(
                record, spec, group, behind, lambda i: deployer.activate(serving, [i])[0]
            ),
        )
        checks = self._checked(record, "verify live", spec, instances)
        commit = state.serving.commit if state.serving else None
        on_each = {
            i.instance_id: InstanceRelease(
                instance_id=i.instance_id,
                address=i.address,
                release_id=serving,
                commit=commit,
                kept_releases=found[i.instance_id][1],
            )
            for i in instances
        }
        on_each.update({r.instance_id: r for r in results})
        record.keep_spec_before_update(None)
        note = f"the interrupted update was undone; release {serving} serves as before"
        record.log(f"retry: {note}")
        return record.update(
            status=Status.DEPLOYED,
            failed_stage=None,
            update=None,
            checks=checks,
            releases=list(on_each.values()),
            note=note,
        )

    def _resume(self, record: DeploymentRecord, counted: bool) -> None:
        """Clear the recorded failure before resuming; a user's retry is counted."""
        state = record.load()
        count = state.retry_count + counted
        record.update(retry_count=count, diagnosis=None, note="")
        if counted:
            record.log(f"retry {count} at the {state.failed_stage} stage")

    def change_spec(
        self, deployment_id: str, changes: dict[str, object], provenance: Provenance
    ) -> DeploymentSpec:
        """Change a failed deployment's spec before its retry (`retry --set/--env`, or
        Medic's accepted fix); the retry then provisions again if the stack changes."""
        record = self.parts.store.get(deployment_id)
        with record.lock("retry"):
            state = record.load()
            if state.status != Status.FAILED:
                raise RefusedError(
                    f"{deployment_id} is {state.status.value}: only a failed deployment's "
                    "spec is changed before a retry"
                )
            spec = record.spec().with_changes(changes, provenance)
            record.save_spec(spec)
            shown = ", ".join(
                f"{path}={shown_value(path, value)}" for path, value in changes.items()
            )
            record.log(f"spec changed: {shown} ({provenance.describe()})")
            return spec

    # --- day-2: update --------------------------------------------------------------

    def update(
        self,
        deployment_id: str,
        *,
        version: str | None,
        rolling: bool,
        plan: Plan,
    ) -> DeploymentState:
        """Put a new release in service without dropping a request.

        * `version` names a release still kept on every serving instance (its release
          id, or its commit): switch back to it, one instance at a time (the `current`
          link, no build).
        * `rolling`: one instance at a time: take it out of the load balancer, let it
          drain, deploy, health check, put it back.
        * otherwise blue-green: the standby colour gets instances (a stack update), the
          release is deployed and checked there through the load balancer's standby
          rule, the listener switches, the live URL is checked, the old colour removed.

        A failure before the switch leaves the old release serving and removes what the
        update added; a failed check after it switches back. Either way the error is
        raised after the deployment is `deployed` again on its old release."""
        try:
            record = self.parts.store.get(deployment_id)
            with record.lock("update"):
                state = _deployed(record, "updated")
                spec = record.spec()
                kept = kept_release(state, version)
                if kept is not None and kept == serving_release(state):
                    self.parts.say(f"{deployment_id} already serves release {kept}.")
                    return state
                if kept is not None:
                    return self._switch_release(record, spec, kept)
                if rolling:
                    return self._rolling_update(record, spec, version)
                return self._blue_green(record, spec, version, plan)
        finally:
            self._keep_agent_calls(deployment_id)
            self._keep_report(deployment_id)

    def _blue_green(
        self, record: DeploymentRecord, spec: DeploymentSpec, version: str | None, plan: Plan
    ) -> DeploymentState:
        state = record.load()
        assert state.source is not None
        blue = _active_color(state.outputs, spec)
        green = other_color(blue)
        packed = self._pack(record, self._recorded_source(state.source), version, remember=False)
        self._check_runtime(record, spec, packed)
        steps = blue_green_steps(spec, blue)
        result = self._stage(record, "synth", lambda: self._synth(record, steps[0]))
        self.parts.say(plan(result, record.folder, self._deployed_template(state.stack_name)))
        count = spec.compute.count
        if not self.parts.confirm(
            f"Update {record.deployment_id} to release {packed.release_id}: {count} new "
            f"{green} instance(s) while it runs, then the {blue} ones are removed?"
        ):
            raise RefusedError("nothing was changed: the update was declined")
        return self._swap(record, spec, packed, steps, result, "blue-green")

    def upgrade(self, deployment_id: str, *, plan: Plan) -> DeploymentState:
        """Grow a stage-1 deployment into production without stopping it.

        The spec is recompiled with the production profile; the plan and the monthly
        cost difference are shown. Then, as a blue-green swap: a stack update (through a
        change set, shown and checked first: the database must be modified in place,
        never replaced) adds the NAT gateways, the private subnets, Multi-AZ, the read
        replica and backups, and the production instances in the standby colour while
        the stage-1 instance keeps serving from its public subnet; the release is
        deployed there and checked through the standby rule; the listener switches; the
        stage-1 instance is removed."""
        try:
            record = self.parts.store.get(deployment_id)
            with record.lock("upgrade"):
                _deployed(record, "upgraded")
                spec = record.spec()
                if spec.profile == "production":
                    raise RefusedError(f"{deployment_id} is already a production deployment")
                return self._upgrade(record, spec, plan)
        finally:
            self._keep_agent_calls(deployment_id)
            self._keep_report(deployment_id)

    def _upgrade(
        self, record: DeploymentRecord, spec: DeploymentSpec, plan: Plan
    ) -> DeploymentState:
        state = record.load()
        assert state.source is not None
        blue = _active_color(state.outputs, spec)
        green = other_color(blue)
        steps = production_steps(spec, blue)
        both, _switched, done = steps
        final = self._stage(record, "synth", lambda: self._synth(record, done))
        self.parts.say(plan(final, record.folder, self._deployed_template(state.stack_name)))
        now_usd, then_usd = state.monthly_usd, final.cost.total_usd
        self.parts.say(
            f"Monthly cost: ${now_usd:,.2f} now, about ${then_usd:,.2f} in production "
            f"({then_usd - now_usd:+,.2f})."
        )
        for note in kept_sizes(spec):
            self.parts.say(f"note: {note}")
        packed = self._pack(
            record, self._recorded_source(state.source), state.source.version, remember=False
        )
        result = self._stage(record, "synth", lambda: self._synth(record, both))
        serving_ids = {r.instance_id for r in state.releases}
        review = self._upgrade_review(record.deployment_id, serving_ids, green)
        return self._swap(record, spec, packed, steps, result, "upgrade", review=review)

    def _upgrade_review(
        self, deployment_id: str, serving: set[str], green: str
    ) -> Callable[[list[dict[str, Any]]], None]:
        """What checks the upgrade's change set before it runs: shown to the user; the
        database never replaced, the serving instances untouched; then confirmed."""

        def review(changes: list[dict[str, Any]]) -> None:
            self.parts.say(render_change_set(changes))
            blocked = upgrade_blockers(changes, serving)
            if blocked:
                raise RefusedError(
                    "the upgrade would interrupt the deployment, so nothing was changed",
                    cause=blocked[0],
                    details=blocked[1:],
                    next_step=f"`hivemind status {deployment_id}`; a database that must be "
                    "replaced needs a new deployment and a data migration",
                )
            if not self.parts.confirm(
                f"Apply these {len(changes)} changes to {deployment_id}: production "
                f"instances in {green}, then switch to them?"
            ):
                raise RefusedError("nothing was changed: the upgrade was declined")

        return review

    def _swap(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        packed: SourceRecord,
        steps: Steps,
        result: SynthResult,
        how: UpdateKind,
        *,
        review: Review | None = None,
    ) -> DeploymentState:
        """The blue-green swap through three specs: `both` (the standby colour gets
        instances), `switched` (the listener on it), `done` (the old colour gone)."""
        both, switched, done = steps
        state = record.load()
        blue = _active_color(state.outputs, spec)
        green = other_color(blue)
        serving = state.releases
        record.update(
            status=Status.UPDATING,
            update=UpdateProgress(
                how=how,
                release_id=packed.release_id,
                version=packed.version,
                from_color=blue,
            ),
        )
        record.keep_spec_before_update(spec)
        try:
            record.save_spec(both)
            self._provision(record, result, f"provision {green}", review)
            self._progress(record, f"{green} provisioned")
            instances = self._stage(
                record,
                f"deploy {green}",
                lambda: self._deploy_app(record, both, packed, green),
            )
            token = ensure_standby_token(record.folder)
            self._checked(record, f"verify {green}", both, instances, {STANDBY_HEADER: token})
            self._progress(record, f"{green} verified")
        except RefusedError as refused:  # the change set was declined: nothing changed
            record.save_spec(spec)
            self._back_in_service(record, serving, refused)
            raise
        except HiveMindError as error:
            self._restore_spec(record, spec, f"remove {green}", serving, error)
            raise
        try:
            self._provision_spec(record, switched, "switch")
            self._progress(record, "switched")
            checks = self._checked(record, "verify live", switched, instances)
        except HiveMindError as error:
            self.parts.say(f"Switching back to {blue} ...")
            self._restore_spec(record, spec, "switch back", serving, error, via=both)
            raise
        self._provision_spec(record, done, f"retire {blue}")
        record.update(profile=done.profile)
        return self._in_service(record, packed, how, checks)

    def _check_runtime(
        self, record: DeploymentRecord, spec: DeploymentSpec, packed: SourceRecord
    ) -> None:
        """Refuse a release that needs another language or runtime than the instances
        run: neither update path can give them one without replacing what serves."""
        needed = runtime_change(spec, record.folder / "release.tar.gz")
        if needed is not None:
            raise RefusedError(
                f"release {packed.release_id} cannot go onto {record.deployment_id}'s "
                "instances: nothing was changed",
                cause=needed,
                next_step="deploy it as a new deployment (`hivemind deploy`), then destroy "
                f"this one; or pin app.runtime_version in hivemind.yaml to "
                f"{spec.app.runtime_version} if the release runs on it",
            )

    def _rolling_update(
        self, record: DeploymentRecord, spec: DeploymentSpec, version: str | None
    ) -> DeploymentState:
        state = record.load()
        assert state.source is not None
        color = _active_color(state.outputs, spec)
        if len(_instance_ids(state.outputs, color)) < 2:
            raise RefusedError(
                f"{record.deployment_id} runs on one instance: a rolling update would stop "
                "the app while that instance is updated",
                next_step=f"`hivemind update {record.deployment_id}` (blue-green, the default) "
                "updates it without downtime",
            )
        packed = self._pack(record, self._recorded_source(state.source), version, remember=False)
        self._check_runtime(record, spec, packed)
        ids = _instance_ids(state.outputs, color)
        if not self.parts.confirm(
            f"Update {record.deployment_id} to release {packed.release_id}, one of its "
            f"{len(ids)} instances at a time?"
        ):
            raise RefusedError("nothing was changed: the update was declined")
        release = self._release_of(record, packed)
        deployer = self._deployer(record, spec)
        state = self._roll(
            record,
            spec,
            packed,
            "rolling",
            lambda instance: deployer.deploy_one(release, instance),
        )
        self._advise(record, "deployer", lambda: self._explain_deploy(record, spec))
        return state

    def _switch_release(
        self, record: DeploymentRecord, spec: DeploymentSpec, release_id: str
    ) -> DeploymentState:
        state = record.load()
        assert state.source is not None
        event = next((e for e in reversed(state.history) if e.release_id == release_id), None)
        packed = state.source.model_copy(
            update={
                "release_id": release_id,
                "commit": event.commit if event else None,
                "version": event.version if event else None,
                "files": 0,
                "note": "",
            }
        )
        color = _active_color(state.outputs, spec)
        count = len(_instance_ids(state.outputs, color))
        how = "one instance at a time" if count > 1 else "its one instance restarts (a pause)"
        if not self.parts.confirm(
            f"Switch {record.deployment_id} back to release {release_id}, kept on its "
            f"instances ({how})?"
        ):
            raise RefusedError("nothing was changed: the switch was declined")
        deployer = self._deployer(record, spec)
        return self._roll(
            record,
            spec,
            packed,
            "switch",
            lambda instance: deployer.activate(release_id, [instance])[0],
        )

    def _roll(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        packed: SourceRecord,
        how: UpdateKind,
        action: Callable[[Instance], InstanceRelease],
    ) -> DeploymentState:
        """Run `action` on the serving instances one at a time (out of the load balancer
        while it runs), then check the live URL. A failure switches every instance it
        reached back to the release that was serving."""
        from hivemind.deployer.rolling import RollingFailed

        state = record.load()
        previous = serving_release(state)
        color = _active_color(state.outputs, spec)
        record.update(
            status=Status.UPDATING,
            update=UpdateProgress(how=how, release_id=packed.release_id, version=packed.version),
        )
        instances = self._instances(record, spec, color)
        deployer = self._deployer(record, spec)
        group = state.outputs.get(f"{color.capitalize()}TargetGroupArn")
        stage = "switch release" if how == "switch" else "rolling deploy"
        try:
            results = self._stage(
                record,
                stage,
                lambda: self._one_at_a_time(record, spec, group, instances, action),
            )
            checks = self._checked(record, "verify live", spec, instances)
        except HiveMindError as error:
            reached = instances
            if isinstance(error, RollingFailed):
                done = {r.instance_id for r in error.updated} | {error.failed.instance_id}
                reached = [i for i in instances if i.instance_id in done]
            if reached:
                self.parts.say(
                    f"Switching {len(reached)} instance(s) back to release {previous} ..."
                )
                self._stage(
                    record,
                    "switch back",
                    lambda: self._one_at_a_time(
                        record,
                        spec,
                        group,
                        reached,
                        lambda i: deployer.activate(previous, [i])[0],
                    ),
                )
            self._back_in_service(record, state.releases, error)
            raise
        merged = {r.instance_id: r for r in [*state.releases, *results]}
        record.update(releases=list(merged.values()))
        return self._in_service(record, packed, how, checks)

    def _one_at_a_time(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        group: str | None,
        instances: list[Instance],
        action: Callable[[Instance], InstanceRelease],
    ) -> list[InstanceRelease]:
        """`action` on each instance in turn, each out of the load balancer meanwhile
        (an app that serves no port has no load balancer: one after the other)."""
        from hivemind.deployer.rolling import RollingUpdate

        def told(instance: Instance) -> InstanceRelease:
            self.parts.say(f"  {instance.instance_id} ({instance.private_ip}) ...")
            return action(instance)

        if group is None or spec.app.port is None:
            return [told(instance) for instance in instances]
        roller = RollingUpdate(
            self.parts.client("elbv2"),
            group,
            spec.app.port,
            log=record.log,
            healthy_timeout=self.parts.health_timeout,
            allow_downtime=len(instances) < 2,
        )
        return roller.run(instances, told)

    def _provision_spec(self, record: DeploymentRecord, spec: DeploymentSpec, stage: str) -> None:
        """Make `spec` the record's and the stack's: synthesize (gates run) and provision."""
        record.save_spec(spec)
        result = self._stage(record, "synth", lambda: self._synth(record, spec))
        self._provision(record, result, stage)

    def _restore_spec(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        stage: str,
        serving: list[InstanceRelease],
        error: HiveMindError,
        *,
        via: DeploymentSpec | None = None,
    ) -> None:
        """Undo a blue-green update: provision `via` first when given (the listener back
        on the old colour while both exist), then the old spec (the new colour removed)."""
        if via is not None:
            self._provision_spec(record, via, stage)
        self._provision_spec(record, spec, stage if via is None else "remove new instances")
        self._back_in_service(record, serving, error)

    def _back_in_service(
        self, record: DeploymentRecord, serving: list[InstanceRelease], error: HiveMindError
    ) -> None:
        state = record.load()
        note = (
            f"the update to {state.update.release_id if state.update else '?'} failed "
            f"({error.cause or error.what}); release {serving_release(state)} serves as before"
        )
        record.update(
            status=Status.DEPLOYED, failed_stage=None, update=None, releases=serving, note=note
        )
        record.keep_spec_before_update(None)
        record.log(f"update: {note}")
        self.parts.say(f"{record.deployment_id}: {note}")
        if not isinstance(error, RefusedError):
            # It is deployed again: the way on is another update, not a retry.
            error.next_step = (
                f"`hivemind status {record.deployment_id}` shows the failure and Medic's "
                "reading; fix the cause, then run the update again"
            )

    def _progress(self, record: DeploymentRecord, phase: str) -> None:
        update = record.load().update
        if update is not None:
            record.update(update=update.model_copy(update={"phase": phase}))
        record.log(f"update: {phase}")

    def _in_service(
        self,
        record: DeploymentRecord,
        packed: SourceRecord,
        how: UpdateKind,
        checks: list[CheckResult],
    ) -> DeploymentState:
        """The release is in service: the record says so, and where it came from."""
        state = record.load()
        state = state.model_copy(
            update={
                "status": Status.DEPLOYED,
                "failed_stage": None,
                "note": "",
                "checks": checks,
                "diagnosis": None,
                "update": None,
                "source": packed,
                "history": [*state.history, _event(packed, how)],
            }
        )
        record.log(f"updated ({how}): release {packed.release_id} in service")
        record.keep_spec_before_update(None)
        return record.save(state)

    # --- Medic ----------------------------------------------------------------------

    def _recover(self, deployment_id: str, error: HiveMindError, plan: Plan) -> DeploymentState:
        """After a failed stage: offer Medic's fix; if it is accepted, apply it and
        resume at the failed stage (at most MAX_FIXES times); otherwise re-raise."""
        for _attempt in range(MAX_FIXES):
            changes = self._accepted_fix(deployment_id, error)
            if changes is None:
                raise error
            state = self.parts.store.get(deployment_id).load()
            summary = state.diagnosis.summary if state.diagnosis else "Medic's fix"
            self.change_spec(
                deployment_id,
                changes,
                Provenance(source=SpecSource.USER, evidence="Medic's fix, accepted", note=summary),
            )
            self.parts.say(f"Fix applied. Resuming {deployment_id} ...")
            try:
                return self._retry(deployment_id, plan, confirmed=True)
            except HiveMindError as again:
                error = again
        raise error

    def _accepted_fix(self, deployment_id: str, error: HiveMindError) -> dict[str, object] | None:
        """The spec changes of Medic's fix for this failure, once the user accepts it;
        None when there is no diagnosis, no applicable fix, or it is declined."""
        if isinstance(error, RefusedError) or not self.parts.store.record(deployment_id).exists():
            return None
        state = self.parts.store.get(deployment_id).load()
        diagnosis = state.diagnosis
        if state.status != Status.FAILED or diagnosis is None or not diagnosis.fix:
            return None
        fix = diagnosis.fix
        changes: dict[str, object] = dict(fix.get("spec_changes") or {})
        needed = [str(name) for name in fix.get("env_needed") or []]
        if not changes and not needed:
            return None
        by_hand = _retry_command(deployment_id, changes, needed)
        if self.parts.fixes == "report":
            self.parts.say(f"To apply Medic's fix: {by_hand}")
            return None
        if self.parts.fixes == "ask" and not self.parts.confirm(
            f"Apply Medic's fix and resume {deployment_id} at the {diagnosis.stage} stage?"
        ):
            self.parts.say(f"Not applied. To apply it later: {by_hand}")
            return None
        env = dict(self.parts.store.get(deployment_id).spec().app.env)
        for name in needed:
            value = self.parts.ask_value(f"Value of {name} (kept in the deployment's spec)")
            if not value:
                self.parts.say(f"{name} needs a value; nothing was applied. Then run {by_hand}")
                return None
            env[name] = value
        if needed:
            changes["app.env"] = env
        return changes

    def _diagnose(self, record: DeploymentRecord, stage: str, error: BaseException) -> None:
        """Ask Medic why the stage failed; keep and show the diagnosis. Never raises: a
        diagnosis that cannot be made must not hide the failure itself."""
        try:
            from hivemind_agents.medic import Medic

            spec = record.spec()
            failure = _failure_of(record.deployment_id, stage, error, spec)
            if stage in _ON_BOX_STAGES:
                failure = self._with_recent_telemetry(record, spec, failure)
            answer = self.parts.advisor.ask(Medic(), failure)
            found = answer.value
            diagnosis = Diagnosis(
                stage=stage,
                cause=found.cause,
                summary=found.summary,
                evidence=list(found.evidence),
                fix=found.fix.model_dump(mode="json") if found.fix else None,
                by=answer.provenance,
            )
        except Exception as problem:  # Medic must never mask the stage's own error
            record.log(f"medic: no diagnosis ({type(problem).__name__}: {problem})")
            return
        record.update(diagnosis=diagnosis)
        record.log(f"medic: {diagnosis.cause}: {diagnosis.summary} (by {diagnosis.by})")
        self.parts.say(_render_diagnosis(diagnosis))

    def _with_recent_telemetry(
        self, record: DeploymentRecord, spec: DeploymentSpec, failure: Any
    ) -> Any:
        """The failure with what Ops finds in the deployment's last 15 minutes: the
        errors in the app's CloudWatch log, grouped (and the lines themselves when the
        error carried no log tail), and the metrics' anomalies and any memory or disk
        running out. Best effort: the diagnosis goes on without them."""
        from hivemind.ops.health import medic_evidence
        from hivemind.ops.overview import OpsRequest, collect_ops
        from hivemind.ops.window import window

        request = OpsRequest(logs=True, metrics=True, since="15m", lines=LOG_LINES_FOR_MEDIC)
        try:
            found = collect_ops(
                record.load(),
                spec,
                request,
                window(request.since),
                lambda service, _region: self.parts.client(service),
            )
        except Exception as problem:
            record.log(f"medic: telemetry was not read ({type(problem).__name__}: {problem})")
            return failure
        changes: dict[str, object] = {}
        logs, metrics = found.logs, found.metrics
        if logs is not None:
            changes["log_errors"] = [
                f"{g.count} x {g.signature}" + (f" ({g.location})" if g.location else "")
                for g in logs.errors
            ]
            if not failure.app_log:
                changes["app_log"] = [line.message for line in logs.lines]
        if metrics is not None:
            changes["metrics"] = medic_evidence(metrics)
        record.log(
            f"medic: read {logs.events_read if logs else 0} log events and "
            f"{len(metrics.series) if metrics else 0} metric series of the last "
            f"{request.since}"
        )
        return failure.model_copy(update=changes)

    def _keep_agent_calls(self, deployment_id: str) -> None:
        """Move the model calls made so far into the deployment record."""
        calls = self.parts.advisor.calls
        if not calls or not self.parts.store.record(deployment_id).exists():
            return
        record = self.parts.store.get(deployment_id)
        kept = list(calls)
        calls.clear()
        record.update(agent_calls=[*record.load().agent_calls, *kept])

    def _keep_report(self, deployment_id: str) -> None:
        """The deployment's report, written after every command that changed it."""
        from hivemind.report import keep_report

        if self.parts.store.record(deployment_id).exists():
            keep_report(self.parts.store.get(deployment_id))

    def _recorded_source(self, source: SourceRecord) -> Source:
        return Source(source.ref, self.parts.open_source(source.ref), source.subdir)

    def _deployed_template(self, stack: str) -> dict[str, Any] | None:
        """The template the stack runs now; None when there is none worth comparing
        (no stack, or one CloudFormation rolled back to nothing)."""
        if stack_status(self.parts.cloudformation, stack) in (None, "ROLLBACK_COMPLETE"):
            return None
        body = self.parts.cloudformation.get_template(StackName=stack)["TemplateBody"]
        return template_of(body)

    # --- stages ---------------------------------------------------------------------

    def _synth(self, record: DeploymentRecord, spec: DeploymentSpec) -> SynthResult:
        result = synthesize(spec, record.deployment_id, record.folder)
        if result.blocking_findings:
            from hivemind_agents.sheriff import Sheriff, SheriffInput

            rules = ", ".join(
                sorted({f"{f['rule']} on {f['resource']}" for f in result.blocking_findings})
            )
            review = self.parts.advisor.ask(Sheriff(), SheriffInput.from_synth(result, spec))
            details = [
                f"{item.rule} on {item.resource}: {item.what} Fix: {item.fix}"
                for item in review.value.findings
            ]
            changes = review.value.spec_changes()
            next_step = f"`hivemind synth --spec {record.folder / 'spec.json'}` explains each"
            if changes:
                command = _retry_command(record.deployment_id, changes)
                next_step = f"{command} ({review.provenance})"
            raise StageFailed(
                "the security and lint gates found problems",
                where="synth",
                cause=rules,
                details=details,
                next_step=next_step,
            )
        return result

    def _ensure_boundary(self, record: DeploymentRecord) -> None:
        """The account's hivemind-boundary exists (created on confirmation), before any
        stack whose roles name it is provisioned; once per command."""
        if self._boundary_checked:
            return
        caller = self.parts.client("sts").get_caller_identity()
        partition = str(caller["Arn"]).split(":")[1]
        arn = foundation.ensure(
            self.parts.client("iam"),
            str(caller["Account"]),
            self.parts.confirm,
            self.parts.say,
            partition,
        )
        record.log(f"boundary: {arn}")
        self._boundary_checked = True

    def _provision(
        self,
        record: DeploymentRecord,
        synth: SynthResult,
        stage: str = "provision",
        review: Review | None = None,
    ) -> DeploymentState:
        self._ensure_boundary(record)
        provisioner = Provisioner(
            self.parts.cloudformation, self.parts.environment, self.parts.display, record.log
        )
        total = sum(n for t, n in synth.resources.items() if t != "AWS::CDK::Metadata")
        if synth.needs_bootstrap and not provisioner.bootstrapped():
            self._stage(record, "bootstrap", lambda: self._bootstrap(record, provisioner))
        outcome: ProvisionResult = self._stage(
            record,
            stage,
            lambda: provisioner.provision(
                record.cdk_out,
                synth.stack_name,
                total,
                record.folder / "cdk-cli.log",
                _parameters(record),
                review,
            ),
            check=lambda r: None if r.ok else self._provision_failure(record, r),
        )
        costs = {line.logical_id: line.monthly_usd for line in synth.cost.lines}
        resources = self._resources(synth.stack_name, costs)
        spec = record.spec()
        state = record.load().model_copy(
            update={
                "outputs": outcome.outputs,
                "resources": resources,
                "monthly_usd": synth.cost.total_usd,
                "url": _url(spec, outcome.outputs),
                "provisioned_spec": _digest(spec),
            }
        )
        record.log(f"provisioned: {synth.stack_name} is {outcome.stack_status}")
        self._advise(record, "provisioner", lambda: self._explain_provisioning(synth.stack_name))
        return record.save(state)

    # --- the app on the instances -----------------------------------------------------

    def _pack(
        self,
        record: DeploymentRecord,
        source: Source,
        version: str | None = None,
        *,
        remember: bool = True,
    ) -> SourceRecord:
        """Pack the release (the checkout, or the commit, tag or branch `version`) into
        the record, before anything is created, so a bad source fails early. With
        `remember`, the record's `source` says where it came from (an update remembers
        it once the release is in service)."""
        package = package_source(source.path, source.subdir, record.folder, ref=version)
        packed = SourceRecord(
            ref=source.ref,
            subdir=source.subdir,
            version=version,
            commit=package.commit,
            release_id=package.release_id,
            files=package.files,
            note=package.note,
        )
        if remember:
            record.update(source=packed)
        record.log(
            f"packed release {package.release_id}: {package.files} files, {package.bytes} bytes"
            + (f" ({package.note})" if package.note else "")
        )
        if package.note:
            self.parts.say(f"note: {package.note}")
        return packed

    def _release(self, record: DeploymentRecord, spec: DeploymentSpec) -> DeploymentState:
        """The deploy and verify stages, then the deployment is `deployed`."""
        state = record.load()
        assert state.source is not None
        packed = state.source
        color = _active_color(state.outputs, spec)
        instances = self._stage(
            record, "deploy", lambda: self._deploy_app(record, spec, packed, color)
        )
        self._advise(record, "deployer", lambda: self._explain_deploy(record, spec))
        checks = self._checked(record, "verify", spec, instances)
        state = record.load().model_copy(
            update={
                "status": Status.DEPLOYED,
                "failed_stage": None,
                "note": "",
                "checks": checks,
                "diagnosis": None,
                "history": [*record.load().history, _event(packed, "deploy")],
            }
        )
        record.log(f"deployed: {state.url or 'no URL (the app serves no port)'}")
        return record.save(state)

    def _instances(
        self, record: DeploymentRecord, spec: DeploymentSpec, color: str
    ) -> list[Instance]:
        """The colour's instances as the stack says, their host keys pinned."""
        outputs = record.load().outputs
        ids = _instance_ids(outputs, color)
        if not ids:
            raise StageFailed(f"the stack has no {color} instances to deploy to", where="deploy")
        ec2 = self.parts.client("ec2")
        endpoint = None
        if outputs.get("ConnectEndpointId"):
            endpoint = describe_endpoint(ec2, outputs["ConnectEndpointId"], spec.region)
        instances = describe_instances(ec2, ids, endpoint)
        self.parts.say(f"Pinning the host keys of {len(instances)} instance(s) ...")
        pin_host_keys(ec2, instances, record.folder)
        return instances

    def _deployer(self, record: DeploymentRecord, spec: DeploymentSpec) -> Deployer:
        return Deployer(spec, record.deployment_id, record.folder, log=record.log)

    def _release_of(self, record: DeploymentRecord, packed: SourceRecord) -> Release:
        return Release(
            archive=record.folder / "release.tar.gz",
            release_id=packed.release_id,
            commit=packed.commit,
            outputs=record.load().outputs,
        )

    def _deploy_app(
        self, record: DeploymentRecord, spec: DeploymentSpec, packed: SourceRecord, color: str
    ) -> list[Instance]:
        """Deploy the packed release to the colour's instances, then wait until the load
        balancer reports each healthy in the colour's target group."""
        instances = self._instances(record, spec, color)
        release = self._release_of(record, packed)
        self.parts.say(
            f"Deploying release {release.release_id} to {len(instances)} instance(s) ..."
        )
        deployer = self._deployer(record, spec)
        results = deployer.deploy(release, instances)
        record.update(releases=results)
        self._wait_healthy(record, spec, deployer, color, instances)
        return instances

    def _wait_healthy(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        deployer: Deployer,
        color: str,
        instances: list[Instance],
    ) -> None:
        group = record.load().outputs.get(f"{color.capitalize()}TargetGroupArn")
        if not group:
            return
        self.parts.say("Waiting for the load balancer to report every instance healthy ...")
        try:
            waited = wait_until_healthy(
                self.parts.client("elbv2"),
                group,
                [i.instance_id for i in instances],
                timeout=self.parts.health_timeout,
                progress=record.log,
            )
        except TargetsUnhealthy as unhealthy:
            by_id = {i.instance_id: i for i in instances}
            details = []
            for target in unhealthy.unhealthy:
                instance = by_id.get(target.instance_id)
                if instance is not None:
                    details.append(f"{APP_LOG_OF}{target.instance_id}:")
                    details += [f"  {line}" for line in deployer.log_tail(instance)]
            unhealthy.details = details
            unhealthy.next_step = (
                f"fix the app (its health path is {spec.app.health_path}), then "
                f"`hivemind retry {record.deployment_id}` (it resumes at the deploy stage)"
            )
            raise
        record.log(f"deploy: every {color} target healthy after {waited:.1f}s")

    def _checked(
        self,
        record: DeploymentRecord,
        stage: str,
        spec: DeploymentSpec,
        instances: list[Instance],
        headers: dict[str, str] | None = None,
    ) -> list[CheckResult]:
        """A QA stage: the checks run and recorded; any failed check fails the stage."""
        checks: list[CheckResult] = self._stage(
            record,
            stage,
            lambda: self._verify(record, spec, instances, headers),
            check=lambda results: self._verify_failure(record, results),
        )
        return checks

    def _verify(
        self,
        record: DeploymentRecord,
        spec: DeploymentSpec,
        instances: list[Instance],
        headers: dict[str, str] | None = None,
    ) -> list[CheckResult]:
        from hivemind import qa

        def run_on(instance_id: str, command: str) -> tuple[int, str]:
            instance = next(i for i in instances if i.instance_id == instance_id)
            connection = connect(instance, record.folder)
            try:
                done = connection.run(command, hide=True, warn=True, in_stream=False)
                return int(done.exited), f"{done.stdout}{done.stderr}"
            finally:
                connection.close()

        state = record.load()
        target = qa.target_of(
            spec, state.outputs, [(i.instance_id, i.private_ip) for i in instances], headers
        )
        results = qa.verify(spec, target, run_on)
        record.update(checks=results)
        for result in results:
            record.log(f"verify: {result.name}: {result.status} ({result.detail})")
        return results

    def _verify_failure(self, record: DeploymentRecord, results: list[CheckResult]) -> None:
        from hivemind_agents.qa import QA, QAInput

        def explain() -> None:
            verdict = self.parts.advisor.ask(
                QA(), QAInput(checks=tuple(results), deployment_id=record.deployment_id)
            )
            self.parts.say(f"QA: {verdict.value.summary}")

        self._advise(record, "qa", explain)
        failed = [r for r in results if r.status == "failed"]
        if failed:
            raise StageFailed(
                f"{len(failed)} of {len(results)} checks failed",
                where="verify",
                cause=f"{failed[0].name}: {failed[0].detail}",
                details=[f"{r.name}: {r.detail}" for r in failed[1:]],
                next_step=f"`hivemind status {record.deployment_id}` shows every check; fix "
                f"the cause, then `hivemind retry {record.deployment_id}`",
            )

    def _advise(self, record: DeploymentRecord, agent: str, explain: Callable[[], None]) -> None:
        """Run an agent's explanation; it informs, so its failure never fails a stage."""
        try:
            explain()
        except Exception as problem:
            record.log(f"{agent}: no explanation ({type(problem).__name__}: {problem})")

    def _explain_provisioning(self, stack: str) -> None:
        """Provisioner's summary of the stack operation: how long, and what was slowest."""
        from hivemind_agents.provisioner import Provisioner as ProvisionerAgent
        from hivemind_agents.provisioner import ProvisionerInput

        paginator = self.parts.cloudformation.get_paginator("describe_stack_events")
        events = [e for page in paginator.paginate(StackName=stack) for e in page["StackEvents"]]
        report = self.parts.advisor.ask(
            ProvisionerAgent(), ProvisionerInput.from_api(stack, events)
        ).value
        slowest = ", ".join(f"{r.logical_id} {r.seconds:.0f}s" for r in report.slowest[:3])
        named = bool(report.slowest) and report.slowest[0].logical_id in report.headline
        self.parts.say(report.headline + (f" Slowest: {slowest}." if slowest and not named else ""))

    def _explain_deploy(self, record: DeploymentRecord, spec: DeploymentSpec) -> None:
        """Deployer's summary of the release: the slowest step, and what would help."""
        from hivemind_agents.deployer import Deployer as DeployerAgent
        from hivemind_agents.deployer import DeployerInput

        releases = tuple(record.load().releases)
        report = self.parts.advisor.ask(
            DeployerAgent(), DeployerInput(releases=releases, spec=spec)
        ).value
        self.parts.say(report.headline)
        for note in report.notes:
            self.parts.say(f"  note: {note}")

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
                record.load().model_copy(
                    update={"status": Status.FAILED, "failed_stage": name, "diagnosis": None}
                )
            )
            if isinstance(error, HiveMindError) and not isinstance(error, RefusedError):
                self._diagnose(record, name, error)
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


def _parameters(record: DeploymentRecord) -> dict[str, str]:
    """The stack's parameters: the SSH public key, and the standby token when the app
    serves a port (only a load balancer has the standby rule)."""
    parameters = {SSH_PUBLIC_KEY_PARAMETER: ensure_key_pair(record.folder)}
    if record.spec().app.port is not None:
        parameters[STANDBY_TOKEN_PARAMETER] = ensure_standby_token(record.folder)
    return parameters


def _deployed(record: DeploymentRecord, verb: str) -> DeploymentState:
    """The record's state when it is deployed with a recorded source (what an update or
    an upgrade starts from); otherwise refused, saying what to run instead."""
    state, ident = record.load(), record.deployment_id
    if state.status != Status.DEPLOYED:
        raise RefusedError(
            f"{ident} is {state.status.value}: only a deployed deployment is {verb}",
            next_step=f"`hivemind retry {ident}` resumes a failed one"
            if state.status == Status.FAILED
            else f"`hivemind status {ident}`",
        )
    if state.source is None:
        raise BadInputError(
            f"{ident} has no recorded source (it was made by an older HiveMind)",
            next_step=f"`hivemind destroy {ident}`, then deploy again",
        )
    return state


def _last_error(state: DeploymentState) -> str:
    stage = state.stage(state.failed_stage or "")
    return (stage.error if stage and stage.error else None) or state.note or "unknown"


def _active_color(outputs: Mapping[str, str], spec: DeploymentSpec) -> str:
    return outputs.get("ActiveColor", spec.compute.active_color)


def _instance_ids(outputs: Mapping[str, str], color: str) -> list[str]:
    listed = outputs.get(f"{color.capitalize()}InstanceIds", "").split(",")
    return [i for i in listed if i and i != "-"]


def _event(packed: SourceRecord, how: UpdateKind) -> ReleaseEvent:
    """The history entry of a release that went into service."""
    return ReleaseEvent(
        release_id=packed.release_id, commit=packed.commit, version=packed.version, how=how
    )


def _url(spec: DeploymentSpec, outputs: dict[str, str]) -> str | None:
    """Where people reach the app: its domain when it has one (whose DNS record the
    operator points at the load balancer), else the load balancer's own name."""
    host = outputs.get("LoadBalancerDns")
    if not host:
        return None
    return f"{'https' if spec.access.certificate_arn else 'http'}://{spec.access.domain or host}"


def _unchanged(
    deployed: dict[str, Any] | None, record: DeploymentRecord, result: SynthResult
) -> bool:
    """True when the synthesized template changes no resource of the deployed one."""
    if deployed is None:
        return False
    from hivemind.template_diff import diff_templates

    proposed = json.loads((record.folder / result.template_file).read_text(encoding="utf-8"))
    return diff_templates(deployed, proposed).empty


def _digest(spec: DeploymentSpec) -> str:
    """What the stack is built from: the spec's values (not their provenance or notes)."""
    values = spec.model_dump(mode="json", exclude={"provenance", "notes"})
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _retry_command(
    deployment_id: str, changes: Mapping[str, object], env_needed: Sequence[str] = ()
) -> str:
    """The `hivemind retry` that applies these spec changes (and asks for these values)."""
    flags = [f"--set {path}={shown_value(path, value)}" for path, value in changes.items()]
    flags += [f"--env {name}=VALUE" for name in env_needed]
    return f"`hivemind retry {deployment_id} {' '.join(flags)}`"


def _failure_of(deployment_id: str, stage: str, error: BaseException, spec: DeploymentSpec) -> Any:
    """What Medic reads about a failed stage, sorted out of the error."""
    from hivemind_agents.medic import Failure

    what = error.what if isinstance(error, HiveMindError) else str(error)
    cause = (error.cause or "") if isinstance(error, HiveMindError) else ""
    lines = read_details(error.details if isinstance(error, HiveMindError) else [])
    return Failure(
        deployment_id=deployment_id,
        stage=stage,
        what=what,
        cause=cause,
        details=list(lines.other),
        command_output="\n".join(lines.stderr),
        health_reason=cause if isinstance(error, TargetsUnhealthy) else "",
        app_log=list(lines.app_log),
        spec=spec,
    )


def _render_diagnosis(diagnosis: Diagnosis) -> str:
    lines = [f"Medic: {diagnosis.summary} [{diagnosis.cause.replace('_', ' ')}]"]
    lines += [f"  evidence: {line}" for line in diagnosis.evidence[:5]]
    fix = diagnosis.fix or {}
    if fix:
        lines.append(f"  fix: {fix.get('explanation', '')}")
        for path, value in (fix.get("spec_changes") or {}).items():
            lines.append(f"    set {path} = {shown_value(path, value)}")
        for name in fix.get("env_needed") or []:
            lines.append(f"    give {name} a value")
        permission = fix.get("permission")
        if permission:
            lines.append("    add this statement to your IAM policy:")
            statement = json.dumps(permission.get("statement", {}), indent=2)
            lines += [f"      {line}" for line in statement.splitlines()]
        if fix.get("command"):
            lines.append(f"    run: {fix['command']}")
    lines.append(f"  (diagnosed by {diagnosis.by})")
    return "\n".join(lines)


def create_conductor(
    region: str,
    *,
    yes: bool,
    terminal: bool,
    say: Callable[[str], None],
    write: Callable[[str], None],
    ask: Callable[[str], bool],
    health_timeout: float = 300.0,
    advisor: Advisor | None = None,
    fixes: FixPolicy = "ask",
    ask_value: Callable[[str], str | None] = lambda _question: None,
) -> Conductor:
    """Wire the real collaborators: records under $HIVEMIND_HOME, the target's
    CloudFormation (AWS, or the sandbox when asked for), the progress display."""
    from hivemind.aws import client
    from hivemind.recon.source import open_repo
    from hivemind.targets import prepare

    environment = prepare(region)
    return Conductor(
        Collaborators(
            store=RecordStore(),
            cloudformation=client("cloudformation", region),
            client=lambda service: client(service, region),
            open_source=lambda ref: open_repo(ref).path,
            environment=environment,
            display=ProgressDisplay(write, terminal=terminal),
            say=say,
            confirm=(lambda _question: True) if yes else ask,
            health_timeout=health_timeout,
            advisor=advisor or Advisor(),
            fixes=fixes,
            ask_value=ask_value,
        )
    )
