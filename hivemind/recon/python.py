"""Python apps: django, flask, fastapi (and plain WSGI/ASGI apps started by a Procfile)."""

from __future__ import annotations

import re
import tomllib
from pathlib import PurePosixPath
from typing import Any

from hivemind.recon.common import pinned_versions, ports_in_code
from hivemind.recon.files import AppFiles
from hivemind.recon.findings import Findings, normalize_version
from hivemind.recon.model import Evidence

LANGUAGE = "python"
MANIFESTS = ("requirements.txt", "pyproject.toml", "Pipfile", "setup.py", "manage.py")
FRAMEWORKS = (("django", "django"), ("fastapi", "fastapi"), ("flask", "flask"))
DEFAULT_PORTS = {"django": 8000, "flask": 5000, "fastapi": 8000, None: 8000}
DRIVERS = (
    ("psycopg2", "postgres"),
    ("psycopg2-binary", "postgres"),
    ("psycopg", "postgres"),
    ("asyncpg", "postgres"),
    ("pg8000", "postgres"),
    ("mysqlclient", "mysql"),
    ("pymysql", "mysql"),
    ("mysql-connector-python", "mysql"),
    ("aiomysql", "mysql"),
    ("asyncmy", "mysql"),
    ("pymongo", "mongodb"),
    ("motor", "mongodb"),
    ("mongoengine", "mongodb"),
    ("aiosqlite", "sqlite"),
)
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_PORT_IN_CODE = (
    re.compile(r"\.run\([^)]*\bport\s*=\s*(\d{2,5})"),
    re.compile(r"(?:os\.environ\.get|os\.getenv)\(\s*['\"]PORT['\"]\s*,\s*['\"]?(\d{2,5})"),
)
_APP_OBJECT = {
    "flask": re.compile(r"^(\w+)\s*=\s*Flask\("),
    "fastapi": re.compile(r"^(\w+)\s*=\s*FastAPI\("),
}
_DJANGO_ENGINE = re.compile(r"['\"]ENGINE['\"]\s*:\s*['\"]django\.db\.backends\.(\w+)['\"]")
_DJANGO_ENGINES = {
    "postgresql": "postgres",
    "postgresql_psycopg2": "postgres",
    "mysql": "mysql",
    "sqlite3": "sqlite",
}
_SQLITE_URI = re.compile(r"['\"]sqlite(?:\+\w+)?:///")
_WSGI_MODULE = re.compile(r"get_wsgi_application\(")
_INSTALL_REQUIRES = re.compile(r"install_requires\s*=\s*\[([^\]]*)\]", re.S)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(files: AppFiles) -> dict[str, Evidence]:
    """Declared dependencies (normalized name -> where) from every manifest present."""
    deps: dict[str, Evidence] = {}
    for rel in (
        "requirements.txt",
        "requirements/base.txt",
        "requirements/prod.txt",
        "requirements/production.txt",
    ):
        for number, line in enumerate((files.read(rel) or "").splitlines(), start=1):
            match = _REQUIREMENT.match(line)
            if match and not line.lstrip().startswith(("#", "-")):
                deps.setdefault(_normalize(match.group(1)), files.evidence(rel, number))
    pyproject = _pyproject(files)
    project = pyproject.get("project", {})
    poetry = pyproject.get("tool", {}).get("poetry", {})
    declared = list(project.get("dependencies", [])) + list(poetry.get("dependencies", {}))
    for entry in declared:
        match = _REQUIREMENT.match(str(entry))
        if match:
            name = _normalize(match.group(1))
            line_no = files.find_line(
                "pyproject.toml", re.compile(rf"(?i)\b{re.escape(match.group(1))}\b")
            )
            deps.setdefault(name, files.evidence("pyproject.toml", line_no))
    pipfile = _toml(files, "Pipfile")
    for name in pipfile.get("packages", {}):
        line_no = files.find_line("Pipfile", re.compile(rf"(?i)^\s*\"?{re.escape(name)}\"?\s*="))
        deps.setdefault(_normalize(name), files.evidence("Pipfile", line_no))
    install_requires = _INSTALL_REQUIRES.search(files.read("setup.py") or "")
    if install_requires:
        for match in re.finditer(r"['\"]([A-Za-z0-9][A-Za-z0-9._-]*)", install_requires.group(1)):
            line_no = files.find_line("setup.py", match.group(0))
            deps.setdefault(_normalize(match.group(1)), files.evidence("setup.py", line_no))
    return deps


def _toml(files: AppFiles, rel: str) -> dict[str, Any]:
    try:
        return tomllib.loads(files.read(rel) or "")
    except tomllib.TOMLDecodeError:
        return {}


def _pyproject(files: AppFiles) -> dict[str, Any]:
    return _toml(files, "pyproject.toml")


def framework(files: AppFiles) -> tuple[str, Evidence] | None:
    if not any(files.exists(m) for m in MANIFESTS):
        return None
    deps = _requirements(files)
    for dep, name in FRAMEWORKS:
        if dep in deps:
            return name, deps[dep]
    if files.exists("manage.py"):
        return "django", files.evidence("manage.py")
    return None


def detect(files: AppFiles, findings: Findings) -> None:
    deps = _requirements(files)
    found = framework(files)
    name = found[0] if found else None
    if found:
        findings.add("framework", name, "manifest", found[1])
    pyproject = _pyproject(files)
    project_name = pyproject.get("project", {}).get("name") or pyproject.get("tool", {}).get(
        "poetry", {}
    ).get("name")
    if isinstance(project_name, str):
        findings.add("name", project_name, "manifest", files.evidence("pyproject.toml"))

    _runtime(files, pyproject, findings)
    _port(files, findings, name)
    _database(files, deps, findings)
    _commands(files, deps, findings, name)


