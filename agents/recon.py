"""Recon: fills what the analyzer left unknown, from the repo's own words.

The analyzer (`hivemind.recon`) reads code and manifests by rule. What it cannot
conclude (how to start the app, its port, its health path, variables only the README
mentions) a model may find in the README, docs or config, and propose, each with the
file and the exact text it read. `check` opens that file: a proposal whose quote is
not there, or whose value is not in its quote, is dropped and logged. Kept proposals
become facts with source `llm`, so the spec shows them as the model's, with the
evidence, and anything the user states still wins.

Without a model Recon proposes nothing: the analyzer's findings stand as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind.recon.model import AppProfile, EnvVar, Evidence, Fact
from hivemind.spec import ENV_VAR_PATTERN

from .base import Agent

Field_ = Literal["start_command", "port", "health_path", "env_var"]
# What a model may read: text files under this size, and this many lines at a time.
READ_LIMIT_BYTES = 200_000
READ_LINES = 200
SKIPPED_DIRS = frozenset(
    {".git", "node_modules", ".venv", "venv", "__pycache__", "target", "build", "dist", "vendor"}
)


class ReconInput(BaseModel):
    """The app's folder and what the analyzer concluded about it."""

    model_config = ConfigDict(frozen=True)

    root: Path
    profile: AppProfile

    def unknown(self) -> list[Field_]:
        """The fields the analyzer could not conclude (missing, or only a default)."""
        missing: list[Field_] = []
        for name in ("start_command", "port", "health_path"):
            fact = self.profile.facts.get(name)
            if fact is None or fact.value is None or fact.source == "default":
                missing.append(name)
        return [*missing, "env_var"]


class Proposal(BaseModel):
    field: Field_ = Field(description="which setting this is a value for")
    value: str = Field(description="the value: a command, a port number, a path, or a name")
    file: str = Field(description="the file it comes from, relative to the app's folder")
    quote: str = Field(description="the exact text of the file that shows it (one line)")
    reason: str = Field(description="why this text means this value, in a few words")


class ReconProposals(BaseModel):
    """Values for the settings the analyzer left unknown, each with its evidence."""

    proposals: list[Proposal] = Field(default_factory=list)


class Recon(Agent[ReconInput, ReconProposals]):
    name = "recon"
    output = ReconProposals
    prompt = """
You are Recon, the part of HiveMind that reads an application's repository before it is
deployed to AWS (EC2 instances behind a load balancer, started as a systemd service).
HiveMind's analyzer has already read the code and manifests by rule; you are told what
it concluded and which settings it could not work out. Read the README, docs and
config files with your tools and propose values only for those unknown settings:
- start_command: the shell command that starts the web server in production
  (it runs from the app's folder with $PORT set);
- port: the TCP port the server listens on when none is given;
- health_path: an HTTP path that answers 200 when the app is up (e.g. /health);
- env_var: the name of an environment variable the app needs and that the operator
  must provide (documented in the README or an example env file).
For each proposal give the file, the one line you read it from, copied exactly, and
the value, which must appear in that line. Propose nothing you did not read.
"""

    def __init__(self, log: Callable[[str], None] = lambda _line: None) -> None:
        self.log = log

    def describe(self, inputs: ReconInput) -> str:
        profile = inputs.profile
        known = "\n".join(
            f"- {name}: {fact.value!r} ({fact.evidence or fact.source})"
            for name, fact in sorted(profile.facts.items())
        )
        env = ", ".join(v.name for v in profile.env_vars) or "none"
        return (
            f"The analyzer concluded:\n{known or '- nothing'}\n"
            f"Environment variables already found: {env}\n"
            f"Unknown settings to look for: {', '.join(inputs.unknown())}\n"
            f"Files in the app's folder:\n{_list_files(inputs.root, '*')}"
        )

    def fallback(self, inputs: ReconInput) -> ReconProposals:
        return ReconProposals()

    def tools(self, inputs: ReconInput) -> list[Callable[..., str]]:
        root = inputs.root

        def list_files(pattern: str = "*") -> str:
            """List the app's files whose path matches a glob pattern, e.g. '*.md'."""
            return _list_files(root, pattern)

        def read_file(path: str, first_line: int = 1) -> str:
            """Read up to 200 lines of a text file of the app, from first_line (1-based)."""
            text = _read(root, path)
            if text is None:
                return f"error: {path} is not a readable text file of the app"
            lines = text.splitlines()[max(first_line, 1) - 1 :][:READ_LINES]
            return "\n".join(f"{first_line + i}: {line}" for i, line in enumerate(lines))

        def search(text: str) -> str:
            """Find lines containing a text (case-insensitive) in the app's files."""
            hits = []
            for relative in _files(root):
                content = _read(root, relative) or ""
                for number, line in enumerate(content.splitlines(), 1):
                    if text.lower() in line.lower():
                        hits.append(f"{relative}:{number}: {line.strip()[:200]}")
                        if len(hits) >= 50:
                            return "\n".join(hits)
            return "\n".join(hits) or f"no line contains {text!r}"

        return [list_files, read_file, search]

    def check(self, inputs: ReconInput, proposal: ReconProposals) -> ReconProposals:
        unknown = set(inputs.unknown())
        known_env = {v.name for v in inputs.profile.env_vars}
        kept: list[Proposal] = []
        for item in proposal.proposals:
            problem = _problem(inputs.root, item, unknown, known_env)
            if problem:
                self.log(f"recon: dropped the proposal {item.field}={item.value!r}: {problem}")
                continue
            kept.append(item)
            if item.field == "env_var":
                known_env.add(item.value)
            else:
                unknown.discard(item.field)
        return ReconProposals(proposals=kept)


