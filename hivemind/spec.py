"""The typed deployment spec: what HiveMind will build, and where each value came from.

`DeploymentSpec` is plain, frozen data. Every field's provenance lives in
`DeploymentSpec.provenance`, keyed by the field's dotted path (``app.port``),
so the compiler reads plain values while a person can always ask "why this?".
The spec is versioned (`schema_version`) and round-trips through JSON.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hivemind.errors import BadInputError

SCHEMA_VERSION: Final = 1

Language = Literal["node", "python", "go", "java", "ruby"]
LANGUAGES: tuple[str, ...] = ("node", "python", "go", "java", "ruby")
Profile = Literal["stage-1", "production"]
PROFILES: tuple[str, ...] = ("stage-1", "production")
DatabaseEngine = Literal["postgres", "mysql", "none"]
DATABASE_ENGINES: tuple[str, ...] = ("postgres", "mysql", "none")

# Engine versions RDS offers that HiveMind's constructs know how to build.
SUPPORTED_ENGINE_VERSIONS: dict[str, tuple[str, ...]] = {
    "postgres": ("13", "14", "15", "16", "17"),
    "mysql": ("8.0", "8.4"),
}

APP_NAME_PATTERN = r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$"
ENV_VAR_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
REGION_PATTERN = r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$"
INSTANCE_TYPE_PATTERN = r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$"
DB_INSTANCE_CLASS_PATTERN = r"^db\.[a-z][a-z0-9-]*\.[a-z0-9-]+$"
# Digits are [0-9]: pydantic's regex engine reads \d as any script's digits.
RUNTIME_VERSION_PATTERN = r"^[0-9]+(\.[0-9]+){0,2}$"
HEALTH_PATH_PATTERN = r"^/[A-Za-z0-9._~!$&()*+,;=:@%/-]*(\?[A-Za-z0-9._~!$&()*+,;=:@%/?-]*)?$"
# The widest SSH source range taken without access.allow_wide_ssh, by IP version.
WIDEST_SSH_PREFIX = {4: 16, 6: 48}
CERTIFICATE_ARN_PATTERN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$"
# Validation context of a spec being made (not a recorded one being read back): rules
# added since specs were first recorded apply to new specs only.
NEW_SPEC: Final = "new_spec"
# A fully qualified domain name: dot-separated labels of letters, digits and inner hyphens
# (RFC 1123), at least two labels, 253 characters at most; lowercase (DNS names are
# case-insensitive, and ACM stores them lowercase).
DOMAIN_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
# Environment variables HiveMind itself sets on the instances, so the operator never
# has to: the port always, the database's settings when HiveMind provisions one.
PROVIDED_ENV_VARS: tuple[str, ...] = ("PORT",)
PROVIDED_DATABASE_ENV_VARS: tuple[str, ...] = (
    "DATABASE_URL",
    "DB_HOST",
    "DB_PORT",
    "DB_NAME",
    "DB_USER",
    "DB_PASSWORD",
)
# Tag keys under these prefixes belong to AWS and to HiveMind itself.
RESERVED_TAG_PREFIXES = ("aws:", "hivemind:")


class Source(StrEnum):
    """Where a spec value came from, strongest last in precedence order."""

    DEFAULT = "default"
    DETECTED = "detected"
    LLM = "llm"
    USER = "user"


class Provenance(BaseModel):
    """Why a field has its value: the source, the evidence (file:line or flag), a note."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Source
    evidence: str | None = None
    note: str = ""

    def describe(self) -> str:
        where = f" ({self.evidence})" if self.evidence else ""
        note = f": {self.note}" if self.note else ""
        return f"{self.source.value}{where}{note}"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AppSpec(_Frozen):
    """The application: what it is and how to build, start and check it."""

    name: Annotated[str, Field(pattern=APP_NAME_PATTERN, description="lowercase slug, 2-24 chars")]
    language: Language
    framework: str | None = None
    runtime_version: Annotated[str, Field(pattern=RUNTIME_VERSION_PATTERN)]
    subdir: str = Field(".", description="the app's folder, relative to the repository root")
    build_command: str | None = None
    start_command: Annotated[str, Field(min_length=1)]
    port: Annotated[int | None, Field(ge=1, le=65535)] = Field(
        description="the port the app listens on; null for an app that serves no HTTP"
    )
    # ELB's HealthCheckPath: 1-1024 characters. HiveMind takes an absolute path of URL
    # characters (RFC 3986's unreserved and sub-delimiters but the quote, ":", "@", "%"
    # escapes, an optional query): nothing a shell, a unit file or a program would read
    # as anything but text.
    health_path: Annotated[str, Field(pattern=HEALTH_PATH_PATTERN, max_length=1024)] = "/"
    env_vars: tuple[Annotated[str, Field(pattern=ENV_VAR_PATTERN)], ...] = Field(
        (), description="names of environment variables the operator must provide"
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="plain (not secret) values of environment variables the app reads; "
        "they are kept in the deployment record",
    )

    @field_validator("subdir")
    @classmethod
    def _relative_subdir(cls, value: str) -> str:
        parts = value.replace("\\", "/").strip("/").split("/")
        if value.startswith("/") or ".." in parts:
            raise ValueError("must be a folder inside the repository (no leading '/', no '..')")
        cleaned = "/".join(p for p in parts if p not in ("", "."))
        return cleaned or "."

    @field_validator("env")
    @classmethod
    def _valid_env(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not re.fullmatch(ENV_VAR_PATTERN, name):
                raise ValueError(
                    f"env {name!r}: names are letters, digits and _, not first a digit"
                )
            if "\n" in value or "\0" in value or len(value) > 4096:
                raise ValueError(f"env {name}: one line of at most 4096 characters")
        return dict(sorted(env.items()))

    @field_validator("env_vars")
    @classmethod
    def _sorted_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))


