"""What each runtime needs installed on an Amazon Linux 2023 instance (the package names
are AL2023's, as data with their sources, in `hivemind.al2023`)."""

from __future__ import annotations

from dataclasses import dataclass

from hivemind.al2023 import END_OF_SUPPORT, RUNTIMES

# Versions AL2023's repositories carry, oldest first. Go has one `golang` package.
AVAILABLE: dict[str, tuple[str, ...]] = {
    language: tuple(versions) for language, versions in RUNTIMES.items()
}
_BUILD_TOOLS = ("git", "tar", "gcc", "make")


@dataclass(frozen=True)
class RuntimePackages:
    """The dnf packages for an app's runtime, the version they provide, and a note
    when that is not the version the app asked for."""

    packages: tuple[str, ...]
    provides: str
    note: str = ""


def _wanted(language: str, version: str) -> str:
    parts = version.split(".")
    if language == "java" and parts[0] == "1" and len(parts) > 1:
        return parts[1]  # Java 1.8 is Java 8
    # Python and Ruby are packaged per minor version, the others per major version.
    return ".".join(parts[:2]) if language in ("python", "ruby") else parts[0]


def packages_for(language: str, version: str, *, build_tool: str | None = None) -> RuntimePackages:
    """dnf packages that provide `language` at (or nearest above) `version` on AL2023."""
    if language == "go":
        return RuntimePackages(("golang", *_BUILD_TOOLS), "AL2023's current Go")
    if language not in AVAILABLE:
        raise ValueError(f"no runtime packages for language {language!r}")
    wanted = _wanted(language, version)
    available = AVAILABLE[language]
    key = [tuple(int(p) for p in v.split(".")) for v in available]
    target = tuple(int(p) for p in wanted.split("."))
    # The same version if packaged, else the oldest newer one, else the newest there is.
    chosen = next((v for v, k in zip(available, key, strict=True) if k >= target), available[-1])
    note = (
        ""
        if chosen == wanted
        else (f"{language} {version} is not packaged for Amazon Linux 2023; installing {chosen}")
    )
    ended = END_OF_SUPPORT.get((language, chosen))
    if ended:
        note = (note + "; " if note else "") + (
            f"{language} {chosen}'s security support on Amazon Linux 2023 ended {ended}: "
            "move to a newer version"
        )
    names = RUNTIMES[language][chosen]
    if language == "java" and build_tool == "maven":
        names += ("maven",)
    return RuntimePackages(names + _BUILD_TOOLS, chosen, note)
