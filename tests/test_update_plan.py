"""What an update or upgrade will change, decided before anything runs: the specs of a
blue-green swap, which kept release a --version names, and what in a change set would
interrupt a deployment (so `upgrade` refuses it)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

from harness import EXAMPLES, make_spec, write_tree

from hivemind.records import DeploymentState, InstanceRelease, ReleaseEvent
from hivemind.resolve import spec_for_repo
from hivemind.update_plan import blue_green_steps, kept_release, runtime_change, upgrade_blockers

OLD, NEW = "20261201100000-aaaaaaa", "20261202100000-bbbbbbb"


def test_a_blue_green_swap_adds_the_standby_colour_switches_then_removes_the_old() -> None:
    spec = make_spec("production", "postgres", False)
    both, switched, done = blue_green_steps(spec, "blue")
    assert (both.compute.active_color, both.compute.count, both.compute.standby_count) == (
        "blue", 2, 2,
    )  # fmt: skip
    assert (switched.compute.active_color, switched.compute.standby_count) == ("green", 2)
    assert (done.compute.active_color, done.compute.standby_count) == ("green", 0)
    assert done.database == spec.database and done.app == spec.app
    assert done.provenance["compute.active_color"].evidence == "hivemind update (blue-green)"


def state(kept: list[str]) -> DeploymentState:
    return DeploymentState(
        deployment_id="shop-abcdefghij",
        app="shop",
        region="us-east-1",
        profile="production",
        stack_name="hivemind-shop-abcdefghij",
        releases=[
            InstanceRelease(instance_id=f"i-{n}", address="", release_id=NEW, kept_releases=kept)
            for n in (1, 2)
        ],
        history=[
            ReleaseEvent(release_id=OLD, commit="a" * 40, how="deploy"),
            ReleaseEvent(release_id=NEW, commit="b" * 40, version="main", how="rolling"),
        ],
    )


def test_a_version_names_a_kept_release_by_its_id_or_commit_never_by_branch() -> None:
    kept = state([OLD, NEW])
    assert kept_release(kept, OLD) == OLD
    assert kept_release(kept, "aaaaaaa") == OLD  # seven digits of its commit
    assert kept_release(kept, "main") is None  # a branch may have moved: pack it again
    assert kept_release(kept, None) is None
    assert kept_release(state([NEW]), OLD) is None  # gone from the instances


def change(kind: str, action: str, replacement: str | None, physical: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {"ResourceType": kind, "Action": action, "LogicalResourceId": "X"}
    if replacement is not None:
        found["Replacement"] = replacement
    if physical:
        found["PhysicalResourceId"] = physical
    return found


def detail(name: str, recreation: str, evaluation: str = "Static") -> dict[str, Any]:
    return {
        "Target": {"Attribute": "Properties", "Name": name, "RequiresRecreation": recreation},
        "Evaluation": evaluation,
        "ChangeSource": "DirectModification",
    }


def test_an_upgrade_refuses_to_replace_the_database_or_the_serving_instance() -> None:
    db = "AWS::RDS::DBInstance"
    assert upgrade_blockers([change(db, "Modify", "False")], set()) == []
    assert upgrade_blockers([change(db, "Add", None)], set()) == []  # the read replica
    (why,) = upgrade_blockers([change(db, "Modify", "True")], set())
    assert "would be replaced" in why
    # "Conditional" is safe only for static changes of what RDS modifies in place.
    (why,) = upgrade_blockers([change(db, "Modify", "Conditional")], set())
    assert "no details" in why
    multi_az = detail("MultiAZ", "Conditionally", "Static")
    safe = {**change(db, "Modify", "Conditional"), "Details": [multi_az, detail("X", "Never")]}
    assert upgrade_blockers([safe], set()) == []
    engine = {**safe, "Details": [multi_az, detail("Engine", "Conditionally", "Static")]}
    (why,) = upgrade_blockers([engine], set())
    assert "Engine changes (RequiresRecreation: Conditionally, Static)" in why
    dynamic = {**safe, "Details": [detail("MultiAZ", "Conditionally", "Dynamic")]}
    assert len(upgrade_blockers([dynamic], set())) == 1
    (why,) = upgrade_blockers([change(db, "Modify", None)], set())
    assert "did not say" in why  # unknown is not taken for "no"
    (why,) = upgrade_blockers([change(db, "Remove", None)], set())
    assert "deleted" in why
    serving = {"i-1"}
    instance = "AWS::EC2::Instance"
    assert upgrade_blockers([change(instance, "Modify", "True", "i-2")], serving) == []
    (why,) = upgrade_blockers([change(instance, "Modify", "True", "i-1")], serving)
    assert "serves now" in why


def packed(tmp_path: Path, files: dict[str, str]) -> Path:
    """A release archive of these files, as package_source makes one."""
    tree = write_tree(tmp_path / "tree", files)
    archive = tmp_path / "release.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        for path in sorted(tree.rglob("*")):
            out.add(path, arcname=str(path.relative_to(tree)))
    return archive


def test_a_release_needing_another_runtime_or_language_is_named(tmp_path: Path) -> None:
    _, spec = spec_for_repo(str(EXAMPLES / "flask-notes"))
    app = {name: (EXAMPLES / "flask-notes" / name).read_text() for name in ("app.py", "Procfile")}
    app["requirements.txt"] = "flask\n"
    assert runtime_change(spec, packed(tmp_path / "same", app)) is None
    newer = runtime_change(spec, packed(tmp_path / "newer", {**app, ".python-version": "3.13\n"}))
    assert newer == (
        f"it asks for python 3.13 (.python-version:1); the instances run {spec.app.runtime_version}"
    )
    node = {"package.json": '{"name": "x", "scripts": {"start": "node index.js"}}', "index.js": ""}
    assert runtime_change(spec, packed(tmp_path / "node", node)) == (
        "it is a node app; the instances run python"
    )
