"""What synth says would change against a deployed stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from harness import make_spec

from hivemind import synth_command
from hivemind.errors import BadInputError
from hivemind.template_diff import diff_templates

DEPLOYED: dict[str, Any] = {
    "Resources": {
        "Db": {
            "Type": "AWS::RDS::DBInstance",
            "Properties": {"Engine": "postgres", "DBInstanceClass": "db.t3.micro"},
        },
        "Web1": {"Type": "AWS::EC2::Instance", "Properties": {"SubnetId": "a"}},
        "Old": {"Type": "AWS::Logs::LogGroup", "Properties": {}},
        "Sg": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "x"}},
    },
    "Outputs": {"Url": {"Value": "a"}},
}


def proposed(**resources: Any) -> dict[str, Any]:
    template = json.loads(json.dumps(DEPLOYED))
    for name, value in resources.items():
        if value is None:
            del template["Resources"][name]
        else:
            template["Resources"][name] = value
    return template


def test_identical_templates_change_nothing() -> None:
    assert diff_templates(DEPLOYED, DEPLOYED).empty


def test_added_modified_replaced_removed() -> None:
    diff = diff_templates(
        DEPLOYED,
        proposed(
            New={"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
            Db={
                "Type": "AWS::RDS::DBInstance",
                "Properties": {"Engine": "postgres", "DBInstanceClass": "db.t3.small"},
            },
            Sg={"Type": "AWS::EC2::SecurityGroup", "Properties": {"GroupDescription": "y"}},
            Old=None,
        ),
    )
    assert [c.logical_id for c in diff.added] == ["New"]
    assert [(c.logical_id, c.properties) for c in diff.modified] == [("Db", ("DBInstanceClass",))]
    assert [c.logical_id for c in diff.replaced] == ["Sg"]
    assert [c.logical_id for c in diff.removed] == ["Old"]
    assert diff.data_at_risk == ()


def test_replacing_the_database_is_called_out_as_data_loss() -> None:
    diff = diff_templates(
        DEPLOYED,
        proposed(
            Db={
                "Type": "AWS::RDS::DBInstance",
                "Properties": {"Engine": "mysql", "DBInstanceClass": "db.t3.micro"},
            },
        ),
    )
    assert [c.logical_id for c in diff.replaced] == ["Db"]
    assert [c.logical_id for c in diff.data_at_risk] == ["Db"]


def _stubbed_cloudformation(monkeypatch: pytest.MonkeyPatch) -> Stubber:
    client = boto3.client("cloudformation", region_name="eu-west-1")
    stubber = Stubber(client)
    monkeypatch.setattr(boto3, "client", lambda *_args, **_kwargs: client)
    return stubber


def test_the_deployed_template_is_read_from_cloudformation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stubber = _stubbed_cloudformation(monkeypatch)
    stubber.add_response(
        "get_template",
        {"TemplateBody": json.dumps(DEPLOYED)},
        {"StackName": "hivemind-shop-abcdefghij", "TemplateStage": "Original"},
    )
    with stubber:
        assert synth_command._deployed_template("hivemind-shop-abcdefghij", "eu-west-1") == DEPLOYED


def test_a_missing_stack_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    stubber = _stubbed_cloudformation(monkeypatch)
    stubber.add_client_error(
        "get_template", "ValidationError", "Stack with id hivemind-x does not exist"
    )
    with stubber, pytest.raises(BadInputError) as caught:
        synth_command._deployed_template("hivemind-x", "eu-west-1")
    assert "no deployed stack hivemind-x in eu-west-1" in caught.value.what
    assert caught.value.next_step is not None and "hivemind status" in caught.value.next_step


def test_synth_against_a_deployment_reports_changes_and_cost(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = make_spec("stage-1", "none", False)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec.to_json())
    stubber = _stubbed_cloudformation(monkeypatch)
    stubber.add_response("get_template", {"TemplateBody": json.dumps(DEPLOYED)})
    with stubber:
        report = synth_command.run_synth(
            repo=None,
            spec_file=spec_file,
            overrides=synth_command.Overrides(),
            deployment_id="shop-abcdefghij",
            out_dir=tmp_path / "out",
            live_prices=False,
            use_cache=False,
            progress=lambda _line: None,
        )
    assert report.comparison is not None
    text = report.render()
    assert "Against the deployed stack (monthly cost +" in text
    assert "removed   Db AWS::RDS::DBInstance" in text
    assert "would be replaced or removed: its data would be lost" in text
    changes = report.as_dict()["changes"]
    assert "Db" in changes["data_at_risk"]
    assert changes["monthly_cost_difference_usd"] > 0
