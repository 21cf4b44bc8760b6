"""The files of a repository as Recon sees them.

Walks the tree once, never descending into dependency, vendored, build or
virtualenv folders nor into anything a `.gitignore` excludes, and reads text
files lazily (size-capped, binary files skipped). Nothing in the repo runs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import pathspec

from hivemind.recon.model import Evidence

# Folders that hold dependencies, build output or tool caches, never app source.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "bower_components",
        "jspm_packages",
        ".venv",
        "venv",
        "__pycache__",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "site-packages",
        "vendor",
        ".bundle",
        ".gradle",
        ".idea",
        ".vscode",
        "target",
        ".next",
        ".nuxt",
        ".svelte-kit",
        ".cache",
        ".terraform",
        "cdk.out",
        ".serverless",
        ".aws-sam",
        "coverage",
        ".yarn",
        ".pnpm-store",
    }
)
MAX_READ_BYTES = 512 * 1024
_TEST_DIR_NAMES = frozenset({"test", "tests", "__tests__", "spec", "specs", "testdata", "e2e"})
_TEST_FILE = re.compile(
    r"(^test_.*\.py$|_test\.py$|_test\.go$|\.(test|spec)\.[cm]?[jt]sx?$|_spec\.rb$|Tests?\.java$)"
)


def is_test_path(rel: str) -> bool:
    """True for files that belong to a test suite rather than the running app."""
    parts = rel.split("/")
    return bool(_TEST_DIR_NAMES.intersection(parts[:-1])) or bool(_TEST_FILE.search(parts[-1]))


@dataclass(frozen=True)
class _IgnoreRules:
    base: str  # folder the .gitignore sits in, "" for the root
    spec: pathspec.GitIgnoreSpec


class RepoFiles:
    """The repository's source files, relative POSIX paths, sorted."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._text: dict[str, str | None] = {}
        self.files: list[str] = self._walk()
        self._file_set = frozenset(self.files)

    def _walk(self) -> list[str]:
        found: list[str] = []
        stack: list[tuple[str, list[_IgnoreRules]]] = [("", [])]
        while stack:
            rel_dir, inherited = stack.pop()
            abs_dir = self.root / rel_dir if rel_dir else self.root
            rules = inherited
            gitignore = abs_dir / ".gitignore"
            # Only a regular file of the repository's own, of a readable size: never
            # through a symbolic link (which could lead out of the repository).
            if (
                gitignore.is_file()
                and not gitignore.is_symlink()
                and gitignore.stat().st_size <= MAX_READ_BYTES
            ):
                lines = gitignore.read_text(encoding="utf-8", errors="replace").splitlines()
                rules = [
                    *inherited,
                    _IgnoreRules(rel_dir, pathspec.GitIgnoreSpec.from_lines(lines)),
                ]
            try:
                entries = list(os.scandir(abs_dir))
            except OSError:
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if entry.name in SKIP_DIRS or _ignored(rules, rel + "/"):
                        continue
                    if os.path.exists(os.path.join(entry.path, "pyvenv.cfg")):
                        continue  # a virtualenv under any name
                    stack.append((rel, rules))
                elif entry.is_file(follow_symlinks=False) and not _ignored(rules, rel):
                    found.append(rel)
        found.sort()
        return found

    def exists(self, rel: str) -> bool:
        return rel in self._file_set

    def read(self, rel: str) -> str | None:
        """The file's text, or None when absent, binary or too large to be source."""
        if rel not in self._text:
            self._text[rel] = self._load(rel)
        return self._text[rel]

    def _load(self, rel: str) -> str | None:
        if rel not in self._file_set:
            return None
        path = self.root / rel
        try:
            if path.stat().st_size > MAX_READ_BYTES:
                return None
            data = path.read_bytes()
        except OSError:
            return None
        if b"\0" in data[:8192]:
            return None
        return data.decode("utf-8", errors="replace")

    @cached_property
    def dirs(self) -> frozenset[str]:
        """Every folder that holds at least one kept file ("" is the root)."""
        out = {""}
        for rel in self.files:
            parent = PurePosixPath(rel).parent
            while str(parent) != ".":
                out.add(str(parent))
                parent = parent.parent
        return frozenset(out)

    def scoped(self, subdir: str) -> AppFiles:
        return AppFiles(self, "" if subdir in ("", ".") else subdir.strip("/"))


class AppFiles:
    """The files of one app folder inside the repository; paths relative to that folder."""

    def __init__(self, repo: RepoFiles, subdir: str) -> None:
        self.repo = repo
        self.subdir = subdir
        prefix = f"{subdir}/" if subdir else ""
        self.files = [f[len(prefix) :] for f in repo.files if f.startswith(prefix)]
        self._set = frozenset(self.files)

    @property
    def name(self) -> str:
        return PurePosixPath(self.subdir).name if self.subdir else self.repo.root.name

    def repo_path(self, rel: str) -> str:
        return f"{self.subdir}/{rel}" if self.subdir else rel

    def exists(self, rel: str) -> bool:
        return rel in self._set

    def read(self, rel: str) -> str | None:
        return self.repo.read(self.repo_path(rel))

    def first(self, *names: str) -> str | None:
        return next((n for n in names if n in self._set), None)

    def source_files(self, *suffixes: str) -> list[str]:
        """App source with these suffixes, test suites excluded."""
        return [f for f in self.files if f.endswith(suffixes) and not is_test_path(f)]

    def evidence(self, rel: str, line: int | None = None) -> Evidence:
        excerpt = ""
        if line:
            text = self.read(rel) or ""
            lines = text.splitlines()
            if 0 < line <= len(lines):
                excerpt = lines[line - 1].strip()[:120]
        return Evidence(file=self.repo_path(rel), line=line, excerpt=excerpt)

    def find_line(self, rel: str, needle: str | re.Pattern[str]) -> int | None:
        """The first line (1-based) of the file containing the text or matching the pattern."""
        for number, line in enumerate((self.read(rel) or "").splitlines(), start=1):
            if needle.search(line) if isinstance(needle, re.Pattern) else needle in line:
                return number
        return None

    def scan(self, rel: str, pattern: re.Pattern[str]) -> Iterator[tuple[int, re.Match[str]]]:
        """Matches of the pattern on the file's code lines (comment lines skipped)."""
        for number, line in code_lines(rel, self.read(rel) or ""):
            for match in pattern.finditer(line):
                yield number, match


_HASH_COMMENTS = (".py", ".rb", ".yml", ".yaml", ".properties", ".toml", ".cfg", ".txt", ".sh")


def code_lines(rel: str, text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines of the file minus whole-line and block comments."""
    hash_comments = rel.endswith(_HASH_COMMENTS) or PurePosixPath(rel).name in (
        "Procfile",
        "Dockerfile",
        "Gemfile",
        ".env.example",
    )
    in_block = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if hash_comments:
            if stripped.startswith("#"):
                continue
            yield number, line
            continue
        if in_block:
            if "*/" in stripped:
                in_block = False
                line = line.split("*/", 1)[1]
            else:
                continue
        if stripped.startswith("//"):
            continue
        if "/*" in line and "*/" not in line.split("/*", 1)[1]:
            in_block = True
            line = line.split("/*", 1)[0]
        yield number, line


def _ignored(rules: list[_IgnoreRules], rel: str) -> bool:
    ignored = False
    for rule in rules:  # outer .gitignore first; a deeper one may re-include
        local = rel[len(rule.base) + 1 :] if rule.base else rel
        result = rule.spec.check_file(local).include
        if result is not None:
            ignored = result
    return ignored
