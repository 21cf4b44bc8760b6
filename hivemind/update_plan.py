"""What an update or an upgrade changes, decided before anything runs (pure functions).

* `blue_green_steps`: the three specs of a blue-green swap (standby instances added,
  the listener switched, the old colour gone); `production_steps` the same for an
  upgrade from stage-1, where the serving colour keeps its public subnets meanwhile.
* `kept_release`: the release a `--version` names when the instances still keep it.
* `upgrade_blockers`: what in a change set would interrupt the deployment.
* `runtime_change`: whether a new release needs another language or runtime than the
  instances have (an update cannot give them one: see its docstring).
"""

from __future__ import annotations

import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from hivemind.records import DeploymentState
from hivemind.spec import DeploymentSpec, Provenance
from hivemind.spec import Source as SpecSource

Steps = tuple[DeploymentSpec, DeploymentSpec, DeploymentSpec]


def blue_green_steps(spec: DeploymentSpec, serving: str) -> Steps:
    """The standby colour gets as many instances as serve; then it serves; then the
    colour that served has none."""
    how = Provenance(source=SpecSource.USER, evidence="hivemind update (blue-green)")
    both = spec.with_changes({"compute.standby_count": spec.compute.count}, how)
    switched = both.with_changes({"compute.active_color": other_color(serving)}, how)
    return both, switched, switched.with_changes({"compute.standby_count": 0}, how)


def other_color(color: str) -> str:
    return "green" if color == "blue" else "blue"


def production_steps(spec: DeploymentSpec, serving: str) -> Steps:
    """The three specs of an upgrade from stage-1: production beside the serving colour
    (kept in its public subnets), switched to production, the stage-1 colour gone.

    What the operator chose stays (the instance type and the database class are not
    changed here: changing them would replace or restart what serves); the production
    instance count applies unless a larger one was chosen; SSH from the operator's
    address, which stage-1 detected for itself, is dropped at the end (production is
    reached through the Instance Connect Endpoint)."""
    from hivemind.resolve import PROFILE_DEFAULTS

    how = Provenance(source=SpecSource.USER, evidence="hivemind upgrade --to-production")
    count = max(int(PROFILE_DEFAULTS["production"]["compute.count"]), spec.compute.count)
    both = spec.with_changes(
        {
            "profile": "production",
            "compute.public_color": serving,
            "compute.standby_count": count,
        },
        how,
    )
    switched = both.with_changes(
        {
            "compute.active_color": other_color(serving),
            "compute.count": count,
            "compute.standby_count": spec.compute.count,
        },
        how,
    )
    final: dict[str, object] = {"compute.standby_count": 0, "compute.public_color": None}
    ssh = spec.provenance.get("access.ssh_cidr")
    if spec.access.ssh_cidr and ssh is not None and ssh.source == SpecSource.DETECTED:
        final["access.ssh_cidr"] = None
    return both, switched, switched.with_changes(final, how)


def kept_sizes(spec: DeploymentSpec) -> list[str]:
    """What the upgrade keeps although production's default differs."""
    from hivemind.resolve import PROFILE_DEFAULTS

    defaults = PROFILE_DEFAULTS["production"]
    kept = []
    if spec.compute.instance_type != defaults["compute.instance_type"]:
        kept.append(
            f"the instances stay {spec.compute.instance_type} (production's default is "
            f"{defaults['compute.instance_type']}): another type would replace them"
        )
    if (
        spec.database.engine != "none"
        and spec.database.instance_class != defaults["database.instance_class"]
    ):
        kept.append(
            f"the database stays {spec.database.instance_class} (production's default is "
            f"{defaults['database.instance_class']}): a class change restarts it"
        )
    return kept


# DB instance properties CloudFormation marks "replaces under conditions" that RDS
# modifies in place whatever the new value (its handler has no replacement condition
# for them): a change set shows the DB "Conditional" for these and they are safe.
DB_IN_PLACE_WHEN_CONDITIONAL = frozenset(
    {
        "MultiAZ",
        "BackupRetentionPeriod",
        "AutoMinorVersionUpgrade",
        "DBParameterGroupName",
        "PreferredMaintenanceWindow",
    }
)


