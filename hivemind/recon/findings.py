"""Collecting signals and choosing, per fact, the one from the strongest kind of source."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hivemind.recon.model import EnvVar, Evidence, Fact, FactValue

# For each fact, the kinds of signal in order of trust; the first kind present wins,
# and within a kind the first signal found. Facts not listed: the first signal wins.
SOURCE_ORDER: dict[str, tuple[str, ...]] = {
    "port": ("code", "config", "env-example", "dockerfile", "procfile", "default"),
    "runtime_version": ("pin-file", "manifest", "dockerfile", "default"),
    "database_engine": ("config", "driver", "env-example", "compose", "default"),
    "database_version": ("compose", "config"),
    "start_command": ("procfile", "stack", "dockerfile"),
    "health_path": ("code", "config", "default"),
}

HEALTH_PATHS = (
    "/health",
    "/healthz",
    "/healthcheck",
    "/up",
    "/actuator/health",
    "/api/health",
    "/livez",
    "/readyz",
    "/ping",
)


@dataclass
class _Signal:
    value: FactValue
    source: str
    evidence: Evidence | None
    note: str
    order: int


@dataclass
class _EnvRead:
    required: bool
    evidence: list[Evidence] = field(default_factory=list)


class Findings:
    """Signals for the facts of one app folder."""

    def __init__(self) -> None:
        self._signals: dict[str, list[_Signal]] = {}
        self._env: dict[str, _EnvRead] = {}
        self.warnings: list[str] = []
        self._count = 0

    def add(
        self,
        fact: str,
        value: FactValue,
        source: str,
        evidence: Evidence | None = None,
        note: str = "",
    ) -> None:
        if value is None:
            return
        order = SOURCE_ORDER.get(fact)
        if order is not None and source not in order:
            raise ValueError(f"unknown source {source!r} for fact {fact!r}")
        self._count += 1
        self._signals.setdefault(fact, []).append(
            _Signal(value, source, evidence, note, self._count)
        )

    def has(self, fact: str) -> bool:
        return fact in self._signals

    def env(self, name: str, *, required: bool, evidence: Evidence) -> None:
        """Record a read of (or a documented) environment variable. A default anywhere
        makes it optional."""
        seen = self._env.get(name)
        if seen is None:
            self._env[name] = _EnvRead(required, [evidence])
        else:
            seen.required = seen.required and required
            if len(seen.evidence) < 5 and evidence not in seen.evidence:
                seen.evidence.append(evidence)

    def best(self, fact: str) -> Fact | None:
        signals = self._signals.get(fact)
        if not signals:
            return None
        order = SOURCE_ORDER.get(fact, ())

        def rank(s: _Signal) -> tuple[int, int]:
            return (order.index(s.source) if s.source in order else 0, s.order)

        ranked = sorted(signals, key=rank)
        chosen = ranked[0]
        others: list[str] = []
        for s in ranked[1:]:
            text = f"{s.value} ({s.source}{f', {s.evidence}' if s.evidence else ''})"
            if s.value != chosen.value and text not in others:
                others.append(text)
        return Fact(
            value=chosen.value,
            source=chosen.source,
            evidence=chosen.evidence,
            note=chosen.note,
            alternatives=others[:4],
        )

    def facts(self) -> dict[str, Fact]:
        out: dict[str, Fact] = {}
        for name in self._signals:
            fact = self.best(name)
            if fact is not None:
                out[name] = fact
        return out

    def env_vars(self) -> list[EnvVar]:
        return [
            EnvVar(name=name, required=read.required, evidence=read.evidence)
            for name, read in sorted(self._env.items())
        ]


_VERSION = re.compile(r"\d+(?:\.\d+){0,2}")


def normalize_version(raw: str) -> str | None:
    """'v20.11.1' -> '20.11.1', '>=3.10' -> '3.10', 'python-3.11.4' -> '3.11.4'."""
    text = raw.strip().strip("'\"")
    if not text or text.startswith(("lts/", "node", "system", "latest", "pypy")):
        return None
    match = _VERSION.search(text)
    if match is None:
        return None
    return match.group(0)


def slugify(name: str) -> str:
    """A name usable as an app slug: lowercase letters, digits, dashes; 2-24 chars."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower().rsplit("/", 1)[-1]).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"app-{slug}".strip("-")
    slug = slug[:24].rstrip("-")
    return slug if len(slug) >= 2 else f"{slug}-app"
