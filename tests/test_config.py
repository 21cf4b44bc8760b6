"""hivemind.yaml: the user's overrides, and errors that point at the line."""

from __future__ import annotations

import pytest

from hivemind.config import parse_user_config
from hivemind.errors import BadInputError


def test_values_are_read_with_their_lines() -> None:
    config = parse_user_config("profile: stage-1\napp:\n  port: 8080\ntags:\n  team: pay\n")
    assert config.values == {"profile": "stage-1", "app.port": 8080, "tags": {"team": "pay"}}
    assert config.evidence("app.port") == "hivemind.yaml:3"


def test_an_empty_file_is_an_empty_config() -> None:
    assert parse_user_config("# nothing yet\n").values == {}


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("app:\n  prot: 8080\n", "hivemind.yaml:2", "did you mean 'port'?"),
        ("regoin: us-east-1\n", "hivemind.yaml:1", "did you mean 'region'?"),
        ("port: 8080\n", "hivemind.yaml:1", "did you mean 'app.port'?"),
        ("database:\n  engine: postgres\n  flavour: x\n", "hivemind.yaml:3", "allowed here:"),
    ],
)
def test_unknown_keys_are_errors_with_a_suggestion(text: str, where: str, hint: str) -> None:
    with pytest.raises(BadInputError) as caught:
        parse_user_config(text)
    assert caught.value.where == where
    assert caught.value.cause is not None and hint in caught.value.cause
    assert caught.value.exit_code == 2


def test_malformed_yaml_gives_line_and_column() -> None:
    with pytest.raises(BadInputError) as caught:
        parse_user_config("app:\n  port: 8080\n   name: [oops\n")
    assert caught.value.where is not None
    assert caught.value.where.startswith("hivemind.yaml:3:")
    assert "not valid YAML" in caught.value.what


def test_a_section_must_be_a_mapping() -> None:
    with pytest.raises(BadInputError) as caught:
        parse_user_config("app: flask\n")
    assert "'app' must be a mapping" in caught.value.what