def upgrade_blockers(changes: list[dict[str, Any]], serving: set[str]) -> list[str]:
    """Why a change set would interrupt the deployment: a database replaced or removed
    (or CloudFormation not saying), a serving instance replaced or removed.

    A database change CloudFormation calls "Conditional" is safe only when each of its
    details that may recreate it is a static change of a property RDS modifies in
    place (`DB_IN_PLACE_WHEN_CONDITIONAL`); anything else, or no details, blocks."""
    found = []
    for change in changes:
        kind, action = change.get("ResourceType"), change.get("Action")
        name = f"{change.get('LogicalResourceId')} ({kind})"
        replacement = change.get("Replacement")
        if kind == "AWS::RDS::DBInstance" and action in ("Modify", "Remove"):
            if action == "Remove":
                found.append(f"{name} would be deleted")
            elif replacement == "True":
                found.append(f"{name} would be replaced (Replacement: True)")
            elif replacement == "Conditional":
                found += [f"{name} may be replaced: {why}" for why in _db_conditions(change)]
            elif replacement is None:
                found.append(f"{name}: CloudFormation did not say whether it is replaced")
        touched = action == "Remove" or replacement in ("True", "Conditional")
        if kind == "AWS::EC2::Instance" and change.get("PhysicalResourceId") in serving and touched:
            found.append(f"{name}, which serves now, would be replaced or removed")
    return found


def _db_conditions(change: dict[str, Any]) -> list[str]:
    """The details of a "Conditional" DB change that could really replace it."""
    details = change.get("Details") or []
    if not details:
        return ["CloudFormation gave no details of why (Replacement: Conditional)"]
    risky = []
    for detail in details:
        target = detail.get("Target") or {}
        recreation, property_name = target.get("RequiresRecreation"), target.get("Name")
        if recreation in (None, "Never"):
            continue
        if (
            recreation == "Conditionally"
            and property_name in DB_IN_PLACE_WHEN_CONDITIONAL
            and detail.get("Evaluation") == "Static"
        ):
            continue
        risky.append(
            f"{property_name or target.get('Attribute')} changes "
            f"(RequiresRecreation: {recreation}, {detail.get('Evaluation', '?')})"
        )
    return risky


def render_change_set(changes: list[dict[str, Any]]) -> str:
    lines = [f"Change set: {len(changes)} change(s)"]
    for change in changes:
        replacement = change.get("Replacement")
        replaced = f" (replacement: {replacement})" if change.get("Action") == "Modify" else ""
        lines.append(
            f"  {change.get('Action', '?'):<7} {change.get('LogicalResourceId')} "
            f"{change.get('ResourceType')}{replaced}"
        )
    return "\n".join(lines)


def serving_release(state: DeploymentState) -> str:
    """The release in service (records made before the history existed: the packed one)."""
    if state.serving is not None:
        return state.serving.release_id
    assert state.source is not None
    return state.source.release_id


def kept_release(state: DeploymentState, version: str | None) -> str | None:
    """The release `version` names when every serving instance still keeps it: its
    release id, or (at least 7 hex digits of) the commit of a release that served. A
    tag or branch is never taken for a kept release: it may have moved since."""
    if not version or not state.releases:
        return None
    candidates = [version]
    if re.fullmatch(r"[0-9a-f]{7,40}", version):
        candidates += [
            e.release_id for e in reversed(state.history) if (e.commit or "").startswith(version)
        ]
    for release_id in candidates:
        if all(release_id in r.kept_releases for r in state.releases):
            return release_id
    return None


def runtime_change(spec: DeploymentSpec, archive: Path) -> str | None:
    """What the packed release needs that the instances lack (another language, or a
    runtime version the analyzer detects and the spec did not pin), in words; None
    when it runs on what they have. An update cannot change it: the runtime comes from
    the instances' start-up script, which is shared by both colours' launch template,
    so changing it would replace the serving instances too."""
    from hivemind.recon.analyzer import analyze
    from hivemind.recon.source import open_repo

    with tempfile.TemporaryDirectory(prefix="hivemind-release-") as folder:
        with tarfile.open(archive) as packed:
            packed.extractall(folder, filter="data")
        profile = analyze(open_repo(folder))
    language = profile.facts.get("language")
    if language is not None and language.value != spec.app.language:
        return f"it is a {language.value} app; the instances run {spec.app.language}"
    pinned = spec.provenance.get("app.runtime_version")
    runtime = profile.facts.get("runtime_version")
    if runtime is None or (pinned is not None and pinned.source == SpecSource.USER):
        return None
    if str(runtime.value) != spec.app.runtime_version:
        where = f" ({runtime.evidence})" if runtime.evidence else ""
        return (
            f"it asks for {spec.app.language} {runtime.value}{where}; the instances run "
            f"{spec.app.runtime_version}"
        )
    return None
