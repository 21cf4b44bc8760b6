"""What `hivemind status` does, without click."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hivemind.aws import client
from hivemind.cli.render import table
from hivemind.reconcile import Reconciled, reconcile_record
from hivemind.records import RecordStore


@dataclass(frozen=True)
class StatusReport:
    result: Reconciled

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.result.state.model_dump(mode="json"),
            "stack_status": self.result.stack_status,
            "reconciled": self.result.changed,
            "reconcile_note": self.result.note,
        }

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
        if state.monthly_usd:
            lines.append(f"  estimated ${state.monthly_usd:,.2f}/month")
        if state.failed_stage:
            lines.append(f"  failed at: {state.failed_stage}")
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
        return "\n".join(lines)


def show_status(deployment_id: str) -> StatusReport:
    record = RecordStore().get(deployment_id)
    state = record.load()
    return StatusReport(reconcile_record(record, client("cloudformation", state.region)))
