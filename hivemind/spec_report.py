"""The human-readable account of a `DeploymentSpec`, each field with its provenance."""

from __future__ import annotations

from hivemind.cli.render import table
from hivemind.spec import DeploymentSpec, field_paths


def _value(spec: DeploymentSpec, path: str) -> object:
    node: object = spec
    for part in path.split("."):
        node = getattr(node, part)
    return node


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple | list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def render_spec(spec: DeploymentSpec) -> str:
    rows = []
    for path in field_paths():
        provenance = spec.provenance.get(path)
        source = provenance.source.value if provenance else "?"
        why = " ".join(filter(None, [provenance.evidence, provenance.note])) if provenance else ""
        rows.append([path, _show(_value(spec, path)), source, why])
    lines = [
        f"Deployment spec (schema v{spec.schema_version}) for {spec.app.name}",
        "",
        table(["field", "value", "source", "why"], rows),
    ]
    if spec.notes:
        lines += ["", "Notes:"] + [f"  ! {note}" for note in spec.notes]
    return "\n".join(lines)
