"""From what was found and what the user said to a `DeploymentSpec`.

Precedence, per field: CLI flags > `hivemind.yaml` > detection > defaults. Each
field's winner is recorded as its provenance. Invalid values are reported per
field with the bad value, what is allowed, and where the value came from.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hivemind.config import CONFIG_FILE, UserConfig, load_user_config
from hivemind.errors import BadInputError
from hivemind.recon.analyzer import LOOKED_FOR, analyze
from hivemind.recon.findings import slugify
from hivemind.recon.model import AppProfile, Fact
from hivemind.recon.source import RepoCheckout, open_repo

if TYPE_CHECKING:
    from hivemind_agents.base import Advisor
from hivemind.spec import (
    APP_NAME_PATTERN,
    CERTIFICATE_ARN_PATTERN,
    DB_INSTANCE_CLASS_PATTERN,
    DEFAULT_ROOT_VOLUME_GB,
    DOMAIN_PATTERN,
    ENV_VAR_PATTERN,
    INSTANCE_TYPE_PATTERN,
    NEW_SPEC,
    PROVIDED_DATABASE_ENV_VARS,
    PROVIDED_ENV_VARS,
    REGION_PATTERN,
    RUNTIME_VERSION_PATTERN,
    SUPPORTED_ENGINE_VERSIONS,
    DeploymentSpec,
    LoadBalancerSpec,
    Provenance,
    Source,
)

# The one table of profile-dependent defaults.
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "stage-1": {
        "compute.instance_type": "t3.micro",
        "compute.count": 1,
        "database.instance_class": "db.t3.micro",
        "database.storage_gb": 20,
    },
    "production": {
        "compute.instance_type": "t3.small",
        "compute.count": 2,
        "database.instance_class": "db.t3.small",
        "database.storage_gb": 20,
    },
}
DEFAULT_PROFILE = "production"
DEFAULT_REGION = "us-east-1"
# Builds that need more memory than a t3.micro has.
HEAVY_BUILD_LANGUAGES = {"java": "t3.small"}
RUNTIME_DEFAULTS = {"node": "20", "python": "3.12", "go": "1.22", "java": "17", "ruby": "3.3"}
PORT_DEFAULTS = {"node": 3000, "python": 8000, "go": 8080, "java": 8080, "ruby": 3000}
ENGINE_VERSION_DEFAULTS = {"postgres": "16", "mysql": "8.0"}
MONGODB_URL_NAMES = ("MONGODB_URI", "MONGODB_URL", "MONGO_URL", "MONGO_URI")

# What a person should read instead of a regular expression.
_PATTERN_HINTS = {
    APP_NAME_PATTERN: (
        "lowercase letters, digits and dashes, 2-24 characters, starting with a letter"
    ),
    ENV_VAR_PATTERN: "letters, digits and underscores, not starting with a digit",
    REGION_PATTERN: "an AWS region such as us-east-1 or eu-west-2",
    INSTANCE_TYPE_PATTERN: "an EC2 instance type such as t3.small",
    DB_INSTANCE_CLASS_PATTERN: "an RDS instance class such as db.t3.micro",
    RUNTIME_VERSION_PATTERN: "a version number such as 20, 3.12 or 1.22.1",
    CERTIFICATE_ARN_PATTERN: "an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)",
    DOMAIN_PATTERN: "a host name such as app.example.com (letters, digits, dashes and dots)",
    r"^/[^\s]*$": "a URL path starting with '/'",
}


@dataclass(frozen=True)
class Overrides:
    """Values given on the command line: dotted spec path -> (value, flag as typed)."""

    values: dict[str, tuple[object, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class RepoReading:
    """A repository read: where it is, what the user configured, what Recon found."""

    checkout: RepoCheckout
    config: UserConfig
    profile: AppProfile


def read_repo(
    ref: str,
    overrides: Overrides | None = None,
    progress: Callable[[str], None] | None = None,
    advisor: Advisor | None = None,
) -> RepoReading:
    """Open the repository, load its hivemind.yaml and analyze the app's folder; with a
    model configured, Recon proposes what the analyzer left unknown (checked evidence)."""
    overrides = overrides or Overrides()
    checkout = open_repo(ref, progress)
    config = load_user_config(checkout.path)
    subdir: object = None
    evidence: str | None = None
    if "app.subdir" in overrides.values:
        subdir, evidence = overrides.values["app.subdir"]
    elif "app.subdir" in config.values:
        subdir, evidence = config.values["app.subdir"], config.evidence("app.subdir")
    if subdir is not None and not isinstance(subdir, str):
        raise BadInputError(f"app.subdir must be a folder path, not {subdir!r}", where=evidence)
    profile = analyze(checkout, subdir=subdir, subdir_evidence=evidence)
    if advisor is not None and advisor.configured:
        profile = _with_recon_proposals(checkout.path, profile, advisor)
    stated = "app.language" in overrides.values or "app.language" in config.values
    if "language" not in profile.facts and not stated:
        raise no_app_error(ref)
    return RepoReading(checkout, config, profile)


def _with_recon_proposals(root: Path, profile: AppProfile, advisor: Advisor) -> AppProfile:
    from hivemind_agents.recon import Recon, ReconInput, apply_proposals

    app_root = root / str(profile.app_dir.value or ".")
    answer = advisor.ask(Recon(log=advisor.log), ReconInput(root=app_root, profile=profile))
    if answer.source != "model" or not answer.value.proposals:
        return profile
    proposed: AppProfile = apply_proposals(
        profile, app_root, answer.value, answer.model or "the model"
    )
    return proposed


def no_app_error(repo: str) -> BadInputError:
    return BadInputError(
        f"no recognisable app in {repo}",
        cause="looked for: " + "; ".join(LOOKED_FOR),
        next_step=f"if the app is in a subfolder, set app.subdir in {CONFIG_FILE}; otherwise "
        "state it there, e.g.\n         app:\n           language: python\n"
        "           start_command: python server.py\n           port: 8000",
    )


def spec_for_repo(
    ref: str,
    overrides: Overrides | None = None,
    progress: Callable[[str], None] | None = None,
    advisor: Advisor | None = None,
) -> tuple[RepoReading, DeploymentSpec]:
    overrides = overrides or Overrides()
    reading = read_repo(ref, overrides, progress, advisor)
    return reading, build_spec(reading.profile, reading.config, overrides)


def build_spec(profile: AppProfile, config: UserConfig, overrides: Overrides) -> DeploymentSpec:
    """Resolve every field by precedence and validate the result."""
    return _Resolver(profile, config, overrides).resolve()


class _Resolver:
    def __init__(self, profile: AppProfile, config: UserConfig, overrides: Overrides) -> None:
        self.profile = profile
        self.config = config
        self.overrides = overrides
        self.raw: dict[str, Any] = {}
        self.provenance: dict[str, Provenance] = {}
        self.notes: list[str] = list(profile.warnings)

    def _user(self, path: str) -> tuple[object, Provenance] | None:
        if path in self.overrides.values:
            value, flag = self.overrides.values[path]
            return value, Provenance(source=Source.USER, evidence=flag)
        if path in self.config.values:
            return self.config.values[path], Provenance(
                source=Source.USER, evidence=self.config.evidence(path)
            )
        return None

    def _set(self, path: str, value: object, provenance: Provenance) -> object:
        self.raw[path] = value
        self.provenance[path] = provenance
        return value

    def pick(self, path: str, fact: Fact | None, default: object, default_note: str = "") -> object:
        user = self._user(path)
        if user is not None:
            return self._set(path, *user)
        if fact is not None and fact.value is not None:
            evidence = str(fact.evidence) if fact.evidence else None
            note = fact.note or f"from {fact.source}"
            source = Source.LLM if fact.source == "llm" else Source.DETECTED
            return self._set(
                path, fact.value, Provenance(source=source, evidence=evidence, note=note)
            )
        return self._set(path, default, Provenance(source=Source.DEFAULT, note=default_note))

    def fact(self, name: str) -> Fact | None:
        return self.profile.facts.get(name)

    def resolve(self) -> DeploymentSpec:
        profile = self.pick("profile", None, DEFAULT_PROFILE, "HiveMind builds for production")
        defaults = PROFILE_DEFAULTS.get(str(profile), PROFILE_DEFAULTS[DEFAULT_PROFILE])

        language = self.pick("app.language", self.fact("language"), None)
        if language is None:
            raise no_app_error(self.profile.repo)
        language = str(language)
        name_fact = self.fact("name")
        if name_fact is not None and isinstance(name_fact.value, str):
            name_fact = name_fact.model_copy(update={"value": slugify(name_fact.value)})
        self.pick("app.name", name_fact, "app")
        self.pick("app.framework", self.fact("framework"), None, "no framework detected")
        self.pick(
            "app.runtime_version",
            self.fact("runtime_version"),
            RUNTIME_DEFAULTS.get(language),
            f"HiveMind's default {language} version",
        )
        self.pick("app.subdir", self.profile.app_dir, ".")
        self.pick("app.build_command", self.fact("build_command"), None, "nothing to build")
        start = self.pick("app.start_command", self.fact("start_command"), None)
        if start is None:
            raise BadInputError(
                "could not work out how to start the app",
                where=f"{self.raw['app.subdir']} ({language})",
                cause="no Procfile web process, start script, Dockerfile CMD or known app object",
                next_step=f"set app.start_command in {CONFIG_FILE}, e.g. "
                "`app:\\n  start_command: ./run-server --port $PORT`",
            )
        self.pick(
            "app.port", self.fact("port"), PORT_DEFAULTS.get(language), f"the usual {language} port"
        )
        self.pick("app.health_path", self.fact("health_path"), "/", "no health route found")

        engine = self._database(defaults)
        self._env_vars(engine)
        self.pick("app.env", None, {}, "no plain environment values given")

        instance_default = defaults["compute.instance_type"]
        if profile == "stage-1" and language in HEAVY_BUILD_LANGUAGES:
            instance_default = HEAVY_BUILD_LANGUAGES[language]
        self.pick(
            "compute.instance_type",
            None,
            instance_default,
            f"the {profile} profile's instance type",
        )
        self.pick(
            "compute.count",
            None,
            defaults["compute.count"],
            f"the {profile} profile's instance count",
        )
        self.pick("compute.active_color", None, "blue", "the first release runs on blue")
        self.pick("compute.standby_count", None, 0, "no standby instances between updates")
        self.pick("compute.public_color", None, None, "set only while upgrading to production")
        self.pick(
            "compute.root_volume_gb",
            None,
            DEFAULT_ROOT_VOLUME_GB,
            "room for the system, the runtime and a few releases",
        )
        self.pick("access.certificate_arn", None, None, "no certificate: HTTP on port 80")
        self.pick("access.domain", None, None, "no domain: the load balancer's own DNS name")
        self.pick("access.ssh_cidr", None, None, "no SSH rule (set --ssh-cidr to add one)")
        self.pick("access.allow_wide_ssh", None, False, "SSH from at most a /16 (IPv6: a /48)")
        balancing = LoadBalancerSpec()
        for key, why in (
            ("health_check_interval", "seconds between health checks"),
            ("healthy_threshold", "checks passed before traffic"),
            ("unhealthy_threshold", "checks failed before no traffic"),
            ("deregistration_delay", "seconds an instance may drain"),
        ):
            self.pick(f"load_balancer.{key}", None, getattr(balancing, key), f"HiveMind's {why}")
        self._region()
        self.pick("xray", None, False, "tracing is opt-in (--xray)")
        self.pick("tags", None, {}, "no extra tags")
        return self._validate()

    def _database(self, defaults: dict[str, Any]) -> str:
        detected = self.fact("database_engine")
        engine_fact = detected
        unprovisioned = detected is not None and detected.value in ("sqlite", "mongodb")
        if detected is not None and unprovisioned:
            engine_fact = detected.model_copy(
                update={"value": "none", "note": f"{detected.value} is not provisioned by HiveMind"}
            )
        engine = str(self.pick("database.engine", engine_fact, "none", "no database found"))
        if detected is not None and unprovisioned and engine == "none":
            where = f" ({detected.evidence})" if detected.evidence else ""
            if detected.value == "sqlite":
                self.notes.append(
                    f"The app uses SQLite{where}: its database file lives on the instance's disk, "
                    "is not shared between instances and is lost when an instance is replaced. "
                    "Set database.engine: postgres for a managed database."
                )
            else:
                self.notes.append(
                    f"The app uses MongoDB{where}, which HiveMind does not provision: give its "
                    "connection URL (MongoDB Atlas, Amazon DocumentDB) in the environment."
                )
        if engine not in SUPPORTED_ENGINE_VERSIONS:
            for key in (
                "database.engine_version",
                "database.instance_class",
                "database.storage_gb",
            ):
                user = self._user(key)
                self._set(
                    key, *(user or (None, Provenance(source=Source.DEFAULT, note="no database")))
                )
            return engine
        version_fact = self.fact("database_version")
        if version_fact is not None and version_fact.value not in SUPPORTED_ENGINE_VERSIONS[engine]:
            self.notes.append(
                f"{version_fact.evidence} pins {engine} {version_fact.value}, "
                "which HiveMind does not "
                f"build; using {ENGINE_VERSION_DEFAULTS[engine]} "
                f"(supported: {', '.join(SUPPORTED_ENGINE_VERSIONS[engine])})"
            )
            version_fact = None
        self.pick(
            "database.engine_version",
            version_fact,
            ENGINE_VERSION_DEFAULTS[engine],
            f"HiveMind's default {engine} version",
        )
        self.pick(
            "database.instance_class",
            None,
            defaults["database.instance_class"],
            "the profile's database size",
        )
        self.pick(
            "database.storage_gb",
            None,
            defaults["database.storage_gb"],
            "the smallest gp3 allocation",
        )
        return engine

    def _env_vars(self, engine: str) -> None:
        provided = set(PROVIDED_ENV_VARS)
        if engine != "none":
            provided |= set(PROVIDED_DATABASE_ENV_VARS)
        required = [v for v in self.profile.env_vars if v.required and v.name not in provided]
        names = [v.name for v in required]
        detected = self.fact("database_engine")
        if detected is not None and detected.value == "mongodb":
            read = {v.name for v in self.profile.env_vars}
            mongo = next((n for n in MONGODB_URL_NAMES if n in read), None)
            mongo = mongo or ("DATABASE_URL" if "DATABASE_URL" in read else MONGODB_URL_NAMES[0])
            if mongo not in names:
                names.append(mongo)
        user = self._user("app.env_vars")
        if user is not None:
            value, provenance = user
            listed = tuple(value) if isinstance(value, list) else value
            self._set("app.env_vars", listed, provenance)
        elif names:
            evidence = ", ".join(f"{v.name} ({v.evidence[0]})" for v in required if v.evidence)
            note = f"read with no default: {evidence}" if evidence else "MongoDB's connection URL"
            self._set(
                "app.env_vars", tuple(sorted(names)), Provenance(source=Source.DETECTED, note=note)
            )
        else:
            note = "no variable the operator must set"
            self._set("app.env_vars", (), Provenance(source=Source.DEFAULT, note=note))

    def _region(self) -> None:
        for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            if os.environ.get(variable):
                region_default: tuple[str, str] = (os.environ[variable], f"from ${variable}")
                break
        else:
            region_default = (DEFAULT_REGION, "HiveMind's default region")
        user = self._user("region")
        if user is not None:
            self._set("region", *user)
        else:
            self._set(
                "region",
                region_default[0],
                Provenance(source=Source.DEFAULT, note=region_default[1]),
            )

    def _validate(self) -> DeploymentSpec:
        document: dict[str, Any] = {}
        for path, value in self.raw.items():
            section, _, leaf = path.partition(".")
            if leaf:
                document.setdefault(section, {})[leaf] = value
            else:
                document[section] = value
        document["notes"] = tuple(self.notes)
        document["provenance"] = self.provenance
        try:
            return DeploymentSpec.model_validate(document, context={NEW_SPEC: True})
        except ValidationError as exc:
            raise self._explain(exc) from None

    def _explain(self, exc: ValidationError) -> BadInputError:
        problems = []
        for error in exc.errors():
            loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
            path = ".".join(loc)
            message = str(error["msg"]).removeprefix("Value error, ")
            for known in self.provenance:
                if message.startswith(known):
                    path = known
                    break
            if error["type"] == "string_pattern_mismatch":
                pattern = str(error.get("ctx", {}).get("pattern", ""))
                message = f"must be {_PATTERN_HINTS.get(pattern, f'matching {pattern}')}"
            value = self.raw.get(path, error.get("input"))
            where = self.provenance.get(path)
            origin = f" (from {where.describe()})" if where else ""
            problems.append(f"{path or 'spec'} = {value!r}: {message}{origin}")
        first = self.provenance.get(problems[0].split(" ", 1)[0])
        return BadInputError(
            "the deployment spec is not valid",
            where=first.evidence if first and first.evidence else None,
            details=problems,
            next_step=f"fix the value in {CONFIG_FILE} or the flag shown; "
            "`hivemind spec schema` lists what each setting accepts",
        )
