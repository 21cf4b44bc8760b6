"""What happens to Medic's fix after a failed stage: asked, accepted, declined, only
reported, given the value it needs, and never applied more than MAX_FIXES times.

The Conductor here has a real record store; its resume (`_retry`, the stages that run
after a fix, tested end to end in test_medic_sandbox.py) is replaced by one that
records what it was asked to resume, so each answer's effect on the spec is visible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from harness import make_spec

from hivemind.conductor import MAX_FIXES, Collaborators, Conductor, FixPolicy, StageFailed
from hivemind.progress import ProgressDisplay
from hivemind.records import DeploymentState, Diagnosis, RecordStore, Status
from hivemind.spec import Source

IDENT = "shop-abcdefghij"


class Resuming(Conductor):
    """A Conductor whose resume fails again `failures` times, then succeeds."""

    def __init__(self, parts: Collaborators, failures: int = 0) -> None:
        super().__init__(parts)
        self.resumed: list[int] = []
        self.failures = failures

    def _retry(self, deployment_id: str, plan: Any, *, confirmed: bool = False) -> DeploymentState:
        record = self.parts.store.get(deployment_id)
        self.resumed.append(record.spec().app.port or 0)
        assert confirmed  # accepting the fix was the confirmation
        if len(self.resumed) <= self.failures:
            raise StageFailed("the app did not answer", where="deploy")
        return record.update(status=Status.DEPLOYED, failed_stage=None, diagnosis=None)


def conductor(
    tmp_path: Path,
    policy: FixPolicy,
    *,
    answer: bool = True,
    value: str | None = None,
    failures: int = 0,
    fix: dict[str, Any] | None = None,
) -> tuple[Resuming, list[str]]:
    said: list[str] = []
    store = RecordStore(tmp_path / "deployments")
    record = store.create(make_spec("stage-1", "none", False, app__port=8080), IDENT, "s")
    diagnosis = Diagnosis(
        stage="deploy",
        cause="wrong_port",
        summary="The app listens on port 3000, not on app.port 8080.",
        evidence=["listening on port 3000"],
        fix=fix or {"explanation": "Use its port.", "spec_changes": {"app.port": 3000}},
    )
    record.update(status=Status.FAILED, failed_stage="deploy", diagnosis=diagnosis)
    parts = Collaborators(
        store=store,
        cloudformation=None,
        client=lambda _service: None,
        open_source=lambda ref: Path(ref),
        environment={},
        display=ProgressDisplay(lambda _text: None, terminal=False),
        say=said.append,
        confirm=lambda _question: answer,
        fixes=policy,
        ask_value=lambda _question: value,
    )
    return Resuming(parts, failures), said


def failure() -> StageFailed:
    return StageFailed("the app did not answer", where="deploy")


def recover(conductor: Resuming) -> DeploymentState:
    return conductor._recover(IDENT, failure(), plan=lambda *_: "")


def test_an_accepted_fix_changes_the_spec_and_resumes(tmp_path: Path) -> None:
    resuming, said = conductor(tmp_path, "ask", answer=True)
    state = recover(resuming)
    assert state.status == Status.DEPLOYED
    assert resuming.resumed == [3000]
    spec = resuming.parts.store.get(IDENT).spec()
    assert spec.app.port == 3000
    assert spec.provenance["app.port"].source == Source.USER
    assert spec.provenance["app.port"].evidence == "Medic's fix, accepted"
    assert f"Fix applied. Resuming {IDENT} ..." in said


def test_a_declined_fix_changes_nothing_and_says_how_to_apply_it_later(tmp_path: Path) -> None:
    resuming, said = conductor(tmp_path, "ask", answer=False)
    with pytest.raises(StageFailed):
        recover(resuming)
    assert resuming.resumed == []
    assert resuming.parts.store.get(IDENT).spec().app.port == 8080
    assert f"Not applied. To apply it later: `hivemind retry {IDENT} --set app.port=3000`" in said


def test_no_input_only_reports_the_fix(tmp_path: Path) -> None:
    resuming, said = conductor(tmp_path, "report", answer=True)
    with pytest.raises(StageFailed):
        recover(resuming)
    assert resuming.resumed == []
    assert said == [f"To apply Medic's fix: `hivemind retry {IDENT} --set app.port=3000`"]


def test_a_missing_variable_is_asked_for_and_kept_in_the_spec(tmp_path: Path) -> None:
    fix = {"explanation": "Give it a value.", "env_needed": ["SESSION_SECRET"]}
    resuming, _said = conductor(tmp_path, "accept", value="s3cret", fix=fix)
    assert recover(resuming).status == Status.DEPLOYED
    assert resuming.parts.store.get(IDENT).spec().app.env == {"SESSION_SECRET": "s3cret"}


def test_a_variable_nobody_can_give_leaves_everything_as_it_was(tmp_path: Path) -> None:
    fix = {"explanation": "Give it a value.", "env_needed": ["SESSION_SECRET"]}
    resuming, said = conductor(tmp_path, "accept", value=None, fix=fix)
    with pytest.raises(StageFailed):
        recover(resuming)
    assert resuming.parts.store.get(IDENT).spec().app.env == {}
    assert any("SESSION_SECRET needs a value; nothing was applied" in line for line in said)
    assert any(f"hivemind retry {IDENT} --env SESSION_SECRET=VALUE" in line for line in said)


def test_fixes_stop_after_max_fixes(tmp_path: Path) -> None:
    resuming, _said = conductor(tmp_path, "accept", failures=10)
    with pytest.raises(StageFailed):
        recover(resuming)
    assert len(resuming.resumed) == MAX_FIXES
