"""Node.js apps: express, fastify, nest, next, koa."""

from __future__ import annotations

import json
import re
from typing import Any

from hivemind.recon.common import pinned_versions, ports_in_code
from hivemind.recon.files import AppFiles
from hivemind.recon.findings import Findings, normalize_version
from hivemind.recon.model import Evidence

LANGUAGE = "node"
MANIFESTS = ("package.json",)
# Most specific first: nest and next bring express along.
FRAMEWORKS = (
    ("@nestjs/core", "nest"),
    ("next", "next"),
    ("fastify", "fastify"),
    ("koa", "koa"),
    ("express", "express"),
)
DEFAULT_PORT = 3000
# Server-database drivers before sqlite: an app with both uses sqlite for tests.
DRIVERS = (
    ("pg", "postgres"),
    ("postgres", "postgres"),
    ("pg-promise", "postgres"),
    ("mysql", "mysql"),
    ("mysql2", "mysql"),
    ("mongoose", "mongodb"),
    ("mongodb", "mongodb"),
    ("sqlite3", "sqlite"),
    ("better-sqlite3", "sqlite"),
)
_SOURCES = (".js", ".mjs", ".cjs", ".ts")
_PORT_IN_CODE = (
    re.compile(r"PORT\s*(?:\|\||\?\?)\s*['\"]?(\d{2,5})"),
    re.compile(r"\.listen\(\s*\{?\s*(?:port\s*:\s*)?['\"]?(\d{2,5})\b"),
    re.compile(
        r"(?i)\b(?:const|let|var)\s+port\s*=\s*(?:[^;\n]*?(?:\|\||\?\?)\s*)?['\"]?(\d{2,5})\b"
    ),
)
_PRISMA_PROVIDER = re.compile(r"provider\s*=\s*\"(postgresql|mysql|sqlite|mongodb)\"")
_PRISMA_ENGINES = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "sqlite": "sqlite",
    "mongodb": "mongodb",
}


def _manifest(files: AppFiles) -> dict[str, Any]:
    try:
        data = json.loads(files.read("package.json") or "{}")
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _deps(manifest: dict[str, Any]) -> dict[str, str]:
    deps: dict[str, str] = {}
    for key in ("dependencies", "devDependencies", "peerDependencies"):
        section = manifest.get(key)
        if isinstance(section, dict):
            deps.update({str(k): str(v) for k, v in section.items()})
    return deps


def _runtime_deps(manifest: dict[str, Any]) -> dict[str, str]:
    section = manifest.get("dependencies")
    return {str(k): str(v) for k, v in section.items()} if isinstance(section, dict) else {}


def _dep_evidence(files: AppFiles, name: str) -> Evidence:
    return files.evidence("package.json", files.find_line("package.json", f'"{name}"'))


def framework(files: AppFiles) -> tuple[str, Evidence] | None:
    if not files.exists("package.json"):
        return None
    deps = _runtime_deps(_manifest(files))
    for dep, name in FRAMEWORKS:
        if dep in deps:
            return name, _dep_evidence(files, dep)
    return None


def detect(files: AppFiles, findings: Findings) -> None:
    manifest = _manifest(files)
    found = framework(files)
    name = found[0] if found else None
    if found:
        findings.add("framework", name, "manifest", found[1])
    if isinstance(manifest.get("name"), str):
        findings.add("name", manifest["name"], "manifest", _dep_evidence(files, "name"))

    _runtime(files, manifest, findings)
    _port(files, findings, name)
    _database(files, manifest, findings)
    _commands(files, manifest, findings, name)


def _runtime(files: AppFiles, manifest: dict[str, Any], findings: Findings) -> None:
    pinned_versions(files, findings, ".nvmrc", ".node-version")
    engines = manifest.get("engines")
    if isinstance(engines, dict) and isinstance(engines.get("node"), str):
        findings.add(
            "runtime_version",
            normalize_version(engines["node"]),
            "manifest",
            _dep_evidence(files, "node"),
            "package.json engines.node",
        )


def _port(files: AppFiles, findings: Findings, name: str | None) -> None:
    ports_in_code(files, findings, _SOURCES, _PORT_IN_CODE)
    findings.add("port", DEFAULT_PORT, "default", note=f"{name or 'node'}'s default port")


def _database(files: AppFiles, manifest: dict[str, Any], findings: Findings) -> None:
    prisma = files.first("prisma/schema.prisma", "schema.prisma")
    if prisma:
        for number, match in files.scan(prisma, _PRISMA_PROVIDER):
            findings.add(
                "database_engine",
                _PRISMA_ENGINES[match.group(1)],
                "config",
                files.evidence(prisma, number),
                "the Prisma datasource",
            )
    deps = _runtime_deps(manifest)
    for dep, engine in DRIVERS:
        if dep in deps:
            findings.add(
                "database_engine", engine, "driver", _dep_evidence(files, dep), f"depends on {dep}"
            )


def _package_manager(files: AppFiles) -> tuple[str, str]:
    """(install command, run prefix) for the lockfile the repo has."""
    if files.exists("pnpm-lock.yaml"):
        return "pnpm install --frozen-lockfile", "pnpm"
    if files.exists("yarn.lock"):
        return "yarn install --frozen-lockfile", "yarn"
    if files.exists("package-lock.json") or files.exists("npm-shrinkwrap.json"):
        return "npm ci", "npm"
    return "npm install", "npm"


def _commands(
    files: AppFiles, manifest: dict[str, Any], findings: Findings, name: str | None
) -> None:
    install, runner = _package_manager(files)
    scripts = manifest.get("scripts") if isinstance(manifest.get("scripts"), dict) else {}
    assert isinstance(scripts, dict)
    package = files.evidence("package.json")
    if "build" in scripts:
        findings.add(
            "build_command",
            f"{install} && {runner} run build",
            "stack",
            _dep_evidence(files, "build"),
            "install, then the build script",
        )
    else:
        findings.add("build_command", install, "stack", package, "install dependencies")
    if "start" in scripts:
        findings.add(
            "start_command",
            f"{runner} start",
            "stack",
            _dep_evidence(files, "start"),
            "the start script",
        )
        return
    if name == "next":
        findings.add("start_command", "npx next start -p $PORT", "stack", package)
        return
    if name == "nest":
        findings.add("start_command", "node dist/main.js", "stack", package)
        return
    main = manifest.get("main")
    entry = main if isinstance(main, str) and files.exists(main) else None
    entry = entry or files.first(
        "server.js", "index.js", "app.js", "main.js", "src/index.js", "src/server.js"
    )
    if entry:
        findings.add(
            "start_command", f"node {entry}", "stack", files.evidence(entry), "the entry file"
        )
