"""What each runtime needs installed on an Amazon Linux 2023 instance: one table."""

from __future__ import annotations

from dataclasses import dataclass

# Versions AL2023's package repositories carry, per language, and how each is named.
_AVAILABLE: dict[str, tuple[str, ...]] = {
    "node": ("18", "20", "22"),
    "python": ("3.9", "3.11", "3.12", "3.13"),
    "java": ("8", "11", "17", "21"),
    "ruby": ("3.2",),
    "go": ("",),  # one `golang` package, kept current by AL2023
}
_BUILD_TOOLS = ("git", "tar", "gcc", "make")


@dataclass(frozen=True)
class RuntimePackages:
    """The dnf packages for an app's runtime, and the version they provide."""

    packages: tuple[str, ...]
    provides: str  # the version installed, which may differ from the one asked for
    note: str = ""


def _pick(language: str, wanted: str) -> str:
    available = _AVAILABLE[language]
    if language == "go":
        return ""
    parts = wanted.split(".")
    # Same major (and minor, for Python) if AL2023 has it, else the newest it has.
    key = ".".join(parts[:2]) if language == "python" else parts[0]
    return key if key in available else available[-1]


def packages_for(language: str, version: str, *, build_tool: str | None = None) -> RuntimePackages:
    """dnf packages that provide `language` at (or nearest to) `version` on AL2023."""
    chosen = _pick(language, version)
    note = (
        ""
        if chosen in ("", version.split(".")[0], ".".join(version.split(".")[:2]))
        else (f"{language} {version} is not packaged for Amazon Linux 2023; using {chosen}")
    )
    if language == "node":
        names: tuple[str, ...] = (f"nodejs{chosen}", f"nodejs{chosen}-npm")
    elif language == "python":
        names = (f"python{chosen}", f"python{chosen}-pip", f"python{chosen}-devel")
    elif language == "java":
        names = (f"java-{chosen}-amazon-corretto-headless", f"java-{chosen}-amazon-corretto-devel")
        if build_tool == "maven":
            names += ("maven",)
    elif language == "ruby":
        names = (f"ruby{chosen}", f"ruby{chosen}-devel", f"ruby{chosen}-rubygem-bundler")
    elif language == "go":
        names = ("golang",)
        chosen = "current"
    else:
        raise ValueError(f"no runtime packages for language {language!r}")
    return RuntimePackages(names + _BUILD_TOOLS, chosen, note)
