"""Signals every stack shares: Dockerfile, Procfile, docker-compose, .env.example,
environment reads in code, and health routes."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

import yaml

from hivemind.recon.files import AppFiles, code_lines
from hivemind.recon.findings import HEALTH_PATHS, Findings, normalize_version

ENV_EXAMPLE_FILES = (
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    "env.example",
    "example.env",
)
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
SOURCE_SUFFIXES = (
    ".js",
    ".mjs",
    ".cjs",
    ".ts",
    ".tsx",
    ".jsx",
    ".py",
    ".go",
    ".java",
    ".kt",
    ".rb",
)

# Base images that name the language runtime, and where their tag holds its version.
_IMAGE_LANGUAGE = {
    "node": "node",
    "python": "python",
    "golang": "go",
    "ruby": "ruby",
    "eclipse-temurin": "java",
    "openjdk": "java",
    "amazoncorretto": "java",
}
_DB_IMAGES = {
    "postgres": "postgres",
    "postgis/postgis": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mongo": "mongodb",
}
_URL_SCHEMES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mysql2": "mysql",
    "mariadb": "mysql",
    "mongodb": "mongodb",
    "mongodb+srv": "mongodb",
    "sqlite": "sqlite",
}
_COMMAND_PORT = re.compile(
    r"(?:--bind|-b)[= ]\s*[^\s:$]*:(\d{2,5})\b|--port[= ](\d{2,5})\b|(?:^|\s)-p\s+(\d{2,5})\b"
    r"|\bPORT=(\d{2,5})\b"
)
_COMMAND_LANGUAGE = (
    (
        re.compile(r"\b(gunicorn|uvicorn|hypercorn|daphne|waitress-serve|python3?|flask)\b"),
        "python",
    ),
    (re.compile(r"\b(bundle|rails|puma|rackup|ruby)\b"), "ruby"),
    (re.compile(r"\bjava\b"), "java"),
    (re.compile(r"\b(node|npm|yarn|pnpm|npx)\b"), "node"),
)


@dataclass(frozen=True)
class StartHint:
    """A start command and the language it implies (from a Procfile or Dockerfile)."""

    command: str
    language: str | None
    file: str
    line: int


def command_port(command: str) -> int | None:
    match = _COMMAND_PORT.search(command)
    if match is None:
        return None
    return int(next(g for g in match.groups() if g))


def command_language(command: str) -> str | None:
    return next((lang for pattern, lang in _COMMAND_LANGUAGE if pattern.search(command)), None)


def procfile_web(files: AppFiles) -> StartHint | None:
    if not files.exists("Procfile"):
        return None
    for number, line in code_lines("Procfile", files.read("Procfile") or ""):
        name, _, command = line.partition(":")
        if name.strip() == "web" and command.strip():
            command = command.strip()
            return StartHint(command, command_language(command), "Procfile", number)
    return None


@dataclass(frozen=True)
class DockerfileHints:
    language: str | None
    version: str | None
    from_line: int | None
    expose: int | None
    expose_line: int | None
    command: StartHint | None


def dockerfile_hints(files: AppFiles) -> DockerfileHints | None:
    if not files.exists("Dockerfile"):
        return None
    text = (files.read("Dockerfile") or "").replace("\\\n", " ")
    language = version = None
    from_line = expose = expose_line = None
    command: StartHint | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        instruction, rest = words[0].upper(), line.strip()[len(words[0]) :].strip()
        if instruction == "FROM" and len(words) > 1 and language is None:
            image, _, tag = words[1].partition(":")
            found = _IMAGE_LANGUAGE.get(image.rsplit("/", 1)[-1])
            if found:
                language, version, from_line = found, normalize_version(tag), number
        elif instruction == "EXPOSE" and len(words) > 1:
            port = words[1].split("/")[0]
            if port.isdigit():
                expose, expose_line = int(port), number
        elif instruction in ("CMD", "ENTRYPOINT"):
            command_text = _exec_form(rest)
            if command_text:
                command = StartHint(
                    command_text, command_language(command_text), "Dockerfile", number
                )
    if language is None and expose is None and command is None:
        return None
    return DockerfileHints(language, version, from_line, expose, expose_line, command)


def _exec_form(rest: str) -> str:
    if rest.startswith("["):
        try:
            parts = json.loads(rest)
        except json.JSONDecodeError:
            return rest
        if parts[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
            return " ".join(parts[2:])
        return shlex.join(str(p) for p in parts)
    return rest


def pinned_versions(files: AppFiles, findings: Findings, *pin_files: str) -> None:
    """The runtime version from pin files such as .nvmrc or .python-version (first line)."""
    for rel in pin_files:
        if files.exists(rel):
            version = normalize_version((files.read(rel) or "").strip().split("\n")[0])
            findings.add("runtime_version", version, "pin-file", files.evidence(rel, 1))


def ports_in_code(
    files: AppFiles,
    findings: Findings,
    suffixes: tuple[str, ...],
    patterns: tuple[re.Pattern[str], ...],
) -> None:
    """Ports the app's source listens on; each pattern's first group is the number."""
    for rel in files.source_files(*suffixes):
        for pattern in patterns:
            for number, match in files.scan(rel, pattern):
                port = int(match.group(1))
                if 0 < port < 65536:
                    findings.add("port", port, "code", files.evidence(rel, number))


def detect_shared(files: AppFiles, findings: Findings, language: str) -> None:
    """Add the stack-independent signals of the app folder to the findings."""
    _procfile(files, findings)
    _dockerfile(files, findings, language)
    _compose(files, findings)
    _env_example(files, findings)
    _health_routes(files, findings)


def _procfile(files: AppFiles, findings: Findings) -> None:
    web = procfile_web(files)
    if web is None:
        return
    evidence = files.evidence(web.file, web.line)
    findings.add("start_command", web.command, "procfile", evidence, "the Procfile's web process")
    findings.add("port", command_port(web.command), "procfile", evidence)


def _dockerfile(files: AppFiles, findings: Findings, language: str) -> None:
    hints = dockerfile_hints(files)
    if hints is None:
        return
    if hints.language == language and hints.version:
        findings.add(
            "runtime_version",
            hints.version,
            "dockerfile",
            files.evidence("Dockerfile", hints.from_line),
            "the base image's tag",
        )
    if hints.expose:
        findings.add(
            "port", hints.expose, "dockerfile", files.evidence("Dockerfile", hints.expose_line)
        )
    if hints.command and hints.command.language in (language, None):
        findings.add(
            "start_command",
            hints.command.command,
            "dockerfile",
            files.evidence("Dockerfile", hints.command.line),
        )


def _compose(files: AppFiles, findings: Findings) -> None:
    name = files.first(*COMPOSE_FILES)
    if name is None:
        return
    try:
        data = yaml.safe_load(files.read(name) or "")
    except yaml.YAMLError:
        findings.warnings.append(f"{files.repo_path(name)} is not valid YAML; ignored")
        return
    services = data.get("services") if isinstance(data, dict) else None
    if not isinstance(services, dict):
        return
    for service in services.values():
        image = service.get("image") if isinstance(service, dict) else None
        if not isinstance(image, str):
            continue
        repo, _, tag = image.partition(":")
        engine = _DB_IMAGES.get(repo.removeprefix("library/").removeprefix("docker.io/"))
        if engine is None:
            continue
        evidence = files.evidence(name, files.find_line(name, image))
        findings.add("database_engine", engine, "compose", evidence, f"a {image} service")
        version = normalize_version(tag) if tag else None
        if version and engine in ("postgres", "mysql"):
            major = version if engine == "mysql" else version.split(".")[0]
            findings.add("database_version", major, "compose", evidence)


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def _env_example(files: AppFiles, findings: Findings) -> None:
    name = files.first(*ENV_EXAMPLE_FILES)
    if name is None:
        return
    for number, line in code_lines(".env.example", files.read(name) or ""):
        match = _ENV_LINE.match(line)
        if match is None:
            continue
        key, value = match.group(1), match.group(2).strip().strip("'\"")
        evidence = files.evidence(name, number)
        findings.env(key, required=True, evidence=evidence)
        if key == "PORT" and value.isdigit():
            findings.add("port", int(value), "env-example", evidence)
        if key.endswith("DATABASE_URL") or key.endswith("DB_URL") or key == "MONGODB_URI":
            engine = database_from_url(value)
            if engine:
                findings.add(
                    "database_engine",
                    engine,
                    "env-example",
                    evidence,
                    f"{key} uses {value.split(':', 1)[0]}://",
                )


def database_from_url(url: str) -> str | None:
    scheme = url.split("://", 1)[0].split(":", 1)[0].lower() if ":" in url else ""
    if scheme.startswith("jdbc"):
        scheme = url.split(":")[1].lower()
    return _URL_SCHEMES.get(scheme.split("+", 1)[0])


# Environment reads per language: (pattern, whether the read has no default).
_REQUIRED = True
_OPTIONAL = False
_ENV_READS: dict[tuple[str, ...], list[tuple[re.Pattern[str], bool]]] = {
    (".js", ".mjs", ".cjs", ".ts", ".tsx", ".jsx"): [
        (re.compile(r"process\.env\.([A-Za-z_]\w*)\b(?!\s*(?:\|\||\?\?))"), _REQUIRED),
        (
            re.compile(r"process\.env\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\](?!\s*(?:\|\||\?\?))"),
            _REQUIRED,
        ),
        (re.compile(r"process\.env\.([A-Za-z_]\w*)\s*(?:\|\||\?\?)"), _OPTIONAL),
        (re.compile(r"process\.env\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\]\s*(?:\|\||\?\?)"), _OPTIONAL),
    ],
    (".py",): [
        (re.compile(r"os\.environ\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\]"), _REQUIRED),
        (
            re.compile(r"(?:os\.environ\.get|os\.getenv|getenv)\(\s*['\"]([A-Za-z_]\w*)['\"]\s*\)"),
            _REQUIRED,
        ),
        (
            re.compile(r"(?:os\.environ\.get|os\.getenv|getenv)\(\s*['\"]([A-Za-z_]\w*)['\"]\s*,"),
            _OPTIONAL,
        ),
    ],
    (".go",): [
        (re.compile(r"os\.(?:Getenv|LookupEnv)\(\s*\"([A-Za-z_]\w*)\"\s*\)"), _REQUIRED),
    ],
    (".java", ".kt"): [
        (re.compile(r"System\.getenv\(\s*\"([A-Za-z_]\w*)\"\s*\)"), _REQUIRED),
    ],
    # Spring's ${X} / ${X:default} and Rails' ERB <%= ENV["X"] %> in config files.
    (".properties", ".yml", ".yaml"): [
        (re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}"), _REQUIRED),
        (re.compile(r"\$\{([A-Z_][A-Z0-9_]*):[^}]*\}"), _OPTIONAL),
        (re.compile(r"ENV\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\](?!\s*\|\|)"), _REQUIRED),
        (re.compile(r"ENV\.fetch\(\s*['\"]([A-Za-z_]\w*)['\"]\s*(?:,|\)\s*\{)"), _OPTIONAL),
    ],
    (".rb",): [
        (re.compile(r"ENV\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\](?!\s*\|\|)"), _REQUIRED),
        (re.compile(r"ENV\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\]\s*\|\|"), _OPTIONAL),
        (re.compile(r"ENV\.fetch\(\s*['\"]([A-Za-z_]\w*)['\"]\s*\)(?!\s*\{)"), _REQUIRED),
        (re.compile(r"ENV\.fetch\(\s*['\"]([A-Za-z_]\w*)['\"]\s*(?:,|\)\s*\{)"), _OPTIONAL),
    ],
}
_JS_DESTRUCTURE = re.compile(r"\{([^}]*)\}\s*=\s*process\.env")
_CONFIG_DIRS = ("config/", "src/main/resources/")


def scan_env_reads(files: AppFiles, findings: Findings) -> None:
    """Record every environment variable the app's source reads."""
    for suffixes, patterns in _ENV_READS.items():
        config_only = suffixes[0] == ".properties"
        for rel in files.source_files(*suffixes):
            if config_only and not rel.startswith(_CONFIG_DIRS):
                continue
            for number, line in code_lines(rel, files.read(rel) or ""):
                for pattern, required in patterns:
                    for match in pattern.finditer(line):
                        findings.env(
                            match.group(1), required=required, evidence=files.evidence(rel, number)
                        )
                if suffixes[0] == ".js":
                    for match in _JS_DESTRUCTURE.finditer(line):
                        for part in match.group(1).split(","):
                            name = part.split("=")[0].split(":")[0].strip()
                            if re.fullmatch(r"[A-Za-z_]\w*", name):
                                findings.env(
                                    name,
                                    required="=" not in part,
                                    evidence=files.evidence(rel, number),
                                )