class DatabaseSpec(_Frozen):
    """The managed database; engine `none` means HiveMind provisions no database."""

    engine: DatabaseEngine = "none"
    engine_version: str | None = None
    instance_class: Annotated[str | None, Field(pattern=DB_INSTANCE_CLASS_PATTERN)] = None
    storage_gb: Annotated[int | None, Field(ge=20, le=65536)] = None

    @model_validator(mode="after")
    def _consistent(self) -> DatabaseSpec:
        if self.engine == "none":
            extra = [
                f
                for f in ("engine_version", "instance_class", "storage_gb")
                if getattr(self, f) is not None
            ]
            if extra:
                raise ValueError(
                    f"database.{extra[0]} is set but database.engine is none; "
                    "set database.engine (postgres or mysql) or remove it"
                )
            return self
        allowed = SUPPORTED_ENGINE_VERSIONS[self.engine]
        if self.engine_version not in allowed:
            raise ValueError(
                f"database.engine_version {self.engine_version!r} is not supported "
                f"for {self.engine}; "
                f"allowed: {', '.join(allowed)}"
            )
        if self.instance_class is None or self.storage_gb is None:
            raise ValueError(
                f"database.instance_class and database.storage_gb are required for {self.engine}"
            )
        return self


Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")


# Room for Amazon Linux, the runtime, a few releases and their dependencies.
DEFAULT_ROOT_VOLUME_GB = 16


class ComputeSpec(_Frozen):
    """The instances the app runs on: two sets, blue and green, behind one load balancer.

    The listener forwards to the active colour's `count` instances; the other colour
    has `standby_count` (usually 0), so a blue-green update is a change of this spec.
    """

    instance_type: Annotated[str, Field(pattern=INSTANCE_TYPE_PATTERN)]
    count: Annotated[int, Field(ge=1, le=20)]
    active_color: Color = "blue"
    standby_count: Annotated[int, Field(ge=0, le=20)] = 0
    public_color: Color | None = Field(
        None,
        description="during an upgrade to production: the colour still placed as in "
        "stage-1 (public subnets) while the other is built in the private ones",
    )
    root_volume_gb: Annotated[int, Field(ge=8, le=16384)] = Field(
        DEFAULT_ROOT_VOLUME_GB,
        description="each instance's root volume (encrypted gp3), in GiB: the system, the "
        "app's releases and its dependencies live there",
    )

    def instances(self, color: Color) -> int:
        return self.count if color == self.active_color else self.standby_count


