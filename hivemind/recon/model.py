"""What Recon found: facts, each with the evidence that supports it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

FactValue = str | int | bool | None


class Evidence(BaseModel):
    """A place in the repository: file (relative, POSIX), line, and the line's text."""

    model_config = ConfigDict(frozen=True)

    file: str
    line: int | None = None
    excerpt: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class Fact(BaseModel):
    """One conclusion about the app and why: the evidence, the kind of signal, a note."""

    model_config = ConfigDict(frozen=True)

    value: FactValue
    source: str = Field(description="the kind of signal, e.g. code, config, manifest, default")
    evidence: Evidence | None = None
    note: str = ""
    alternatives: list[str] = Field(
        default_factory=list, description="other values weaker signals pointed to"
    )


class EnvVar(BaseModel):
    """An environment variable the app reads or documents."""

    model_config = ConfigDict(frozen=True)

    name: str
    required: bool = Field(description="read with no default anywhere")
    evidence: list[Evidence] = Field(default_factory=list)


class Candidate(BaseModel):
    """A folder that looks like an app of its own."""

    model_config = ConfigDict(frozen=True)

    path: str
    language: str | None
    framework: str | None


class AppProfile(BaseModel):
    """Everything Recon concluded about one repository's app."""

    repo: str = Field(description="what the user pointed at: a path or a git URL")
    commit: str | None = None
    app_dir: Fact
    candidates: list[Candidate] = Field(default_factory=list)
    facts: dict[str, Fact] = Field(default_factory=dict)
    env_vars: list[EnvVar] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def value(self, name: str) -> FactValue:
        fact = self.facts.get(name)
        return fact.value if fact else None
