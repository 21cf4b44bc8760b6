"""Every test runs offline: fake AWS credentials, no instance metadata, and
HiveMind's state under a temporary folder. The longest modules are collected first, so
that run side by side (`scripts/test`: pytest-xdist, a module per worker) they start at
once instead of last."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The order modules are handed to workers (`scripts/test` runs pytest-xdist with
# `--dist loadfile --no-loadscope-reorder`: whole modules, in collection order). xdist
# gives each worker one module, then a second to any worker with two tests or fewer left:
# so the day-2 test (one test, ~11 min) is followed on its worker by a short module, not
# by another long one, and the other long modules start on the other workers at once.
# Every other module keeps its place after these, and each module its order of tests.
SCHEDULED_FIRST = (
    "test_day2.py",
    "test_medic_sandbox.py",
    "test_lifecycle.py",
    "test_timing.py",  # the day-2 worker's second module: quick
    "test_onbox_deploy.py",
    "test_ops_e2e.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SCHEDULED_FIRST.index(name) if name in SCHEDULED_FIRST else len(SCHEDULED_FIRST)

    items.sort(key=rank)  # stable: the order within each rank stays as collected


@pytest.fixture(autouse=True)
def offline_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HIVEMIND_HOME", str(tmp_path / "hivemind-home"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in list(os.environ):
        if name.startswith("HIVEMIND_") and name not in ("HIVEMIND_HOME", "HIVEMIND_CACHE_DIR"):
            monkeypatch.delenv(name)
    yield
