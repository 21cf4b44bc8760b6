"""Recon with a model: proposals for what the analyzer left unknown, checked against the
repository's files; without a model, nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_models import ScriptedChatModel
from langchain_core.messages import AIMessage

from hivemind.errors import BadInputError
from hivemind.resolve import spec_for_repo
from hivemind.spec import Source
from hivemind_agents.base import Advisor

README = """# Ledger

A small service.

## Running

In production we run it with:

    waitress-serve --listen=0.0.0.0:7070 ledger.web:app

The readiness probe is GET /status/ready.

Set LEDGER_API_TOKEN before starting it.
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A Python app whose start command and port only its README tells."""
    (tmp_path / "requirements.txt").write_text("waitress==3.0.0\n")
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "web.py").write_text("def app(environ, start_response):\n    ...\n")
    (tmp_path / "README.md").write_text(README)
    return tmp_path


def answer(*proposals: dict[str, str]) -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": "ReconProposals", "args": {"proposals": list(proposals)}, "id": "1"}],
        usage_metadata={"input_tokens": 900, "output_tokens": 80, "total_tokens": 980},
    )


START = {
    "field": "start_command",
    "value": "waitress-serve --listen=0.0.0.0:7070 ledger.web:app",
    "file": "README.md",
    "quote": "waitress-serve --listen=0.0.0.0:7070 ledger.web:app",
    "reason": "the README's production command",
}
PORT = {
    "field": "port",
    "value": "7070",
    "file": "README.md",
    "quote": "waitress-serve --listen=0.0.0.0:7070 ledger.web:app",
    "reason": "the address it listens on",
}


def test_without_a_model_the_unknown_start_command_is_bad_input(repo: Path) -> None:
    with pytest.raises(BadInputError, match="could not work out how to start the app"):
        spec_for_repo(str(repo))


def test_checked_proposals_fill_the_spec_with_llm_provenance(repo: Path) -> None:
    tools_round = AIMessage(
        content="",
        tool_calls=[{"name": "read_file", "args": {"path": "README.md"}, "id": "t1"}],
        usage_metadata={"input_tokens": 500, "output_tokens": 20, "total_tokens": 520},
    )
    health = {
        "field": "health_path",
        "value": "/status/ready",
        "file": "README.md",
        "quote": "The readiness probe is GET /status/ready.",
        "reason": "the documented probe",
    }
    token = {
        "field": "env_var",
        "value": "LEDGER_API_TOKEN",
        "file": "README.md",
        "quote": "Set LEDGER_API_TOKEN before starting it.",
        "reason": "documented as required",
    }
    model = ScriptedChatModel(
        messages=iter(
            [tools_round, AIMessage(content="read it"), answer(START, PORT, health, token)]
        )
    )
    advisor = Advisor(model=model, model_name="fake:recon")
    _, spec = spec_for_repo(str(repo), advisor=advisor)
    assert spec.app.start_command == START["value"]
    assert spec.app.port == 7070
    assert spec.app.health_path == "/status/ready"
    assert "LEDGER_API_TOKEN" in spec.app.env_vars
    provenance = spec.provenance["app.start_command"]
    assert provenance.source == Source.LLM
    assert provenance.evidence == "README.md:9"
    assert "fake:recon" in provenance.note
    (call,) = advisor.calls
    assert call.source == "model" and call.input_tokens == 1400 and call.output_tokens == 100


def test_a_quote_not_in_the_file_is_dropped_and_logged(repo: Path) -> None:
    invented_port = {**PORT, "value": "9000", "quote": "gunicorn --bind 0.0.0.0:9000 app:app"}
    lines: list[str] = []
    model = ScriptedChatModel(
        messages=iter([AIMessage(content="done"), answer(START, invented_port)])
    )
    _, spec = spec_for_repo(
        str(repo), advisor=Advisor(model=model, model_name="fake", log=lines.append)
    )
    assert spec.app.start_command == START["value"]
    assert spec.app.port != 9000
    assert spec.provenance["app.port"].source != Source.LLM
    assert any(
        "dropped the proposal port='9000'" in line and "not in README.md" in line for line in lines
    )


def test_a_file_outside_the_repository_is_never_read(repo: Path, tmp_path: Path) -> None:
    outside = {**START, "file": "../../etc/passwd", "quote": "root:x:0:0"}
    lines: list[str] = []
    model = ScriptedChatModel(messages=iter([AIMessage(content="done"), answer(outside)]))
    with pytest.raises(BadInputError, match="could not work out how to start the app"):
        spec_for_repo(str(repo), advisor=Advisor(model=model, model_name="fake", log=lines.append))
    assert any("not a text file of the app" in line for line in lines)


def test_an_answer_that_does_not_fit_the_schema_falls_back(repo: Path) -> None:
    broken = AIMessage(
        content="",
        tool_calls=[
            {"name": "ReconProposals", "args": {"proposals": [{"field": "colour"}]}, "id": "1"}
        ],
    )
    lines: list[str] = []
    model = ScriptedChatModel(messages=iter([AIMessage(content="done"), broken]))
    (repo / "hivemind.yaml").write_text("app:\n  start_command: waitress-serve ledger.web:app\n")
    _, spec = spec_for_repo(
        str(repo), advisor=Advisor(model=model, model_name="fake", log=lines.append)
    )
    assert spec.app.start_command == "waitress-serve ledger.web:app"
    assert any("does not fit ReconProposals" in line for line in lines)


def test_what_the_user_states_wins_over_the_model(repo: Path) -> None:
    (repo / "hivemind.yaml").write_text("app:\n  port: 8123\n")
    model = ScriptedChatModel(messages=iter([AIMessage(content="done"), answer(START, PORT)]))
    _, spec = spec_for_repo(str(repo), advisor=Advisor(model=model, model_name="fake"))
    assert spec.app.port == 8123
    assert spec.provenance["app.port"].source == Source.USER
