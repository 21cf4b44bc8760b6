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
        ("node", "24", "nodejs24", "24", False),
        ("node", "26", "nodejs24", "24", True),  # newer than any package: the newest
        # Node 18 was never namespaced on AL2023, and its support has ended: a note.
        ("node", "18", "nodejs", "18", True),
        ("python", "3.12.3", "python3.12", "3.12", False),
        ("python", "3.10", "python3.11", "3.11", True),
        ("python", "3.14", "python3.14", "3.14", False),
        ("python", "3.9", "python3", "3.9", False),  # the system Python is `python3`
        ("java", "17", "java-17-amazon-corretto-headless", "17", False),
        ("java", "8", "java-1.8.0-amazon-corretto", "8", False),  # no headless for 8
        ("java", "1.8", "java-1.8.0-amazon-corretto", "8", False),
        ("java", "25", "java-25-amazon-corretto-headless", "25", False),
        ("ruby", "3.3.0", "ruby3.4", "3.4", True),  # AL2023 has no Ruby 3.3
        ("ruby", "3.2", "ruby3.2", "3.2", False),
        ("ruby", "4.0.1", "ruby4.0", "4.0", False),
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


def test_every_package_a_runtime_can_need_is_one_al2023_carries() -> None:
    # The names are AL2023's (hivemind.al2023, with its sources); a name outside them
    # (nodejs18, java-8-amazon-corretto-headless) stops the user data at its dnf line.
    from hivemind.al2023 import PACKAGES, RUNTIMES

    for language, versions in RUNTIMES.items():
        for version in versions:
            for tool in (None, "maven"):
                needed = packages_for(language, version, build_tool=tool).packages
                assert set(needed) <= PACKAGES, (language, version, set(needed) - PACKAGES)
    assert set(packages_for("go", "1.22").packages) <= PACKAGES
    for wrong in ("nodejs18", "nodejs18-npm", "java-8-amazon-corretto-headless", "ruby3.3"):
        assert wrong not in PACKAGES
