"""`hivemind.aws`: clients share what botocore parsed, never what the environment says."""

from __future__ import annotations

import pytest

from hivemind import aws


def test_clients_share_parsed_models_but_read_the_environment_each_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4001")
    first = aws.client("sts", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.2:4002")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-key")
    second = aws.client("sts", "eu-west-1")

    assert first._loader is second._loader  # botocore's JSON parsed once per process
    assert first.meta.endpoint_url == "http://127.0.0.1:4001"
    assert second.meta.endpoint_url == "http://127.0.0.2:4002"
    assert (first.meta.region_name, second.meta.region_name) == ("us-east-1", "eu-west-1")
    assert first._request_signer._credentials.access_key == "testing"
    assert second._request_signer._credentials.access_key == "another-key"
