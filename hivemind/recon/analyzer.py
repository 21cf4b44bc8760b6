"""Recon's deterministic analyzer: repository in, `AppProfile` out.

1. List the repository's files (dependency, vendored and ignored folders skipped).
2. Find the folders that look like apps (a manifest, a Procfile or a Dockerfile).
3. Choose the app's folder: the one the user named, else the best candidate, and say why.
4. Choose the language, run that stack's detector and the shared signals.
5. Per fact, keep the value from the strongest kind of source, with its evidence.

Nothing in the repository is executed.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from types import ModuleType

from hivemind.errors import BadInputError
from hivemind.recon import golang, java, node, python, ruby
from hivemind.recon.common import detect_shared, dockerfile_hints, procfile_web, scan_env_reads
from hivemind.recon.files import AppFiles, RepoFiles, is_test_path
from hivemind.recon.findings import Findings, slugify
from hivemind.recon.model import AppProfile, Candidate, Evidence, Fact
from hivemind.recon.source import RepoCheckout

# Preference when one folder has several stacks' manifests and none has a framework:
# a package.json beside a Python or Ruby app is usually front-end tooling.
STACKS: tuple[ModuleType, ...] = (python, ruby, java, golang, node)
_START_SIGNALS = ("Procfile", "Dockerfile")
_PREFERRED_DIR_NAMES = ("api", "server", "backend", "web", "app", "service", "services")

LOOKED_FOR = (
    "Node (package.json with express, fastify, @nestjs/core, next or koa)",
    "Python (requirements.txt, pyproject.toml, Pipfile or setup.py with django, flask or fastapi)",
    "Go (go.mod with gin, echo, fiber, chi, or net/http)",
    "Java (pom.xml or build.gradle with Spring Boot)",
    "Ruby (Gemfile with rails or sinatra)",
    "a Procfile web process or a Dockerfile",
)


def analyze(
    checkout: RepoCheckout, *, subdir: str | None = None, subdir_evidence: str | None = None
) -> AppProfile:
    """Analyze the repository; `subdir` (from the user) pins the app's folder."""
    files = RepoFiles(checkout.path)
    if not files.files:
        raise BadInputError(
            f"the repository is empty: {checkout.ref}",
            cause="no files outside .git, dependency folders and what .gitignore excludes",
            next_step="push the app's source to the repository, or pass the folder that holds it",
        )
    candidates = find_candidates(files)
    app_dir = _choose_app_dir(files, candidates, subdir, subdir_evidence)
    app = files.scoped(str(app_dir.value))
    findings = Findings()
    language = _choose_language(app)
    if language is not None:
        stack, evidence, note = language
        findings.add("language", stack.LANGUAGE, "manifest", evidence, note)
        if any(app.exists(m) for m in stack.MANIFESTS):
            stack.detect(app, findings)
        detect_shared(app, findings, stack.LANGUAGE)
        scan_env_reads(app, findings)
        findings.add(
            "name",
            slugify(app.name),
            "folder",
            Evidence(file=app.subdir or "."),
            "the folder's name",
        )
        findings.add("health_path", "/", "default", note="no health route found")
        if not findings.has("database_engine"):
            findings.add(
                "database_engine",
                "none",
                "default",
                note="no database driver, ORM setting, DATABASE_URL or compose service",
            )
    return AppProfile(
        repo=checkout.ref,
        commit=checkout.commit,
        app_dir=app_dir,
        candidates=candidates,
        facts=findings.facts(),
        env_vars=findings.env_vars(),
        warnings=findings.warnings,
    )


def find_candidates(files: RepoFiles) -> list[Candidate]:
    """Folders holding a manifest, Procfile or Dockerfile, outside test suites."""
    markers = {m for stack in STACKS for m in stack.MANIFESTS} | set(_START_SIGNALS)
    folders: set[str] = set()
    for rel in files.files:
        path = PurePosixPath(rel)
        if path.name in markers and not is_test_path(rel):
            folders.add("" if str(path.parent) == "." else str(path.parent))
    out = []
    for folder in sorted(folders, key=lambda f: (f.count("/") if f else -1, f)):
        app = files.scoped(folder)
        chosen = _choose_language(app)
        framework = None
        if chosen is not None:
            found = chosen[0].framework(app)
            framework = found[0] if found else None
        out.append(
            Candidate(
                path=folder or ".",
                language=chosen[0].LANGUAGE if chosen else None,
                framework=framework,
            )
        )
    return out


