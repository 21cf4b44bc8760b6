"""Deployment records: atomic state, one lock per deployment, and status that
reconciles the record with CloudFormation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from harness import make_spec
from moto import mock_aws

from hivemind.errors import BadInputError, RefusedError
from hivemind.reconcile import reconcile
from hivemind.records import DeploymentState, RecordStore, Status
from hivemind.status_command import show_status

DEPLOYMENT_ID = "shop-abcdefghij"
STACK = "hivemind-shop-abcdefghij"
TINY_TEMPLATE = json.dumps({"Resources": {"Queue": {"Type": "AWS::SQS::Queue"}}})


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    return RecordStore(tmp_path / "deployments")


def test_a_new_record_holds_state_and_spec(store: RecordStore) -> None:
    spec = make_spec("stage-1", "postgres", False)
    record = store.create(spec, DEPLOYMENT_ID, STACK)
    state = record.load()
    assert (state.status, state.app, state.stack_name) == (Status.PENDING, "shop", STACK)
    assert state.schema_version == 1
    assert record.spec() == spec
    assert store.ids() == [DEPLOYMENT_ID]
    with pytest.raises(BadInputError, match="already exists"):
        store.create(spec, DEPLOYMENT_ID, STACK)


def test_state_is_written_atomically(store: RecordStore) -> None:
    record = store.create(make_spec("stage-1", "none", False), DEPLOYMENT_ID, STACK)
    saved = record.save(record.load().model_copy(update={"status": Status.DEPLOYED}))
    assert record.load().status == Status.DEPLOYED == saved.status
    leftovers = [p.name for p in record.folder.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temp files left behind


def test_unknown_and_malformed_ids_are_bad_input(store: RecordStore) -> None:
    with pytest.raises(BadInputError) as unknown:
        store.get("shop-zzzzzzzzzz")
    assert unknown.value.exit_code == 2 and "hivemind list" in (unknown.value.next_step or "")
    with pytest.raises(BadInputError, match="is not a deployment id"):
        store.get("../../etc")


def test_a_second_command_on_a_busy_deployment_is_refused(store: RecordStore) -> None:
    record = store.create(make_spec("stage-1", "none", False), DEPLOYMENT_ID, STACK)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from hivemind.records import DeploymentRecord
            with DeploymentRecord(Path({str(record.folder)!r})).lock("deploy"):
                print("locked", flush=True)
                time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert record.is_locked()
        with pytest.raises(RefusedError) as refused, record.lock("destroy"):
            pass
        assert refused.value.exit_code == 3
        assert f"pid {holder.pid}" in (refused.value.cause or "")
        assert "hivemind deploy" in (refused.value.cause or "")
    finally:
        holder.kill()
        holder.wait()
    # A killed process holds no lock: the next command proceeds.
    deadline = time.monotonic() + 5
    while record.is_locked() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not record.is_locked()
    with record.lock("destroy"):
        holder_line = (record.folder / "lock").read_text()
    assert f"pid {os.getpid()} running `hivemind destroy`" in holder_line


def state(status: Status) -> DeploymentState:
    return DeploymentState(
        deployment_id=DEPLOYMENT_ID,
        app="shop",
        region="us-east-1",
        profile="stage-1",
        stack_name=STACK,
        status=status,
    )


@pytest.mark.parametrize(
    ("status", "stack", "expected", "stage"),
    [
        (Status.PROVISIONING, "CREATE_COMPLETE", Status.FAILED, "deploy"),
        (Status.PROVISIONING, "ROLLBACK_COMPLETE", Status.FAILED, "provision"),
        (Status.PROVISIONING, None, Status.FAILED, "provision"),
        (Status.DEPLOYING, "CREATE_COMPLETE", Status.FAILED, "deploy"),
        (Status.DESTROYING, None, Status.DESTROYED, None),
        (Status.DESTROYING, "DELETE_FAILED", Status.FAILED, "destroy"),
        (Status.ROLLING_BACK, "DELETE_FAILED", Status.FAILED, "rollback"),
        (Status.ROLLING_BACK, "DELETE_COMPLETE", Status.ROLLED_BACK, None),
        (Status.DEPLOYED, None, Status.DESTROYED, None),
    ],
)
def test_an_interrupted_command_is_reconciled(
    status: Status, stack: str | None, expected: Status, stage: str | None
) -> None:
    result = reconcile(state(status), stack, locked=False)
    assert result.changed and result.note
    assert (result.state.status, result.state.failed_stage) == (expected, stage)


def test_the_stage_an_interrupted_command_was_running_is_marked_failed() -> None:
    from hivemind.records import StageResult

    running = state(Status.UPDATING).model_copy(
        update={
            "stages": [
                StageResult(name="provision green", status="ok", started_at="t"),
                StageResult(name="deploy green", status="running", started_at="t"),
            ]
        }
    )
    result = reconcile(running, "UPDATE_COMPLETE", locked=False)
    assert (result.state.status, result.state.failed_stage) == (Status.FAILED, "update")
    assert [(s.status, s.error) for s in result.state.stages] == [
        ("ok", None),
        ("failed", "interrupted: HiveMind stopped"),
    ]


def test_nothing_changes_while_a_command_holds_the_lock_or_cloudformation_works() -> None:
    assert not reconcile(state(Status.PROVISIONING), "CREATE_COMPLETE", locked=True).changed
    busy = reconcile(state(Status.PROVISIONING), "CREATE_IN_PROGRESS", locked=False)
    assert not busy.changed and "still at work" in busy.note
    assert not reconcile(state(Status.DEPLOYED), "CREATE_COMPLETE", locked=False).changed


@mock_aws
def test_status_corrects_a_killed_deploy_from_the_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HIVEMIND_HOME", str(tmp_path))
    store = RecordStore()
    record = store.create(make_spec("stage-1", "none", False), DEPLOYMENT_ID, STACK)
    (record.cdk_out).mkdir()
    record.save(record.load().model_copy(update={"status": Status.PROVISIONING}))
    cloudformation = boto3.client("cloudformation", region_name="eu-west-1")
    cloudformation.create_stack(StackName=STACK, TemplateBody=TINY_TEMPLATE)

    report = show_status(DEPLOYMENT_ID)
    assert report.result.changed
    assert report.result.stack_status == "CREATE_COMPLETE"
    assert record.load().status == Status.FAILED
    assert record.load().failed_stage == "deploy"
    assert "record corrected: HiveMind stopped during deploy" in report.render()
    assert "status reconciled: provisioning -> failed" in (record.folder / "events.log").read_text()
    again = show_status(DEPLOYMENT_ID)
    assert not again.result.changed


def test_a_deployment_failed_over_a_day_ago_is_flagged_for_destroy(tmp_path: Path) -> None:
    store = RecordStore(tmp_path / "deployments")
    record = store.create(make_spec("stage-1", "postgres", False), DEPLOYMENT_ID, STACK)
    recent = record.update(status=Status.FAILED, failed_stage="deploy", monthly_usd=46.39)
    from hivemind.status_command import stale_failure

    assert stale_failure(recent) == ""
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="seconds")
    old = recent.model_copy(update={"updated_at": two_days_ago})
    record.state_file.write_text(old.model_dump_json())
    assert "hivemind destroy shop-abcdefghij" in stale_failure(old)
    assert "$46.39/month" in stale_failure(old)
    deployed = old.model_copy(update={"status": Status.DEPLOYED})
    assert stale_failure(deployed) == ""

    listed = subprocess.run(
        [sys.executable, "-m", "hivemind", "list"],
        env={**os.environ, "HIVEMIND_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "! shop-abcdefghij failed 2 day(s) ago" in listed.stdout
    assert "`hivemind destroy shop-abcdefghij`" in listed.stdout


@mock_aws
def test_status_shows_medics_diagnosis_model_calls_and_the_destroy_suggestion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hivemind.records import AgentCall, Diagnosis

    monkeypatch.setenv("HIVEMIND_HOME", str(tmp_path))
    record = RecordStore().create(make_spec("stage-1", "none", False), DEPLOYMENT_ID, STACK)
    boto3.client("cloudformation", region_name="eu-west-1").create_stack(
        StackName=STACK, TemplateBody=TINY_TEMPLATE
    )
    diagnosis = Diagnosis(
        stage="deploy",
        cause="wrong_port",
        summary="The app listens on port 3000, not on app.port 8080.",
        evidence=["express-hello listening on port 3000"],
        fix={"explanation": "Use the port it listens on.", "spec_changes": {"app.port": 3000}},
    )
    calls = [AgentCall(agent="medic", source="model", model="bedrock:m", input_tokens=900,
                       output_tokens=120, seconds=1.5)]  # fmt: skip
    state = record.update(
        status=Status.FAILED, failed_stage="deploy", diagnosis=diagnosis, agent_calls=calls
    )
    old = (datetime.now(UTC) - timedelta(days=3)).isoformat(timespec="seconds")
    record.state_file.write_text(state.model_copy(update={"updated_at": old}).model_dump_json())

    report = show_status(DEPLOYMENT_ID)
    text = report.render()
    assert "medic: The app listens on port 3000, not on app.port 8080. [wrong_port]" in text
    assert "fix: set app.port = 3000" in text
    # A fix's environment values are never shown, only the variables' names.
    secret = diagnosis.model_copy(
        update={"fix": {"explanation": "x", "spec_changes": {"app.env": {"API_KEY": "s3cr3t"}}}}
    )
    record.update(diagnosis=secret)
    shown = show_status(DEPLOYMENT_ID).render()
    assert "fix: set app.env = {API_KEY}" in shown and "s3cr3t" not in shown
    assert "model calls: 1 (1 answers used), 900 tokens in, 120 out" in text
    assert "! failed 3 day(s) ago" in text
    assert "hivemind destroy shop-abcdefghij" in report.as_dict()["suggestion"]
