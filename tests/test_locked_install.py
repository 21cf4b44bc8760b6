"""What `scripts/bootstrap` installs is exactly uv.lock: every package the lock names for
this Python and platform, at its locked version, and nothing else; the pins that live
beside the lock (uv's own, the build's setuptools and wheel) agree with it."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness import REPO_ROOT
from packaging.markers import Marker

LOCK = REPO_ROOT / "uv.lock"
PYPROJECT = REPO_ROOT / "pyproject.toml"
PROJECT = "hivemind-deploy"
EXTRAS = ("dev",)  # what scripts/bootstrap syncs: `uv sync --locked --extra dev`


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_packages() -> list[dict[str, Any]]:
    return list(tomllib.loads(LOCK.read_text(encoding="utf-8"))["package"])


def wanted_here(packages: list[dict[str, Any]]) -> dict[str, str]:
    """The packages (name -> version) the lock installs on this interpreter: the project
    with its dev extra, then every dependency whose marker holds here, transitively."""
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for package in packages:
        by_name[normalized(package["name"])].append(package)

    def holds(dependency: dict[str, Any], extra: str | None) -> bool:
        marker = dependency.get("marker")
        return marker is None or Marker(marker).evaluate({"extra": extra or ""})

    def entry(dependency: dict[str, Any]) -> dict[str, Any]:
        candidates = by_name[normalized(dependency["name"])]
        if "version" in dependency:
            candidates = [c for c in candidates if c["version"] == dependency["version"]]
        assert len(candidates) == 1, f"uv.lock: which {dependency['name']}? {candidates}"
        return candidates[0]

    wanted: dict[str, str] = {}
    seen: set[tuple[str, str, str | None]] = set()
    todo: list[tuple[dict[str, Any], str | None]] = [(by_name[PROJECT][0], None)]
    todo += [(by_name[PROJECT][0], extra) for extra in EXTRAS]
    while todo:
        package, extra = todo.pop()
        key = (normalized(package["name"]), package.get("version", ""), extra)
        if key in seen:
            continue
        seen.add(key)
        if package["name"] != PROJECT:
            wanted[normalized(package["name"])] = package["version"]
        edges = (
            package.get("dependencies", [])
            if extra is None
            else package.get("optional-dependencies", {}).get(extra, [])
        )
        for dependency in edges:
            if not holds(dependency, extra):
                continue
            target = entry(dependency)
            todo.append((target, None))
            todo += [(target, wanted_extra) for wanted_extra in dependency.get("extra", [])]
    return wanted


def installed_here() -> dict[str, str]:
    found: dict[str, str] = {}
    for distribution in importlib.metadata.distributions(path=sys.path):
        found.setdefault(normalized(distribution.metadata["Name"]), distribution.version)
    found.pop(PROJECT, None)
    return found


def test_the_environment_holds_exactly_what_uv_lock_pins() -> None:
    wanted = wanted_here(locked_packages())
    installed = installed_here()
    wrong = {
        name: f"installed {installed[name]}, locked {version}"
        for name, version in wanted.items()
        if name in installed and installed[name] != version
    }
    missing = sorted(set(wanted) - set(installed))
    extra = sorted(set(installed) - set(wanted))
    assert not wrong and not missing and not extra, (
        f"this environment is not uv.lock: versions {wrong}, missing {missing}, not in the "
        f"lock {extra}; run ./scripts/bootstrap (it installs the lock with uv sync --locked)"
    )
    assert {"moto", "aws-cdk-lib", "boto3", "cfn-lint", "pytest"} <= set(wanted)


def test_the_pins_beside_the_lock_agree_with_it() -> None:
    pyproject = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    uv_settings = pyproject["tool"]["uv"]
    versions: dict[str, set[str]] = defaultdict(set)
    for package in locked_packages():
        versions[normalized(package["name"])].add(package["version"])
    # The project's own build (its editable install) uses the lock's setuptools and wheel.
    for pin in uv_settings["build-constraint-dependencies"]:
        name, version = pin.split("==")
        assert versions[normalized(name)] == {version}, (
            f"[tool.uv] build-constraint-dependencies pins {pin}, uv.lock has "
            f"{sorted(versions[normalized(name)])}: scripts/update-deps keeps them in step"
        )
    # The uv that scripts/bootstrap installs is the one the lock was written by.
    requirements = (REPO_ROOT / "scripts" / "uv-requirements.txt").read_text(encoding="utf-8")
    pinned_uv = re.search(r"^uv==([0-9.]+)", requirements, re.MULTILINE)
    assert pinned_uv is not None
    assert uv_settings["required-version"] == f"=={pinned_uv.group(1)}"
    assert requirements.count("--hash=sha256:") >= 2  # every platform's wheel, hash-checked


def test_the_sandbox_mirror_holds_the_locked_versions_of_the_examples_packages() -> None:
    from hivemind.sandbox import mirror

    wheels = sorted(mirror.wheelhouse().glob("*.whl"))
    assert wheels, f"no wheels in {mirror.wheelhouse()}: run ./scripts/bootstrap"
    locked: dict[str, set[str]] = defaultdict(set)
    for package in locked_packages():
        locked[normalized(package["name"])].add(package["version"])
    names = set()
    for wheel in wheels:
        name, wheel_version = wheel.name.split("-")[:2]
        names.add(normalized(name))
        assert wheel_version in locked[normalized(name)], (
            f"the mirror's {wheel.name} is not uv.lock's {name} "
            f"({sorted(locked[normalized(name)])}): run ./scripts/bootstrap"
        )
    assert {"flask", "gunicorn", "psycopg", "fastapi", "uvicorn", "pymysql"} <= names


def test_where_two_packages_ship_the_same_file_the_intended_one_is_on_disk() -> None:
    """aws-cdk-lib and aws-cdk.cloud-assembly-schema both ship
    aws_cdk/cloud_assembly_schema/__init__.py (aws/aws-cdk#38482): the installer's
    unpacking order decides which lands, and only aws-cdk-lib's lets jsii accept
    aws-cdk-lib's structs. scripts/bootstrap reinstalls aws-cdk-lib last; any other file
    two packages ship is a new clash to look at."""
    import base64
    import hashlib

    owners: dict[str, dict[str, str]] = defaultdict(dict)  # path -> {package: sha256}
    for distribution in importlib.metadata.distributions(path=sys.path):
        # Read once: `metadata` parses the METADATA file again at every access (18 s when
        # it was read for each of the 25,000 files).
        name = normalized(distribution.metadata["Name"])
        for file in distribution.files or []:
            if file.hash is not None and file.hash.mode == "sha256":
                owners[str(file)][name] = file.hash.value
    clashes = {path: hashes for path, hashes in owners.items() if len(hashes) > 1}
    schema = "aws_cdk/cloud_assembly_schema/__init__.py"
    assert set(clashes) == {schema}, f"files two installed packages both ship: {clashes}"
    located = importlib.metadata.distribution("aws-cdk-lib").locate_file(schema)
    on_disk = base64.urlsafe_b64encode(hashlib.sha256(Path(located).read_bytes()).digest())
    assert on_disk.decode().rstrip("=") == clashes[schema]["aws-cdk-lib"].rstrip("="), (
        f"{schema} is aws-cdk.cloud-assembly-schema's, not aws-cdk-lib's: run ./scripts/bootstrap"
    )
