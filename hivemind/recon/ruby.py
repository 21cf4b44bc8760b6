"""Ruby apps: rails and sinatra."""

from __future__ import annotations

import re

from hivemind.recon.common import pinned_versions, ports_in_code
from hivemind.recon.files import AppFiles
from hivemind.recon.findings import Findings, normalize_version
from hivemind.recon.model import Evidence

LANGUAGE = "ruby"
MANIFESTS = ("Gemfile",)
FRAMEWORKS = (("rails", "rails"), ("railties", "rails"), ("sinatra", "sinatra"))
DEFAULT_PORTS = {"rails": 3000, "sinatra": 4567, None: 3000}
DRIVERS = (
    ("pg", "postgres"),
    ("mysql2", "mysql"),
    ("trilogy", "mysql"),
    ("mongoid", "mongodb"),
    ("sqlite3", "sqlite"),
)
_GEM = re.compile(r"^\s*gem\s+['\"]([\w-]+)['\"]")
_RUBY = re.compile(r"^\s*ruby\s+['\"]([^'\"]+)['\"]")
_SINATRA_PORT = re.compile(r"set\s+:port,\s*(\d{2,5})")
_PUMA_PORT = re.compile(r"^\s*port\s+(?:ENV\.fetch\([^)]*\)\s*\{\s*(\d{2,5})\s*\}|(\d{2,5}))")
_ADAPTER = re.compile(r"adapter:\s*(\w+)")
_ADAPTERS = {
    "postgresql": "postgres",
    "postgis": "postgres",
    "mysql2": "mysql",
    "trilogy": "mysql",
    "sqlite3": "sqlite",
}


def _gems(files: AppFiles) -> dict[str, Evidence]:
    gems: dict[str, Evidence] = {}
    for number, line in enumerate((files.read("Gemfile") or "").splitlines(), start=1):
        match = _GEM.match(line)
        if match:
            gems.setdefault(match.group(1), files.evidence("Gemfile", number))
    return gems


def framework(files: AppFiles) -> tuple[str, Evidence] | None:
    if not files.exists("Gemfile"):
        return None
    gems = _gems(files)
    for gem, name in FRAMEWORKS:
        if gem in gems:
            return name, gems[gem]
    return None


def detect(files: AppFiles, findings: Findings) -> None:
    gems = _gems(files)
    found = framework(files)
    name = found[0] if found else None
    if found:
        findings.add("framework", name, "manifest", found[1])

    pinned_versions(files, findings, ".ruby-version")
    for number, line in enumerate((files.read("Gemfile") or "").splitlines(), start=1):
        match = _RUBY.match(line)
        if match:
            findings.add(
                "runtime_version",
                normalize_version(match.group(1)),
                "manifest",
                files.evidence("Gemfile", number),
                "the Gemfile's ruby line",
            )

    ports_in_code(files, findings, (".rb",), (_SINATRA_PORT,))
    if files.exists("config/puma.rb"):
        for number, match in files.scan("config/puma.rb", _PUMA_PORT):
            port = match.group(1) or match.group(2)
            findings.add("port", int(port), "config", files.evidence("config/puma.rb", number))
    findings.add("port", DEFAULT_PORTS[name], "default", note=f"{name or 'rack'}'s default port")

    if files.exists("config/database.yml"):
        for number, match in files.scan("config/database.yml", _ADAPTER):
            findings.add(
                "database_engine",
                _ADAPTERS.get(match.group(1)),
                "config",
                files.evidence("config/database.yml", number),
                "config/database.yml",
            )
            break
    for gem, engine in DRIVERS:
        if gem in gems:
            findings.add("database_engine", engine, "driver", gems[gem], f"the {gem} gem")

    if files.exists("config/credentials.yml.enc") and not files.exists("config/master.key"):
        findings.env(
            "RAILS_MASTER_KEY", required=True, evidence=files.evidence("config/credentials.yml.enc")
        )

    gemfile = files.evidence("Gemfile")
    build = "bundle config set --local without 'development test' && bundle install"
    if name == "rails" and (
        files.exists("config/importmap.rb") or any(f.startswith("app/assets/") for f in files.files)
    ):
        build += " && bundle exec rails assets:precompile"
    findings.add("build_command", build, "stack", gemfile)
    if name == "rails":
        if files.exists("config/puma.rb"):
            command = "bundle exec puma -C config/puma.rb"
        else:
            command = "bundle exec rails server -b 0.0.0.0 -p $PORT"
        findings.add("start_command", command, "stack", gemfile, "the Rails server")
    elif files.exists("config.ru"):
        findings.add(
            "start_command",
            "bundle exec rackup -o 0.0.0.0 -p $PORT",
            "stack",
            files.evidence("config.ru"),
            "the rack app",
        )
    elif name == "sinatra":
        main = files.first("app.rb", "server.rb", "main.rb")
        if main:
            findings.add(
                "start_command",
                f"bundle exec ruby {main} -o 0.0.0.0 -p $PORT",
                "stack",
                files.evidence(main),
            )
