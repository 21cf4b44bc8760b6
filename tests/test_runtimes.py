"""Which packages give an app its runtime on Amazon Linux 2023."""

from __future__ import annotations

import pytest

from hivemind.runtimes import packages_for


@pytest.mark.parametrize(
    ("language", "version", "first_package", "provides", "noted"),
    [
        ("node", "20", "nodejs20", "20", False),
        ("node", "20.11.1", "nodejs20", "20", False),
        ("node", "19", "nodejs20", "20", True),  # the next packaged major
        ("node", "24", "nodejs22", "22", True),  # newer than any package: the newest
        ("python", "3.12.3", "python3.12", "3.12", False),
        ("python", "3.10", "python3.11", "3.11", True),
        ("java", "17", "java-17-amazon-corretto-headless", "17", False),
        ("ruby", "3.3.0", "ruby3.2", "3.2", True),
        ("go", "1.22", "golang", "AL2023's current Go", False),
    ],
)
def test_packages_for_each_runtime(
    language: str, version: str, first_package: str, provides: str, noted: bool
) -> None:
    runtime = packages_for(language, version)
    assert runtime.packages[0] == first_package
    assert runtime.provides == provides
    assert "git" in runtime.packages
    assert bool(runtime.note) is noted


def test_maven_builds_get_maven() -> None:
    assert "maven" in packages_for("java", "21", build_tool="maven").packages
    assert "maven" not in packages_for("java", "21").packages


def test_an_unknown_language_is_an_error() -> None:
    with pytest.raises(ValueError, match="cobol"):
        packages_for("cobol", "85")
