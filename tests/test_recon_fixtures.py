"""Recon reads each framework's fixture repository as a careful engineer would.

The fixtures under tests/fixtures/repos/ were written independently of the
analyzer, each with its expected facts in <case>.expected.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import EXAMPLES, FIXTURES

from hivemind.recon.analyzer import analyze
from hivemind.recon.model import AppProfile
from hivemind.recon.source import open_repo

CASES = sorted(p.name.removesuffix(".expected.json") for p in FIXTURES.glob("*.expected.json"))


def profile_of(path: Path) -> AppProfile:
    return analyze(open_repo(str(path)))


def observed(profile: AppProfile) -> dict[str, object]:
    return {
        "app_dir": profile.app_dir.value,
        "language": profile.value("language"),
        "framework": profile.value("framework"),
        "runtime_version": profile.value("runtime_version"),
        "port": profile.value("port"),
        "port_source": profile.facts["port"].source,
        "health_path": profile.value("health_path"),
        "database_engine": profile.value("database_engine"),
        "env_vars": sorted(v.name for v in profile.env_vars),
    }


def test_there_is_a_fixture_per_framework() -> None:
    frameworks = {
        json.loads((FIXTURES / f"{c}.expected.json").read_text())["framework"] for c in CASES
    }
    assert frameworks >= {
        "express",
        "fastify",
        "nest",
        "next",
        "koa",
        "django",
        "flask",
        "fastapi",
        "gin",
        "echo",
        "fiber",
        "chi",
        "net/http",
        "spring-boot",
        "rails",
        "sinatra",
    }


@pytest.mark.parametrize("case", CASES)
def test_fixture_facts_match_expectations(case: str) -> None:
    expected = json.loads((FIXTURES / f"{case}.expected.json").read_text())
    assert observed(profile_of(FIXTURES / case)) == expected


@pytest.mark.parametrize("case", CASES)
def test_every_detected_fact_names_its_evidence(case: str) -> None:
    profile = profile_of(FIXTURES / case)
    for name, fact in profile.facts.items():
        if fact.source in ("default",):
            continue
        assert fact.evidence is not None, name
        assert (FIXTURES / case / fact.evidence.file).exists() or fact.evidence.file == ".", name


# How each stack is built and started: what a deployer would type.
COMMANDS = {
    "node-express": ("npm install", "npm start"),
    "node-next": ("npm install && npm run build", "npm start"),
    "python-django": (
        "pip install -r requirements.txt",
        "gunicorn inventory.wsgi --bind 0.0.0.0:$PORT",
    ),
    # No gunicorn in its requirements: Flask's own server, with a warning (tested below).
    "python-flask": (
        "pip install -r requirements.txt",
        "flask --app app:app run --host 0.0.0.0 --port $PORT",
    ),
    # The Procfile's web line wins over anything derived from the stack.
    "procfile-python": (
        "pip install -r requirements.txt",
        "gunicorn wsgi:application --bind 0.0.0.0:8000 --workers 2 --access-logfile -",
    ),
    "go-gin": ("go build -o bin/app .", "./bin/app"),
    "java-spring-maven": (
        "mvn -B -q -DskipTests package",
        "java -Dserver.port=$PORT -jar target/orders-0.0.1-SNAPSHOT.jar",
    ),
    "ruby-rails": (
        "bundle config set --local without 'development test' && bundle install",
        "bundle exec puma -C config/puma.rb",
    ),
}


@pytest.mark.parametrize("case", sorted(COMMANDS))
def test_build_and_start_commands(case: str) -> None:
    profile = profile_of(FIXTURES / case)
    build, start = COMMANDS[case]
    assert (profile.value("build_command"), profile.value("start_command")) == (build, start)


EXAMPLE_FACTS = {
    "flask-notes": {
        "language": "python",
        "framework": "flask",
        "port": 5000,
        "health_path": "/health",
        "database_engine": "postgres",
        "start_command": "gunicorn app:app --bind 0.0.0.0:$PORT",
    },
    "express-hello": {
        "language": "node",
        "framework": "express",
        "port": 3000,
        "health_path": "/health",
        "database_engine": "none",
        "start_command": "npm start",
    },
    "fastapi-mysql": {
        "language": "python",
        "framework": "fastapi",
        "port": 8000,
        "health_path": "/healthz",
        "database_engine": "mysql",
        "start_command": "uvicorn main:app --host 0.0.0.0 --port $PORT",
    },
}


@pytest.mark.parametrize("example", sorted(EXAMPLE_FACTS))
def test_bundled_examples_are_read_right(example: str) -> None:
    profile = profile_of(EXAMPLES / example)
    assert {k: profile.value(k) for k in EXAMPLE_FACTS[example]} == EXAMPLE_FACTS[example]


def test_a_development_server_start_is_called_out() -> None:
    profile = profile_of(FIXTURES / "python-flask")
    assert any("development server" in w and "gunicorn" in w for w in profile.warnings)
