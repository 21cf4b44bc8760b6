"""What `hivemind status` does, without click."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hivemind.aws import client
from hivemind.cli.render import table
from hivemind.reconcile import Reconciled, reconcile_record
from hivemind.records import STALE_FAILURE, DeploymentState, RecordStore, Status, shown_value

if TYPE_CHECKING:  # the ops views are imported only when one is asked for
    from hivemind.ops.overview import OpsReport, OpsRequest


@dataclass(frozen=True)
class StatusReport:
    result: Reconciled
    ops: OpsReport | None = None
    report_file: Path | None = None
    health: Any = None  # the Ops agent's Answer[HealthReport], with logs or metrics

    def as_dict(self) -> dict[str, Any]:
        found = {
            **self.result.state.model_dump(mode="json"),
            "stack_status": self.result.stack_status,
            "reconciled": self.result.changed,
            "reconcile_note": self.result.note,
        }
        if self.ops is not None:
            views = self.ops.model_dump(mode="json")
            found["ops"] = {name: view for name, view in views.items() if view is not None}
        if self.report_file is not None:
            found["report"] = str(self.report_file)
        if self.health is not None:
            found["health"] = {
                **self.health.value.model_dump(mode="json"),
                "by": self.health.provenance,
            }
        stale = stale_failure(self.result.state)
        if stale:
            found["suggestion"] = stale
        return found

    def render(self) -> str:
        state = self.result.state
        lines = [
            f"{state.deployment_id}: {state.status.value}",
            f"  app {state.app} · {state.profile} · {state.region} · stack {state.stack_name} "
            f"({self.result.stack_status or 'not created'})",
            f"  created {state.created_at} · updated {state.updated_at}",
        ]
        if state.url:
            lines.append(f"  url {state.url}")
        if state.source:
            source = state.source
            lines.append(
                f"  release {source.release_id} from {source.ref}"
                + (f" at {source.commit[:12]}" if source.commit else " (not a git repository)")
            )
        if state.update is not None:
            update = state.update
            lines.append(
                f"  update under way: {update.how} to release {update.release_id} "
                f"(since {update.started_at}; last step: {update.phase})"
            )
        if len(state.history) > 1:
            earlier = ", ".join(
                f"{e.release_id} ({e.how} {e.at})" for e in reversed(state.history[-4:-1])
            )
            lines.append(f"  served before: {earlier}")
        if state.note and state.status == Status.DEPLOYED:
            lines.append(f"  last update: {state.note}")
        if state.monthly_usd:
            lines.append(f"  estimated ${state.monthly_usd:,.2f}/month")
        if state.failed_stage:
            lines.append(f"  failed at: {state.failed_stage}")
        if state.diagnosis is not None and state.status == Status.FAILED:
            found = state.diagnosis
            lines.append(f"  medic: {found.summary} [{found.cause}] (by {found.by})")
            for path, value in ((found.fix or {}).get("spec_changes") or {}).items():
                lines.append(f"    fix: set {path} = {shown_value(path, value)}")
            for name in (found.fix or {}).get("env_needed") or []:
                lines.append(f"    fix: give {name} a value (retry --env {name}=VALUE)")
            command = (found.fix or {}).get("command")
            if command:
                lines.append(f"    run: {command}")
        stale = stale_failure(state)
        if stale:
            lines.append(f"  ! {stale}")
        if state.agent_calls:
            used = [c for c in state.agent_calls if c.source == "model"]
            tokens_in = sum(c.input_tokens for c in state.agent_calls)
            tokens_out = sum(c.output_tokens for c in state.agent_calls)
            seconds = sum(c.seconds for c in state.agent_calls)
            lines.append(
                f"  model calls: {len(state.agent_calls)} ({len(used)} answers used), "
                f"{tokens_in:,} tokens in, {tokens_out:,} out, {seconds:.1f}s"
            )
        if self.result.changed:
            lines.append(f"  record corrected: {self.result.note}")
        elif self.result.note:
            lines.append(f"  note: {self.result.note}")
        if state.stages:
            rows = [
                [
                    s.name,
                    s.status,
                    f"{s.seconds:.0f}s" if s.seconds is not None else "-",
                    s.error or s.detail,
                ]
                for s in state.stages
            ]
            lines += ["", table(["stage", "result", "time", "detail"], rows)]
        if state.releases:
            rows = [
                [
                    r.instance_id,
                    r.address,
                    r.release_id,
                    ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items()),
                ]
                for r in state.releases
            ]
            lines += ["", table(["instance", "address", "release", "deploy steps"], rows)]
        if state.checks:
            rows = [[c.name, c.status.replace("_", " "), c.detail] for c in state.checks]
            lines += ["", table(["check", "result", "detail"], rows)]
        if self.ops is not None:
            from hivemind.ops.render import render_ops

            lines += render_ops(self.ops)
        if self.health is not None:
            health = self.health.value
            lines += ["", f"Health: {health.health} ({self.health.provenance}). {health.summary}"]
            for finding in health.findings:
                lines.append(f"  {finding.severity:8} {finding.subject}: {finding.what}")
                lines.append(f"           next: {finding.look_next}")
        if self.report_file is not None:
            lines += ["", f"report: {self.report_file}"]
        return "\n".join(lines)


def stale_failure(state: DeploymentState, now: datetime | None = None) -> str:
    """A suggestion to destroy a deployment failed for more than a day, else ""."""
    age = state.failed_for(now)
    if state.status != Status.FAILED or age is None or age < STALE_FAILURE:
        return ""
    return (
        f"failed {age.days or 1} day(s) ago and still costs about ${state.monthly_usd:,.2f}/month "
        f"while its resources are left for debugging: `hivemind destroy {state.deployment_id}`"
    )


def show_status(
    deployment_id: str,
    *,
    ops: OpsRequest | None = None,
    report: Literal["markdown", "html"] | None = None,
    advisor: Any = None,
) -> StatusReport:
    """The deployment's record reconciled with its stack; with `ops`, the ops views it
    asks for (logs, metrics, costs, traces, dashboard); with `report`, the deployment's
    report written into the record in that format."""
    record = RecordStore().get(deployment_id)
    state = record.load()
    window = None
    if ops is not None and ops.any():
        from hivemind.ops.window import window as ops_window

        window = ops_window(ops.since)  # a bad --since fails before any AWS call
    result = reconcile_record(record, client("cloudformation", state.region))
    gathered = None
    if ops is not None and window is not None:
        from hivemind.ops.overview import collect_ops

        gathered = collect_ops(result.state, record.spec(), ops, window, client)
    health = None
    if gathered is not None and (gathered.logs is not None or gathered.metrics is not None):
        from hivemind.ops.health import health_report

        health = health_report(gathered, deployment_id, advisor)
    report_file = None
    if report is not None:
        from hivemind.report import write_report

        report_file = write_report(record, fmt=report)
    return StatusReport(result, gathered, report_file, health)