def _choose_app_dir(
    files: RepoFiles, candidates: list[Candidate], subdir: str | None, evidence: str | None
) -> Fact:
    if subdir not in (None, "", "."):
        assert subdir is not None
        wanted = subdir.strip("/")
        if wanted not in files.dirs:
            raise BadInputError(
                f"the app folder '{wanted}' is not in the repository",
                where=evidence,
                cause="no such folder, or it holds only ignored or dependency files",
                next_step="set app.subdir to a folder that holds the app's source",
            )
        return Fact(value=wanted, source="user", note=f"set by {evidence or 'the user'}")
    if not candidates:
        return Fact(value=".", source="default", note="no app folder found; reading the root")
    others = ", ".join(f"{c.path} ({c.framework or c.language or 'unknown'})" for c in candidates)
    root = candidates[0] if candidates[0].path == "." else None
    if root and root.framework:
        return Fact(
            value=".", source="detected", note=f"the repository root is a {root.framework} app"
        )
    with_framework = [c for c in candidates if c.framework]
    if with_framework:
        ranked = sorted(with_framework, key=lambda c: _rank_dir(files, c.path))
        best = ranked[0]
        if len(ranked) == 1:
            why = f"the only folder with a web framework ({best.framework})"
        else:
            why = (
                f"{len(ranked)} folders have a web framework; {best.path} ranks first "
                "(a Procfile/Dockerfile, then a server-like name, then the shallowest)"
            )
        return Fact(
            value=best.path,
            source="detected",
            note=f"{why}; candidates: {others}; set app.subdir in hivemind.yaml to choose another",
        )
    if root:
        return Fact(
            value=".", source="detected", note=f"the repository root is a {root.language} app"
        )
    best = sorted(candidates, key=lambda c: _rank_dir(files, c.path))[0]
    return Fact(
        value=best.path,
        source="detected",
        note=f"no folder has a known web framework; candidates: {others}",
    )


def _rank_dir(files: RepoFiles, path: str) -> tuple[int, int, int, str]:
    prefix = "" if path == "." else f"{path}/"
    has_start = any(files.exists(f"{prefix}{s}") for s in _START_SIGNALS)
    parts = [] if path == "." else path.split("/")
    named = any(p in _PREFERRED_DIR_NAMES for p in parts)
    return (0 if has_start else 1, 0 if named else 1, len(parts), path)


def _choose_language(app: AppFiles) -> tuple[ModuleType, Evidence, str] | None:
    """The stack of the folder: one with a framework first, then the Procfile's or
    Dockerfile's language, then the first manifest in `STACKS` order."""
    present = [s for s in STACKS if any(app.exists(m) for m in s.MANIFESTS)]
    hinted = _hinted_language(app)
    with_framework = [(s, found) for s in present if (found := s.framework(app))]
    if with_framework:
        with_framework.sort(key=lambda pair: hinted != pair[0].LANGUAGE)
        stack, (name, _evidence) = with_framework[0]
        manifest = next(m for m in stack.MANIFESTS if app.exists(m))
        return stack, app.evidence(manifest), f"declares {name}"
    for stack in present:
        if hinted == stack.LANGUAGE:
            manifest = next(m for m in stack.MANIFESTS if app.exists(m))
            return stack, app.evidence(manifest), "matches the Procfile's or Dockerfile's command"
    if present:
        manifest = next(m for m in present[0].MANIFESTS if app.exists(m))
        return present[0], app.evidence(manifest), "the manifest is present"
    if hinted:
        stack = next(s for s in STACKS if hinted == s.LANGUAGE)
        source = "Procfile" if procfile_web(app) else "Dockerfile"
        return stack, app.evidence(source), "the command or base image it names"
    return None


def _hinted_language(app: AppFiles) -> str | None:
    web = procfile_web(app)
    if web and web.language:
        return web.language
    hints = dockerfile_hints(app)
    if hints is None:
        return None
    return hints.language or (hints.command.language if hints.command else None)