def _runtime(files: AppFiles, pyproject: dict[str, Any], findings: Findings) -> None:
    pinned_versions(files, findings, ".python-version", "runtime.txt")
    requires = pyproject.get("project", {}).get("requires-python")
    if isinstance(requires, str):
        findings.add(
            "runtime_version",
            normalize_version(requires),
            "manifest",
            files.evidence("pyproject.toml", files.find_line("pyproject.toml", "requires-python")),
            "requires-python",
        )
    poetry_python = (
        pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {}).get("python")
    )
    if isinstance(poetry_python, str):
        findings.add(
            "runtime_version",
            normalize_version(poetry_python),
            "manifest",
            files.evidence("pyproject.toml"),
            "poetry's python dependency",
        )
    pipfile_python = _toml(files, "Pipfile").get("requires", {}).get("python_version")
    if isinstance(pipfile_python, str):
        findings.add(
            "runtime_version",
            normalize_version(pipfile_python),
            "manifest",
            files.evidence("Pipfile", files.find_line("Pipfile", "python_version")),
        )


def _port(files: AppFiles, findings: Findings, name: str | None) -> None:
    ports_in_code(files, findings, (".py",), _PORT_IN_CODE)
    findings.add("port", DEFAULT_PORTS[name], "default", note=f"{name or 'python'}'s default port")


def _database(files: AppFiles, deps: dict[str, Evidence], findings: Findings) -> None:
    for rel in files.source_files(".py"):
        if rel.endswith("settings.py") or "/settings/" in rel:
            for number, match in files.scan(rel, _DJANGO_ENGINE):
                engine = _DJANGO_ENGINES.get(match.group(1))
                findings.add(
                    "database_engine",
                    engine,
                    "config",
                    files.evidence(rel, number),
                    "Django DATABASES",
                )
        for number, _match in files.scan(rel, _SQLITE_URI):
            findings.add(
                "database_engine",
                "sqlite",
                "config",
                files.evidence(rel, number),
                "a sqlite:/// database URI",
            )
    for dep, engine in DRIVERS:
        if dep in deps:
            findings.add("database_engine", engine, "driver", deps[dep], f"depends on {dep}")


def _module_of(rel: str) -> str:
    path = PurePosixPath(rel)
    parts = list(path.with_suffix("").parts)
    if parts and parts[0] == "src" and len(parts) > 1:
        parts = parts[1:]
    return ".".join(parts)


def _app_object(files: AppFiles, name: str) -> tuple[str, Evidence] | None:
    """'module:variable' for the Flask/FastAPI app object, shallowest file first."""
    pattern = _APP_OBJECT[name]
    candidates = sorted(files.source_files(".py"), key=lambda r: (r.count("/"), r))
    for rel in candidates:
        for number, match in files.scan(rel, pattern):
            return f"{_module_of(rel)}:{match.group(1)}", files.evidence(rel, number)
    return None


def _django_wsgi(files: AppFiles) -> tuple[str, Evidence] | None:
    candidates = sorted(
        (r for r in files.source_files(".py") if r.endswith("wsgi.py")),
        key=lambda r: (r.count("/"), r),
    )
    for rel in candidates:
        if _WSGI_MODULE.search(files.read(rel) or ""):
            return _module_of(rel), files.evidence(rel)
    return None


def _commands(
    files: AppFiles, deps: dict[str, Evidence], findings: Findings, name: str | None
) -> None:
    if files.exists("requirements.txt"):
        findings.add(
            "build_command",
            "pip install -r requirements.txt",
            "stack",
            files.evidence("requirements.txt"),
        )
    elif files.exists("pyproject.toml"):
        findings.add("build_command", "pip install .", "stack", files.evidence("pyproject.toml"))
    elif files.exists("Pipfile"):
        findings.add(
            "build_command",
            "pip install pipenv && pipenv install --deploy --system",
            "stack",
            files.evidence("Pipfile"),
        )

    if name == "django":
        wsgi = _django_wsgi(files)
        if wsgi and "gunicorn" in deps:
            findings.add(
                "start_command",
                f"gunicorn {wsgi[0]} --bind 0.0.0.0:$PORT",
                "stack",
                wsgi[1],
                "Django's WSGI module under gunicorn",
            )
        elif files.exists("manage.py"):
            findings.add(
                "start_command",
                "python manage.py runserver 0.0.0.0:$PORT",
                "stack",
                files.evidence("manage.py"),
            )
            findings.warnings.append(
                "Django would run on its development server: add gunicorn to the requirements "
                "for production"
            )
    elif name in _APP_OBJECT:
        target = _app_object(files, name)
        if target is None:
            return
        if name == "flask" and "gunicorn" in deps:
            command = f"gunicorn {target[0]} --bind 0.0.0.0:$PORT"
        elif name == "flask":
            module, _, variable = target[0].partition(":")
            command = f"flask --app {module}:{variable} run --host 0.0.0.0 --port $PORT"
            findings.warnings.append(
                "Flask would run on its development server: add gunicorn to the requirements "
                "for production"
            )
        elif "gunicorn" in deps and "uvicorn" in deps:
            command = f"gunicorn {target[0]} -k uvicorn.workers.UvicornWorker --bind 0.0.0.0:$PORT"
        else:
            command = f"uvicorn {target[0]} --host 0.0.0.0 --port $PORT"
        findings.add("start_command", command, "stack", target[1], f"the {name} app object")
