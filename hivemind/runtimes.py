"""What each runtime needs installed on an Amazon Linux 2023 instance: one table."""

from __future__ import annotations

from dataclasses import dataclass

# Versions AL2023's repositories carry, oldest first. Go has one `golang` package.
AVAILABLE: dict[str, tuple[str, ...]] = {
    "node": ("18", "20", "22"),
    "python": ("3.9", "3.11", "3.12", "3.13"),
    "java": ("8", "11", "17", "21"),
    "ruby": ("3.2",),
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
    # Python is packaged per minor version, the others per major version.
    return ".".join(parts[:2]) if language == "python" else parts[0]


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
    names: tuple[str, ...]
    if language == "node":
        names = (f"nodejs{chosen}", f"nodejs{chosen}-npm")
    elif language == "python":
        names = (f"python{chosen}", f"python{chosen}-pip", f"python{chosen}-devel")
    elif language == "java":
        names = (f"java-{chosen}-amazon-corretto-headless", f"java-{chosen}-amazon-corretto-devel")
        if build_tool == "maven":
            names += ("maven",)
    else:
        names = (f"ruby{chosen}", f"ruby{chosen}-devel", f"ruby{chosen}-rubygem-bundler")
    return RuntimePackages(names + _BUILD_TOOLS, chosen, note)
