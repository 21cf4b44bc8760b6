"""Go apps: gin, echo, fiber, chi, or the standard library's net/http."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from hivemind.recon.common import ports_in_code
from hivemind.recon.files import AppFiles
from hivemind.recon.findings import Findings, normalize_version
from hivemind.recon.model import Evidence

LANGUAGE = "go"
MANIFESTS = ("go.mod",)
FRAMEWORKS = (
    ("github.com/gin-gonic/gin", "gin"),
    ("github.com/labstack/echo", "echo"),
    ("github.com/gofiber/fiber", "fiber"),
    ("github.com/go-chi/chi", "chi"),
)
DEFAULT_PORT = 8080
DRIVERS = (
    ("github.com/lib/pq", "postgres"),
    ("github.com/jackc/pgx", "postgres"),
    ("gorm.io/driver/postgres", "postgres"),
    ("github.com/go-sql-driver/mysql", "mysql"),
    ("gorm.io/driver/mysql", "mysql"),
    ("go.mongodb.org/mongo-driver", "mongodb"),
    ("github.com/mattn/go-sqlite3", "sqlite"),
    ("modernc.org/sqlite", "sqlite"),
    ("gorm.io/driver/sqlite", "sqlite"),
)
_GO_DIRECTIVE = re.compile(r"^go\s+(\d+\.\d+(?:\.\d+)?)\s*$")
_MODULE = re.compile(r"^module\s+(\S+)")
_PORT_IN_CODE = (
    re.compile(r"(?:ListenAndServe(?:TLS)?|\.Run|\.Start|\.Listen)\(\s*\"[^\":]*:(\d{2,5})\""),
    re.compile(r"(?i)\b(?:port|addr)\s*(?::=|=)\s*\"(?:[^\":]*:)?(\d{2,5})\""),
)
_SERVES_HTTP = re.compile(r"http\.ListenAndServe|http\.Server\{")


def _module_line(files: AppFiles, needle: str) -> Evidence | None:
    line = files.find_line("go.mod", needle)
    return files.evidence("go.mod", line) if line else None


def framework(files: AppFiles) -> tuple[str, Evidence] | None:
    if not files.exists("go.mod"):
        return None
    for module, name in FRAMEWORKS:
        evidence = _module_line(files, module)
        if evidence:
            return name, evidence
    for rel in files.source_files(".go"):
        for number, _match in files.scan(rel, _SERVES_HTTP):
            return "net/http", files.evidence(rel, number)
    return None


def detect(files: AppFiles, findings: Findings) -> None:
    found = framework(files)
    if found:
        findings.add("framework", found[0], "manifest", found[1])
    for number, line in enumerate((files.read("go.mod") or "").splitlines(), start=1):
        module_line = _MODULE.match(line)
        if module_line:
            findings.add(
                "name",
                module_line.group(1).rsplit("/", 1)[-1],
                "manifest",
                files.evidence("go.mod", number),
            )
        directive = _GO_DIRECTIVE.match(line.strip())
        if directive:
            findings.add(
                "runtime_version",
                normalize_version(directive.group(1)),
                "manifest",
                files.evidence("go.mod", number),
                "go.mod's go directive",
            )

    ports_in_code(files, findings, (".go",), _PORT_IN_CODE)
    findings.add("port", DEFAULT_PORT, "default", note="the usual Go HTTP port")

    for module, engine in DRIVERS:
        evidence = _module_line(files, module)
        if evidence:
            findings.add("database_engine", engine, "driver", evidence, f"requires {module}")

    main_dir = _main_package(files)
    binary = "bin/app"
    target = "." if main_dir in ("", ".") else f"./{main_dir}"
    findings.add(
        "build_command",
        f"go build -o {binary} {target}",
        "stack",
        files.evidence("go.mod"),
        "build the main package",
    )
    findings.add("start_command", f"./{binary}", "stack", files.evidence("go.mod"))


def _main_package(files: AppFiles) -> str:
    """The folder of the `package main` that holds `func main`, shallowest first."""
    mains = []
    for rel in files.source_files(".go"):
        text = files.read(rel) or ""
        if re.search(r"^package main\b", text, re.M) and re.search(r"^func main\(\)", text, re.M):
            mains.append(str(PurePosixPath(rel).parent))
    mains.sort(key=lambda d: (0 if d == "." else d.count("/") + 1, d))
    return mains[0] if mains else "."
