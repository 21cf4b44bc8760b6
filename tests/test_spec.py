"""The deployment spec: typed, frozen, versioned, and every value explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import EXAMPLES, FIXTURES, make_spec, write_tree
from pydantic import ValidationError

from hivemind.config import parse_user_config
from hivemind.errors import BadInputError
from hivemind.resolve import Overrides, build_spec, read_repo, spec_for_repo
from hivemind.spec import DeploymentSpec, Source, field_paths, json_schema


def test_spec_round_trips_through_json() -> None:
    _, spec = spec_for_repo(str(EXAMPLES / "flask-notes"))
    again = DeploymentSpec.from_json(spec.to_json())
    assert again == spec
    assert json.loads(spec.to_json())["schema_version"] == 1


def test_spec_is_frozen() -> None:
    _, spec = spec_for_repo(str(EXAMPLES / "flask-notes"))
    with pytest.raises(ValidationError):
        spec.app.port = 1  # type: ignore[misc]


def test_every_field_has_provenance() -> None:
    for example in ("flask-notes", "express-hello", "fastapi-mysql"):
        _, spec = spec_for_repo(str(EXAMPLES / example))
        assert set(spec.provenance) == set(field_paths()), example


def test_json_schema_describes_every_setting() -> None:
    schema = json_schema()
    assert set(schema["properties"]) >= {
        "schema_version",
        "app",
        "database",
        "compute",  # type: ignore[call-overload]
        "profile",
        "region",
        "xray",
        "tags",
    }
    app = schema["$defs"]["AppSpec"]["properties"]  # type: ignore[index]
    assert {
        "name",
        "language",
        "framework",
        "runtime_version",
        "subdir",
        "build_command",
        "start_command",
        "port",
        "health_path",
        "env_vars",
    } <= set(app)


def test_detected_values_carry_file_and_line() -> None:
    _, spec = spec_for_repo(str(EXAMPLES / "flask-notes"))
    port = spec.provenance["app.port"]
    assert port.source == Source.DETECTED
    assert port.evidence == "app.py:93"
    assert spec.provenance["compute.count"].source == Source.DEFAULT


def test_precedence_flags_over_yaml_over_detection_over_defaults(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "requirements.txt": "flask\ngunicorn\npsycopg\n",
            "app.py": "from flask import Flask\napp = Flask(__name__)\napp.run(port=5005)\n",
            "hivemind.yaml": "app:\n  port: 6000\n  health_path: /ready\ncompute:\n  count: 3\n",
        },
    )
    overrides = Overrides({"app.port": (7000, "--port")})
    reading = read_repo(str(tmp_path), overrides)
    spec = build_spec(reading.profile, reading.config, overrides)
    assert spec.app.port == 7000  # flag beats hivemind.yaml and the code
    assert spec.provenance["app.port"].evidence == "--port"
    assert spec.app.health_path == "/ready"  # hivemind.yaml beats the default "/"
    assert spec.provenance["app.health_path"].evidence == "hivemind.yaml:3"
    assert spec.compute.count == 3
    assert spec.app.framework == "flask"  # detection beats the default
    assert spec.compute.instance_type == "t3.small"  # the production default
    assert spec.database.engine == "postgres"


def test_stage_one_profile_changes_the_defaults() -> None:
    overrides = Overrides({"profile": ("stage-1", "--stage-1")})
    _, spec = spec_for_repo(str(EXAMPLES / "flask-notes"), overrides)
    assert (spec.compute.count, spec.compute.instance_type) == (1, "t3.micro")
    assert spec.database.instance_class == "db.t3.micro"


def test_invalid_values_name_field_value_allowed_and_origin(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "requirements.txt": "flask\n",
            "app.py": "from flask import Flask\napp = Flask(__name__)\n",
            "hivemind.yaml": "# settings\napp:\n  name: Shop_App\n  port: 70000\ndatabase:\n"
            "  engine: oracle\n",
        },
    )
    with pytest.raises(BadInputError) as caught:
        spec_for_repo(str(tmp_path), Overrides({"region": ("mars-north-9x", "--region")}))
    error = caught.value
    assert error.exit_code == 2
    text = error.render()
    assert "app.name = 'Shop_App': must be lowercase letters" in text
    assert "hivemind.yaml:3" in text
    assert "app.port = 70000" in text and "65535" in text and "hivemind.yaml:4" in text
    assert "database.engine = 'oracle'" in text and "'postgres', 'mysql' or 'none'" in text
    assert "region = 'mars-north-9x'" in text and "--region" in text


def test_production_needs_two_instances(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as caught:
        spec_for_repo(str(EXAMPLES / "express-hello"), Overrides({"compute.count": (1, "--count")}))
    assert "compute.count = 1" in caught.value.render()
    assert "--count" in caught.value.render()
    assert "stage-1" in caught.value.render()


def test_an_upgrade_keeps_the_stage_one_colour_public_and_ends_in_production() -> None:
    from hivemind.update_plan import production_steps

    _, spec = spec_for_repo(
        str(EXAMPLES / "flask-notes"), Overrides({"profile": ("stage-1", "--stage-1")})
    )
    both, switched, done = production_steps(spec, "blue")
    # Production is built in green while the one stage-1 instance serves from blue.
    assert (both.profile, both.compute.active_color, both.compute.count) == (
        "production", "blue", 1,
    )  # fmt: skip
    assert (both.compute.public_color, both.compute.standby_count) == ("blue", 2)
    assert (switched.compute.active_color, switched.compute.count) == ("green", 2)
    assert switched.compute.standby_count == 1
    assert (done.compute.public_color, done.compute.standby_count) == (None, 0)
    # What the operator had stays: sizes; the provenance says who changed what.
    assert done.compute.instance_type == spec.compute.instance_type
    assert done.database == spec.database
    assert done.provenance["profile"].evidence == "hivemind upgrade --to-production"
    assert done.provenance["app.port"] == spec.provenance["app.port"]


def test_a_public_colour_is_for_an_upgrade_to_production_only() -> None:
    _, spec = spec_for_repo(
        str(EXAMPLES / "flask-notes"), Overrides({"profile": ("stage-1", "--stage-1")})
    )
    document = json.loads(spec.to_json())
    document["compute"]["public_color"] = "blue"
    with pytest.raises(ValidationError, match="for an upgrade to production only"):
        DeploymentSpec.model_validate(document)
    # In production, one instance is allowed only for the stage-1 colour still serving.
    document["profile"] = "production"
    DeploymentSpec.model_validate(document)
    document["compute"]["public_color"] = "green"
    with pytest.raises(ValidationError, match="at least 2"):
        DeploymentSpec.model_validate(document)


def test_sqlite_and_mongodb_are_explained_not_provisioned() -> None:
    _, sqlite = spec_for_repo(str(FIXTURES / "ruby-sinatra"))
    assert sqlite.database.engine == "none"
    assert any("SQLite" in note and "instance's disk" in note for note in sqlite.notes)

    _, mongo = spec_for_repo(str(FIXTURES / "node-fastify"))
    assert mongo.database.engine == "none"
    assert any("MongoDB" in note for note in mongo.notes)
    # The app reads its MongoDB URL from DATABASE_URL: the operator must provide it.
    assert "DATABASE_URL" in mongo.app.env_vars


def test_a_mongodb_app_without_a_url_variable_is_asked_for_mongodb_uri(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "package.json": '{"dependencies": {"express": "4", "mongoose": "8"}}',
            "index.js": "const app = require('express')();\napp.listen(3000);\n",
        },
    )
    _, spec = spec_for_repo(str(tmp_path))
    assert spec.app.env_vars == ("MONGODB_URI",)


def test_variables_hivemind_provides_are_not_asked_for() -> None:
    _, spec = spec_for_repo(str(EXAMPLES / "flask-notes"))
    # DATABASE_URL is read with no default, but HiveMind sets it with the database.
    assert "DATABASE_URL" not in spec.app.env_vars
    assert "PORT" not in spec.app.env_vars


def test_required_variables_come_from_code_and_env_example() -> None:
    _, spec = spec_for_repo(str(FIXTURES / "monorepo"))
    assert spec.app.env_vars == ("API_TOKEN",)


def test_unsupported_database_version_falls_back_with_a_note(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "requirements.txt": "flask\npsycopg\n",
            "app.py": "from flask import Flask\napp = Flask(__name__)\n",
            "docker-compose.yml": "services:\n  db:\n    image: postgres:9.6\n",
        },
    )
    _, spec = spec_for_repo(str(tmp_path))
    assert spec.database.engine_version == "16"
    assert any("postgres 9" in note and "using 16" in note for note in spec.notes)


def test_a_database_setting_without_an_engine_is_an_error() -> None:
    config = parse_user_config("database:\n  instance_class: db.t3.large\n")
    reading = read_repo(str(EXAMPLES / "express-hello"))
    with pytest.raises(BadInputError) as caught:
        build_spec(reading.profile, config, Overrides())
    assert "database.instance_class is set but database.engine is none" in caught.value.render()


def test_choosing_a_managed_database_over_sqlite_drops_the_warning() -> None:
    overrides = Overrides({"database.engine": ("postgres", "--db-engine")})
    _, spec = spec_for_repo(str(FIXTURES / "ruby-sinatra"), overrides)
    assert spec.database.engine == "postgres"
    assert spec.provenance["database.engine"].evidence == "--db-engine"
    assert not any("SQLite" in note for note in spec.notes)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("health_check_interval", 4),
        ("health_check_interval", 301),
        ("healthy_threshold", 1),
        ("unhealthy_threshold", 11),
        ("deregistration_delay", 3601),
    ],
)
def test_load_balancer_settings_outside_what_elb_accepts_are_refused(
    setting: str, value: int
) -> None:
    with pytest.raises(ValidationError, match=setting):
        make_spec("stage-1", "none", False, load_balancer={setting: value})


def test_the_default_load_balancer_settings_are_hiveminds() -> None:
    balancing = make_spec("production", "postgres", False).load_balancer
    assert (balancing.health_check_interval, balancing.health_check_timeout) == (15, 5)
    assert (balancing.healthy_threshold, balancing.unhealthy_threshold) == (2, 3)
    assert balancing.deregistration_delay == 30