class AccessSpec(_Frozen):
    """How people reach the deployment: TLS on the load balancer, SSH for the operator."""

    certificate_arn: Annotated[str | None, Field(pattern=CERTIFICATE_ARN_PATTERN)] = Field(
        None, description="an ACM certificate: HTTPS on 443, and port 80 redirects to it"
    )
    domain: Annotated[str | None, Field(pattern=DOMAIN_PATTERN, max_length=253)] = Field(
        None,
        description="the name people reach the app at (its DNS record points at the load "
        "balancer); HTTPS is checked for this name, which the certificate must cover",
    )
    ssh_cidr: str | None = Field(
        None, description="the operator's address range allowed to SSH; none means no SSH rule"
    )
    allow_wide_ssh: bool = Field(
        False, description="accept an ssh_cidr wider than a /16 (IPv6: a /48)"
    )

    @field_validator("ssh_cidr")
    @classmethod
    def _not_the_world(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError("must be an address range such as 203.0.113.7/32") from None
        if network.prefixlen == 0:
            raise ValueError("SSH is never opened to the whole internet; give your address /32")
        return str(network)

    @field_validator("domain", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower().removesuffix(".") if isinstance(value, str) else value

    @model_validator(mode="after")
    def _certificate_names_its_domain(self, info: ValidationInfo) -> AccessSpec:
        # An ACM certificate is issued for the operator's domain, never for the load
        # balancer's *.elb.amazonaws.com name: HTTPS can only be checked for that domain.
        # Required of new specs (validated with NEW_SPEC); a deployment recorded before
        # access.domain existed still loads.
        new = bool(info.context and info.context.get(NEW_SPEC))
        if new and self.certificate_arn is not None and self.domain is None:
            raise ValueError(
                "access.domain must name the domain the certificate is for: give "
                "--domain, e.g. --domain app.example.com"
            )
        return self

    @model_validator(mode="after")
    def _not_too_wide(self) -> AccessSpec:
        if self.ssh_cidr is None or self.allow_wide_ssh:
            return self
        network = ipaddress.ip_network(self.ssh_cidr)
        narrowest = WIDEST_SSH_PREFIX[network.version]
        if network.prefixlen < narrowest:
            raise ValueError(
                f"ssh_cidr {network} opens SSH to {network.num_addresses:,} addresses, wider "
                f"than a /{narrowest}: give your own address (/32), or pass --allow-wide-ssh "
                "(access.allow_wide_ssh) if you mean it"
            )
        return self


class LoadBalancerSpec(_Frozen):
    """How the load balancer checks each instance and lets one go: its target groups'
    health check and deregistration delay, within the ranges Elastic Load Balancing
    accepts (ALB target group health checks: interval 5-300 s, thresholds 2-10;
    deregistration delay 0-3600 s). Faster checks put an instance in service sooner
    after a deploy; a shorter delay drains it sooner in a rolling update, cutting
    in-flight requests longer than it."""

    health_check_interval: Annotated[int, Field(ge=5, le=300)] = Field(
        15, description="seconds between two health checks of an instance"
    )
    healthy_threshold: Annotated[int, Field(ge=2, le=10)] = Field(
        2, description="passed checks in a row before an instance gets traffic"
    )
    unhealthy_threshold: Annotated[int, Field(ge=2, le=10)] = Field(
        3, description="failed checks in a row before an instance stops getting traffic"
    )
    deregistration_delay: Annotated[int, Field(ge=0, le=3600)] = Field(
        30, description="seconds an instance taken out of service may finish its requests"
    )

    @property
    def health_check_timeout(self) -> int:
        """ELB requires the timeout to be shorter than the interval: 5 s, or less."""
        return min(5, self.health_check_interval - 1)


class DeploymentSpec(_Frozen):
    """Everything HiveMind needs to build and run one deployment."""

    schema_version: Literal[1] = SCHEMA_VERSION
    app: AppSpec
    database: DatabaseSpec
    compute: ComputeSpec
    access: AccessSpec = AccessSpec()
    load_balancer: LoadBalancerSpec = LoadBalancerSpec()
    profile: Profile
    region: Annotated[str, Field(pattern=REGION_PATTERN)]
    xray: bool = False
    tags: dict[str, str] = Field(default_factory=dict)
    notes: tuple[str, ...] = Field(
        (), description="consequences of what was found that the operator should know"
    )
    provenance: dict[str, Provenance] = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _valid_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not 1 <= len(key) <= 128 or len(value) > 256:
                raise ValueError(f"tag {key!r}: keys are 1-128 characters, values up to 256")
            if key.lower().startswith(RESERVED_TAG_PREFIXES):
                raise ValueError(
                    f"tag {key!r}: the prefixes {', '.join(RESERVED_TAG_PREFIXES)} are reserved"
                )
            if not re.fullmatch(r"[\w .:/=+\-@]*", key + value):
                raise ValueError(f"tag {key!r}: only letters, digits, spaces and _.:/=+-@")
        return tags

    @model_validator(mode="after")
    def _production_is_redundant(self) -> DeploymentSpec:
        compute = self.compute
        if compute.public_color is not None and self.profile != "production":
            raise ValueError(
                "compute.public_color is for an upgrade to production only; in stage-1 "
                "every instance is in a public subnet"
            )
        # While an upgrade builds production beside it, the stage-1 colour serves alone.
        upgrading = compute.public_color == compute.active_color
        if self.profile == "production" and compute.count < 2 and not upgrading:
            raise ValueError(
                "compute.count must be at least 2 for the production profile "
                "(instances across two availability zones); use profile stage-1 for one instance"
            )
        return self

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"

    def with_changes(self, changes: Mapping[str, object], provenance: Provenance) -> DeploymentSpec:
        """This spec with dotted fields (`app.port`) set, each with `provenance`.

        An unknown path or a value the field does not accept is bad input, naming it."""
        document = self.model_dump(mode="python")
        known = set(field_paths())
        for path, value in changes.items():
            if path not in known:
                raise BadInputError(
                    f"{path} is not a deployment spec setting",
                    next_step="`hivemind spec schema` lists the settings",
                )
            section, _, leaf = path.partition(".")
            if leaf:
                document[section][leaf] = value
            else:
                document[section] = value
        document["provenance"] = {**self.provenance, **dict.fromkeys(changes, provenance)}
        try:
            return DeploymentSpec.model_validate(document, context={NEW_SPEC: True})
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise BadInputError(
                "the change would make the deployment spec invalid",
                cause=problems[0],
                details=problems[1:],
            ) from None

    @classmethod
    def from_json(cls, text: str, *, new: bool = False) -> DeploymentSpec:
        """A spec from its JSON: `new` for one given to a command (`--spec FILE`), to
        which every rule applies; a recorded one is read back as it was made."""
        return cls.model_validate_json(text, context={NEW_SPEC: True} if new else None)


def field_paths() -> list[str]:
    """Every dotted field path that carries provenance, in spec order."""
    paths: list[str] = []
    for name, info in DeploymentSpec.model_fields.items():
        if name in ("schema_version", "notes", "provenance"):
            continue
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            paths.extend(f"{name}.{child}" for child in sub.model_fields)
        else:
            paths.append(name)
    return paths


def json_schema() -> dict[str, object]:
    """The JSON Schema of `DeploymentSpec`, as `hivemind spec schema` prints it."""
    schema = DeploymentSpec.model_json_schema()
    schema["$id"] = f"https://hivemind.dev/schemas/deployment-spec-v{SCHEMA_VERSION}.json"
    return schema