def apply_proposals(
    profile: AppProfile, root: Path, proposals: ReconProposals, model: str
) -> AppProfile:
    """The profile with checked proposals added as facts (source `llm`) and env vars."""
    facts = dict(profile.facts)
    env_vars = list(profile.env_vars)
    for item in proposals.proposals:
        evidence = Evidence(
            file=item.file, line=_line_of(root, item.file, item.quote), excerpt=item.quote.strip()
        )
        if item.field == "env_var":
            env_vars.append(EnvVar(name=item.value, required=True, evidence=[evidence]))
            continue
        value: str | int = int(item.value) if item.field == "port" else item.value
        facts[item.field] = Fact(
            value=value, source="llm", evidence=evidence, note=f"{model}: {item.reason}"
        )
    return profile.model_copy(update={"facts": facts, "env_vars": env_vars})


def _problem(root: Path, item: Proposal, unknown: set[Field_], known_env: set[str]) -> str:
    """Why a proposal cannot be used, or "" when it can."""
    if item.field not in unknown:
        return f"the analyzer already knows {item.field}"
    if item.field == "env_var" and item.value in known_env:
        return f"{item.value} is already known"
    text = _read(root, item.file)
    if text is None:
        return f"{item.file} is not a text file of the app"
    quote = _normalized(item.quote)
    if len(quote) < 3 or quote not in _normalized(text):
        return f"the quoted text is not in {item.file}"
    value = item.value.strip()
    if not value or value not in item.quote:
        return "the value is not in the quoted text"
    if item.field == "port" and not (value.isdigit() and 1 <= int(value) <= 65535):
        return "a port is a number from 1 to 65535"
    if item.field == "health_path" and not re.fullmatch(r"/[^\s]*", value):
        return "a health path starts with / and has no spaces"
    if item.field == "env_var" and not re.fullmatch(ENV_VAR_PATTERN, value):
        return "not an environment variable name"
    if item.field == "start_command" and "\n" in value:
        return "a start command is one line"
    return ""


def _normalized(text: str) -> str:
    return " ".join(text.split())


def _line_of(root: Path, relative: str, quote: str) -> int | None:
    wanted = _normalized(quote)
    for number, line in enumerate((_read(root, relative) or "").splitlines(), 1):
        if wanted in _normalized(line):
            return number
    return None


def _files(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in SKIPPED_DIRS for part in relative.parts[:-1]) or not path.is_file():
            continue
        found.append(relative.as_posix())
        if len(found) >= 500:
            break
    return found


def _list_files(root: Path, pattern: str) -> str:
    matched = [f for f in _files(root) if Path(f).match(pattern)]
    return "\n".join(matched) or f"no file matches {pattern!r}"


def _read(root: Path, relative: str) -> str | None:
    """A text file inside the app's folder, or None (outside it, missing, binary, huge)."""
    try:
        path = (root / relative).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            return None
        if path.stat().st_size > READ_LIMIT_BYTES:
            return None
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")
