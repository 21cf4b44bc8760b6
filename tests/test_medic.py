"""Medic: every failure in the corpus diagnosed with its cause, verbatim evidence and fix;
fixes that apply to a real spec; a model's diagnosis used only when it holds up."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fake_models import ScriptedChatModel, calls, said
from harness import EXAMPLES

from hivemind.errors import BadInputError
from hivemind.resolve import spec_for_repo
from hivemind.spec import DeploymentSpec, Source
from hivemind_agents.base import Advisor, Rejected
from hivemind_agents.medic import (
    CAUSES,
    CORPUS_BASE_SPEC,
    CorpusEntry,
    Diagnosis,
    Failure,
    Fix,
    Medic,
    PermissionFix,
    answering_paths,
    apply_spec_changes,
    classify,
    larger_type,
    read_corpus,
)

CORPUS = read_corpus()
BY_ID = {entry.id: entry for entry in CORPUS}


def base_spec(**changes: object) -> DeploymentSpec:
    spec = DeploymentSpec.model_validate(CORPUS_BASE_SPEC)
    return apply_spec_changes(spec, changes, "test") if changes else spec


# --- the corpus ----------------------------------------------------------------------------


def test_the_corpus_has_every_cause_several_times_from_named_origins() -> None:
    assert len(CORPUS) >= 80
    assert len(BY_ID) == len(CORPUS), "corpus ids are unique"
    per_cause = Counter(entry.expected.cause for entry in CORPUS)
    assert set(per_cause) == set(CAUSES)
    assert min(per_cause.values()) >= 5, per_cause
    assert all(entry.origin.strip() for entry in CORPUS)
    assert sum("sandbox" in entry.origin for entry in CORPUS) >= 8


@pytest.mark.parametrize("entry", CORPUS, ids=[entry.id for entry in CORPUS])
def test_corpus_failure_is_diagnosed_as_expected(entry: CorpusEntry) -> None:
    failure = entry.to_failure()
    diagnosis = classify(failure)
    assert entry.expected.mismatches(diagnosis) == [], diagnosis.model_dump_json(indent=1)
    # HiveMind's own answer meets the standard a model's answer is held to.
    assert Medic().check(failure, diagnosis) == diagnosis


@pytest.mark.parametrize(
    "entry",
    [e for e in CORPUS if e.expected.fix and e.expected.fix.spec_changes],
    ids=lambda e: e.id,
)
def test_a_corpus_fix_makes_a_valid_spec_with_medics_provenance(entry: CorpusEntry) -> None:
    failure = entry.to_failure()
    fix = classify(failure).fix
    assert fix is not None
    spec = failure.spec or base_spec()  # a failure without a spec: the corpus's base spec
    fixed = apply_spec_changes(spec, fix.spec_changes, evidence="test")
    for path, value in fix.spec_changes.items():
        section, _, leaf = path.partition(".")
        assert getattr(getattr(fixed, section), leaf) == value
        assert fixed.provenance[path].source == Source.USER
        assert fixed.provenance[path].note == "Medic's fix"


def test_fixes_apply_to_a_spec_resolved_from_a_real_repository() -> None:
    _, spec = spec_for_repo(str(EXAMPLES / "flask-notes"))
    failure = Failure(
        deployment_id="flask-notes-k2j4m6p7q3",
        stage="provision",
        what="CloudFormation could not create the stack (it is ROLLBACK_COMPLETE)",
        cause="WebBlue1D8CD25BC (AWS::EC2::Instance): We currently do not have sufficient "
        f"{spec.compute.instance_type} capacity in the Availability Zone you requested "
        "(us-east-1e).",
        spec=spec,
    )
    fix = classify(failure).fix
    assert fix is not None
    changed = fix.spec_changes["compute.instance_type"]
    assert changed != spec.compute.instance_type
    fixed = apply_spec_changes(spec, fix.spec_changes, evidence=failure.cause)
    assert fixed.compute.instance_type == changed
    assert fixed.provenance["compute.instance_type"].evidence == failure.cause
    assert fixed.app == spec.app and fixed.database == spec.database


def test_a_spec_change_to_an_unknown_field_or_an_invalid_value_is_bad_input() -> None:
    spec = base_spec()
    with pytest.raises(BadInputError, match=r"app\.listen_port"):
        apply_spec_changes(spec, {"app.listen_port": 3000}, "test")
    with pytest.raises(BadInputError):
        apply_spec_changes(spec, {"app.port": 70000}, "test")
    with pytest.raises(BadInputError):
        apply_spec_changes(spec, {"compute.instance_type": "a big one"}, "test")


# --- rules beyond the corpus ---------------------------------------------------------------


def provision_failure(*reasons: str, spec: DeploymentSpec | None = None) -> Failure:
    return Failure(
        deployment_id="shop-k2j4m6p7q3",
        stage="provision",
        what="CloudFormation could not create the stack (it is ROLLBACK_COMPLETE)",
        cause=reasons[0],
        details=list(reasons[1:]),
        spec=spec,
    )


QUOTA_REASON = (
    "NetworkVpcpublicSubnet1EIP6AD938E8 (AWS::EC2::EIP): The maximum number of addresses "
    "has been reached. (Service: AmazonEC2; Status Code: 400; Error Code: AddressLimitExceeded)"
)
PERMISSION_REASON = (
    "WebBlue1D8CD25BC (AWS::EC2::Instance): API: ec2:RunInstances You are not authorized to "
    "perform this operation."
)
CANCELLED = (
    "WebLoadBalancer8E8983B1 (AWS::ElasticLoadBalancingV2::LoadBalancer): "
    "Resource creation cancelled"
)


def test_the_first_root_reason_wins_and_cancellations_are_never_the_cause() -> None:
    first = classify(provision_failure(CANCELLED, QUOTA_REASON, PERMISSION_REASON))
    assert first.cause == "service_quota"
    assert CANCELLED not in first.evidence
    assert classify(provision_failure(CANCELLED, PERMISSION_REASON, QUOTA_REASON)).cause == (
        "missing_permission"
    )
    alone = classify(provision_failure(CANCELLED, CANCELLED.replace("WebLoad", "Other")))
    assert alone.cause == "timeout"  # nothing else to blame


def build_failure(*stderr: str) -> Failure:
    return Failure(
        deployment_id="shop-k2j4m6p7q3",
        stage="deploy",
        what="build failed on i-0a1b2c3d4e5f60718 (10.0.0.23)",
        cause=stderr[-1],
        details=["exit code 1", *(f"stderr: {line}" for line in stderr)],
        command_output="\n".join(stderr),
        spec=base_spec(),
    )


def test_throttling_or_a_timeout_inside_a_build_is_a_build_failure() -> None:
    throttled = build_failure(
        "An error occurred (ThrottlingException) when calling the GetParameter operation: "
        "Rate exceeded"
    )
    timed_out = build_failure("curl: (28) Connection timed out after 30001 milliseconds")
    for failure in (throttled, timed_out):
        diagnosis = classify(failure)
        assert diagnosis.cause == "build_failure"
        assert diagnosis.fix is not None
        assert diagnosis.fix.command == "pip install -r requirements.txt"


def unhealthy(app_log: list[str], spec: DeploymentSpec | None) -> Failure:
    reason = "i-0a1b2c3d4e5f60718 is unhealthy (Target.FailedHealthChecks Health checks failed)"
    return Failure(
        deployment_id="shop-k2j4m6p7q3",
        stage="deploy",
        what="the load balancer did not report every instance healthy within 300 s",
        cause=reason,
        health_reason=reason,
        app_log=app_log,
        spec=spec,
    )


@pytest.mark.parametrize(
    ("line", "port"),
    [
        ("Server is running on port 4000", 4000),
        ("App listening at http://localhost:5050", 5050),
        ("INFO:     Uvicorn running on http://0.0.0.0:9000 (Press CTRL+C to quit)", 9000),
        ("* Listening on http://0.0.0.0:3002", 3002),
        ("Netty started on port 8082", 8082),
    ],
)
def test_the_port_the_app_listens_on_becomes_the_fix(line: str, port: int) -> None:
    diagnosis = classify(unhealthy(["starting", line], base_spec()))
    assert diagnosis.cause == "wrong_port"
    assert diagnosis.fix is not None and diagnosis.fix.spec_changes == {"app.port": port}
    assert line in diagnosis.evidence


def test_a_metrics_or_debugger_listener_is_not_the_apps_port() -> None:
    log = [
        "Debugger listening on ws://127.0.0.1:9229/6f1c2a",
        "metrics server listening on port 9100",
        "web listening on port 8080",
    ]
    diagnosis = classify(unhealthy(log, base_spec()))
    assert diagnosis.fix is not None and diagnosis.fix.spec_changes == {"app.port": 8080}


def test_a_log_port_equal_to_the_spec_port_is_not_a_wrong_port() -> None:
    diagnosis = classify(unhealthy(["Listening on port 8000"], base_spec()))
    assert diagnosis.cause == "timeout"


def test_a_key_error_that_is_not_the_environments_is_not_a_missing_variable() -> None:
    log = [
        "Traceback (most recent call last):",
        '  File "/opt/shop/current/app.py", line 30, in index',
        "    return prices['EUR']",
        "KeyError: 'EUR'",
    ]
    assert classify(unhealthy(log, base_spec())).cause != "missing_env_var"


def test_a_quota_without_a_known_code_is_looked_up_for_its_own_service() -> None:
    failure = provision_failure(
        "DatabaseInstanceAA8A5FDE (AWS::RDS::DBInstance): Resource handler returned message: "
        '"Cannot exceed quota for DBParameterGroups: 50" (HandlerErrorCode: ServiceLimitExceeded)',
        spec=base_spec(region="eu-west-2"),
    )
    diagnosis = classify(failure)
    assert diagnosis.cause == "service_quota" and diagnosis.fix is not None
    assert diagnosis.fix.command == (
        "aws service-quotas list-service-quotas --service-code rds --region eu-west-2"
    )


def test_a_failure_no_rule_knows_is_unknown_with_its_cause_line_as_evidence() -> None:
    failure = provision_failure(
        "WebBlue1D8CD25BC (AWS::EC2::Instance): Something nobody has seen before", CANCELLED
    )
    diagnosis = classify(failure)
    assert diagnosis.cause == "unknown"
    assert diagnosis.evidence == [failure.cause]
    assert diagnosis.fix is None


# --- the agent -----------------------------------------------------------------------------


def port_failure() -> Failure:
    return BY_ID["port-express-3001"].to_failure()


def answer(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "cause": "wrong_port",
        "summary": "The app listens on 3001; the load balancer checks 3000.",
        "evidence": ["Server listening on port 3001"],
        "fix": {"explanation": "Use port 3001.", "spec_changes": {"app.port": 3001}},
    }
    value.update(overrides)
    return value


def ask(*messages: Any, failure: Failure | None = None) -> tuple[Any, Advisor, list[str]]:
    lines: list[str] = []
    model = ScriptedChatModel(messages=iter(messages))
    advisor = Advisor(model=model, model_name="fake", log=lines.append)
    return advisor.ask(Medic(), failure or port_failure()), advisor, lines


def test_without_a_model_medic_answers_with_its_rules() -> None:
    failure = port_failure()
    result = Advisor().ask(Medic(), failure)
    assert result.source == "fallback"
    assert result.value == classify(failure)


def test_a_valid_model_diagnosis_is_used_and_its_tokens_counted() -> None:
    result, advisor, lines = ask(
        said("The log shows the port.", input_tokens=120, output_tokens=8),
        calls("Diagnosis", answer(), input_tokens=150, output_tokens=60),
    )
    assert result.source == "model"
    assert result.value == Diagnosis.model_validate(answer())
    assert lines == ["agent medic: answered by fake"]
    [call] = advisor.calls
    assert (call.agent, call.source, call.model) == ("medic", "model", "fake")
    assert (call.input_tokens, call.output_tokens) == (270, 68)


def test_the_model_may_consult_hivemind_rules_before_answering() -> None:
    result, advisor, _ = ask(
        calls("hivemind_rules", {}, input_tokens=100, output_tokens=5),
        said("The rules agree.", input_tokens=300, output_tokens=5),
        calls("Diagnosis", answer(), input_tokens=320, output_tokens=50),
    )
    assert result.source == "model"
    assert advisor.calls[0].input_tokens == 720


def test_a_hallucinated_evidence_line_is_rejected_and_the_rules_answer_instead() -> None:
    made_up = answer(evidence=["Server listening on port 3001 (http://0.0.0.0)"])
    result, advisor, lines = ask(
        said("", input_tokens=10, output_tokens=1),
        calls("Diagnosis", made_up, input_tokens=90, output_tokens=40),
    )
    assert result.source == "fallback"
    assert result.value == classify(port_failure())
    assert "not in the failure's text" in result.note
    assert len(lines) == 1 and "answer rejected" in lines[0] and "evidence" in lines[0]
    [call] = advisor.calls
    assert call.source == "fallback" and (call.input_tokens, call.output_tokens) == (100, 41)


def test_an_answer_that_does_not_fit_the_schema_falls_back() -> None:
    result, _, lines = ask(
        said(""),
        calls("Diagnosis", {"cause": "gremlins", "summary": "?", "evidence": []}),
    )
    assert result.source == "fallback"
    assert "does not fit Diagnosis" in result.note
    assert "answer rejected" in lines[0]


def test_a_model_that_fails_falls_back() -> None:
    def throttled() -> Iterator[Any]:
        raise RuntimeError("ThrottlingException: Too many requests, please wait")
        yield  # a generator that fails when first asked

    lines: list[str] = []
    advisor = Advisor(
        model=ScriptedChatModel(messages=throttled()), model_name="fake", log=lines.append
    )
    result = advisor.ask(Medic(), port_failure())
    assert result.source == "fallback"
    assert result.value == classify(port_failure())
    assert "the model failed: ThrottlingException" in lines[0]
    assert advisor.calls[0].note.startswith("the model failed")


def test_medic_describes_the_failure_and_offers_its_tools() -> None:
    failure = port_failure()
    medic = Medic()
    text = medic.describe(failure)
    for part in (failure.what, failure.health_reason, "Server listening on port 3001"):
        assert part in text
    assert "app.port = 3000" in text
    tools = {tool.__name__: tool for tool in medic.tools(failure)}
    assert Diagnosis.model_validate_json(tools["hivemind_rules"]()) == classify(failure)
    assert "t3a.small" in tools["priced_types"]("ec2").split(", ")
    assert "db.t4g.micro" in tools["priced_types"]("rds").split(", ")


# --- the check -----------------------------------------------------------------------------


def rejected(failure: Failure, **overrides: Any) -> str:
    with pytest.raises(Rejected) as caught:
        Medic().check(failure, Diagnosis.model_validate(answer(**overrides)))
    return str(caught.value)


def test_the_check_holds_a_wrong_port_to_the_port_in_its_evidence() -> None:
    failure = port_failure()
    wrong = {"explanation": "Use 3002.", "spec_changes": {"app.port": 3002}}
    assert "3002 does not appear" in rejected(failure, fix=wrong)
    assert "app.port" in rejected(failure, fix=None)
    same = {"explanation": "Use 3000.", "spec_changes": {"app.port": 3000}}
    evidence = ["Server listening on port 3001", "> shop@1.0.0 start"]
    assert "3000 is the spec's port" in rejected(
        failure.model_copy(update={"app_log": [*failure.app_log, "port 3000"]}),
        evidence=[*evidence, "port 3000"],
        fix=same,
    )


def test_the_check_refuses_spec_changes_the_spec_does_not_accept() -> None:
    failure = port_failure()
    unknown = {"explanation": "x", "spec_changes": {"app.listen_port": 3001}}
    assert "app.listen_port" in rejected(failure, fix=unknown)
    invalid = {"explanation": "x", "spec_changes": {"app.port": 3001, "compute.count": 0}}
    assert "not valid" in rejected(failure, fix=invalid)


def test_without_a_spec_changes_are_still_checked_field_by_field() -> None:
    failure = port_failure().model_copy(update={"spec": None})
    Medic().check(failure, Diagnosis.model_validate(answer()))
    bad_type = {"explanation": "x", "spec_changes": {"compute.instance_type": "huge"}}
    assert "not valid" in rejected(failure, cause="capacity", fix=bad_type)


def test_the_check_holds_a_permission_fix_to_the_action_in_its_evidence() -> None:
    failure = BY_ID["perm-api-runinstances-encoded"].to_failure()
    evidence = [failure.details[0]]  # the RunInstances line
    statement = {"Effect": "Allow", "Action": ["ec2:RunInstances"], "Resource": "*"}
    good = Diagnosis(
        cause="missing_permission",
        summary="s",
        evidence=evidence,
        fix=Fix(
            explanation="e",
            permission=PermissionFix(action="ec2:RunInstances", statement=statement),
        ),
    )
    assert Medic().check(failure, good) == good
    other = {"Effect": "Allow", "Action": ["ec2:CreateVpc"], "Resource": "*"}
    made_up = good.model_copy(
        update={
            "fix": Fix(
                explanation="e",
                permission=PermissionFix(action="ec2:CreateVpc", statement=other),
            )
        }
    )
    with pytest.raises(Rejected, match=r"ec2:CreateVpc does not appear"):
        Medic().check(failure, made_up)
    mismatched = good.model_copy(
        update={
            "fix": Fix(
                explanation="e",
                permission=PermissionFix(action="ec2:RunInstances", statement=other),
            )
        }
    )
    with pytest.raises(Rejected, match=r"does not allow ec2:RunInstances"):
        Medic().check(failure, mismatched)


def test_the_check_holds_environment_variables_to_the_evidence() -> None:
    failure = BY_ID["env-node-must-be-set"].to_failure()
    evidence = ["Error: JWT_SECRET must be set"]
    made_up = {"explanation": "x", "env_needed": ["JWT_SECRET", "API_KEY"]}
    message = rejected(failure, cause="missing_env_var", evidence=evidence, fix=made_up)
    assert "API_KEY does not appear" in message


def test_the_corpus_lines_are_json_with_their_origin() -> None:
    from hivemind_agents.medic import CORPUS as path

    for line in path.read_text("utf-8").splitlines():
        data = json.loads(line)
        assert set(data) == {"id", "origin", "stage", "failure", "expected"}


# --- resources running out -------------------------------------------------------------------


def test_the_larger_type_is_the_next_priced_size_of_the_same_family() -> None:
    assert larger_type("t3.micro") == "t3.small"
    assert larger_type("t3a.medium") == "t3a.large"
    assert larger_type("m5.large") == "m5.xlarge"
    assert larger_type("t3.2xlarge") is None  # the largest t3
    assert larger_type("x9z.small") is None  # a family HiveMind cannot price


def test_memory_running_out_in_the_metrics_is_quoted_as_evidence() -> None:
    failure = BY_ID["oom-metric-only"].to_failure()
    found = classify(failure)
    assert found.cause == "resources_exhausted"
    assert any(line.startswith("memory % i-") for line in found.evidence)
    Medic().check(failure, found)  # the metrics line is part of the failure's text
    assert "The deployment's metrics meanwhile:" in Medic().describe(failure)


def test_a_memory_error_outside_the_app_is_no_reason_to_grow_the_disk() -> None:
    found = classify(BY_ID["oom-gunicorn-sigkill"].to_failure())
    assert found.fix is not None and set(found.fix.spec_changes) == {"compute.instance_type"}
    disk = classify(BY_ID["disk-npm-enospc"].to_failure())
    assert disk.fix is not None and disk.fix.spec_changes == {"compute.root_volume_gb": 32}
    assert "while building" in disk.summary


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"compute.instance_type": "t3.nano"}, "no larger than t3.micro"),
        ({"compute.instance_type": "t3a.micro"}, "no larger than t3.micro"),
        ({"compute.root_volume_gb": 16}, "no larger than the spec's"),
        ({"database.storage_gb": 20}, "no more than the spec's"),
    ],
)
def test_the_check_refuses_a_fix_that_gives_no_more_of_what_ran_out(
    changes: dict[str, Any], refused: str
) -> None:
    failure = BY_ID["oom-kernel-gunicorn"].to_failure()
    evidence = ["shop.service: A process of this unit has been killed by the OOM killer."]
    fix = {"explanation": "More.", "spec_changes": changes}
    assert refused in rejected(failure, cause="resources_exhausted", evidence=evidence, fix=fix)
    bigger = {"explanation": "More.", "spec_changes": {"compute.instance_type": "t3.medium"}}
    Medic().check(
        failure,
        Diagnosis.model_validate(
            answer(cause="resources_exhausted", evidence=evidence, fix=bigger)
        ),
    )


# --- health check answers --------------------------------------------------------------------


def test_the_paths_answering_as_the_load_balancer_wants_are_read_in_order() -> None:
    line = "other paths: /health -> 404, /healthz -> 200, /ping -> ConnectionResetError, / -> 302"
    assert answering_paths(line) == {"/healthz": "200", "/": "302"}
    assert answering_paths("/healthz -> 200") == {}  # only the probe's own line counts


def test_the_check_holds_a_health_path_fix_to_a_path_its_evidence_shows_answering() -> None:
    failure = BY_ID["health-probe-404-healthz"].to_failure()
    found = classify(failure)
    assert found.fix is not None and found.fix.spec_changes == {"app.health_path": "/healthz"}
    Medic().check(failure, found)
    wrong = found.model_copy(
        update={"fix": found.fix.model_copy(update={"spec_changes": {"app.health_path": "/ping"}})}
    )
    with pytest.raises(Rejected, match="does not show '/ping' answering"):
        Medic().check(failure, wrong)