_ROUTE = re.compile(
    r"(?i)(?:\b(?:get|head|route|path|re_path|api_route|handle|handlefunc|any|all|match)\s*\(?\s*"
    r"|@\w*(?:get|route|mapping)\w*\s*\(\s*(?:[\w.]+\s*=\s*)?)"
    r"[\"'`](?:(?:GET|HEAD)\s+)?(/?[\w./-]*)[\"'`]"
)
# A hand-written router: `if path == "/healthz"` (WSGI, Node's http module).
_PATH_COMPARISON = re.compile(
    r"(?i)\b(?:path|path_info|pathname|url)\w*\s*(?:===?|\bis\b)\s*[\"'](/[\w./-]*)[\"']"
)
_NEST_CONTROLLER = re.compile(r"@Controller\(\s*['\"]/?([\w/-]+)['\"]")
# Files where route strings are conventionally written without the leading slash.
_SLASHLESS_ROUTE_FILES = ("routes.rb", "urls.py", ".controller.ts", ".controller.js")
_NEXT_ROUTE = re.compile(r"^(?:src/)?(?:app/(.+)/route|pages/(api/.+))\.[jt]sx?$")


def _health_routes(files: AppFiles, findings: Findings) -> None:
    found: dict[str, tuple[str, int | None]] = {}
    for rel in files.source_files(*SOURCE_SUFFIXES):
        slashless_ok = rel.endswith(_SLASHLESS_ROUTE_FILES)
        for number, line in code_lines(rel, files.read(rel) or ""):
            for match in [*_ROUTE.finditer(line), *_PATH_COMPARISON.finditer(line)]:
                raw = match.group(1)
                if not raw.startswith("/") and not slashless_ok:
                    continue
                path = "/" + raw.strip("/")
                if path in HEALTH_PATHS:
                    found.setdefault(path, (rel, number))
            for match in _NEST_CONTROLLER.finditer(line):
                path = "/" + match.group(1).strip("/")
                if path in HEALTH_PATHS:
                    found.setdefault(path, (rel, number))
        next_route = _NEXT_ROUTE.match(rel)
        if next_route:
            path = "/" + (next_route.group(1) or next_route.group(2)).removesuffix("/index")
            if path in HEALTH_PATHS:
                found.setdefault(path, (rel, None))
    for path in HEALTH_PATHS:
        if path in found:
            route_file, route_line = found[path]
            findings.add(
                "health_path",
                path,
                "code",
                files.evidence(route_file, route_line),
                "a health route",
            )
