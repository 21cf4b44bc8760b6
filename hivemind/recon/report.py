"""The human-readable account of an `AppProfile`, as `hivemind analyze` prints it."""

from __future__ import annotations

from hivemind.cli.render import table
from hivemind.recon.model import AppProfile

# Facts in the order a person reads them.
FACT_ORDER = (
    "name",
    "language",
    "framework",
    "runtime_version",
    "port",
    "health_path",
    "database_engine",
    "database_version",
    "build_command",
    "start_command",
)


def render_profile(profile: AppProfile) -> str:
    commit = f" @ {profile.commit[:12]}" if profile.commit else ""
    lines = [
        f"Repository: {profile.repo}{commit}",
        f"App folder: {profile.app_dir.value}  ({profile.app_dir.note})",
        "",
    ]
    rows = []
    names = [n for n in FACT_ORDER if n in profile.facts]
    names += sorted(set(profile.facts) - set(FACT_ORDER))
    for name in names:
        fact = profile.facts[name]
        evidence = str(fact.evidence) if fact.evidence else "-"
        why = fact.note or (fact.evidence.excerpt if fact.evidence else "")
        detail = f"{evidence}  {why}".strip()
        if fact.alternatives:
            detail += f"  [also: {'; '.join(fact.alternatives)}]"
        rows.append([name.replace("_", " "), str(fact.value), fact.source, detail])
    lines.append(table(["fact", "value", "source", "evidence"], rows))
    if profile.env_vars:
        lines += ["", "Environment variables the app reads:"]
        env_rows = [
            [
                v.name,
                "required" if v.required else "has default",
                ", ".join(str(e) for e in v.evidence[:3]),
            ]
            for v in profile.env_vars
        ]
        lines.append(table(["name", "", "evidence"], env_rows))
    if len(profile.candidates) > 1:
        lines += ["", "Folders that look like apps:"]
        lines += [
            f"  {c.path}: {c.framework or c.language or 'unknown'}" for c in profile.candidates
        ]
    if profile.warnings:
        lines += ["", "Warnings:"] + [f"  ! {w}" for w in profile.warnings]
    return "\n".join(lines)
