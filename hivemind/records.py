"""The local deployment record: `$HIVEMIND_HOME/deployments/<id>/`.

`state.json` (schema-versioned, written atomically: temp file, fsync, rename),
`spec.json`, `cdk.out/`, `events.log`, `report.md`. One lock per deployment: a
second mutating command on the same id is refused (exit 3) and told who holds it.
The record never holds a secret value: the database password stays in Secrets
Manager and the record keeps its ARN.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind.deployment_ids import check_deployment_id
from hivemind.errors import BadInputError, RefusedError
from hivemind.paths import home
from hivemind.spec import DeploymentSpec

STATE_SCHEMA_VERSION: Final = 1
STATE_FILE = "state.json"
SPEC_FILE = "spec.json"
# The spec as it was before a blue-green update or upgrade changed it (removed once the
# update ends either way): a retry after an interrupted update goes back to it.
SPEC_BEFORE_UPDATE_FILE = "spec-before-update.json"
LOCK_FILE = "lock"
EVENTS_FILE = "events.log"


class Status(StrEnum):
    """Where a deployment is in its life; one set of values for the whole tool."""

    PENDING = "pending"
    PROVISIONING = "provisioning"
    DEPLOYING = "deploying"
    VERIFYING = "verifying"
    DEPLOYED = "deployed"
    FAILED = "failed"
    UPDATING = "updating"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"


# Statuses in which a HiveMind process is (or was, if it died) changing things.
IN_PROGRESS = frozenset(
    {Status.PROVISIONING, Status.DEPLOYING, Status.VERIFYING, Status.UPDATING,
     Status.ROLLING_BACK, Status.DESTROYING}
)  # fmt: skip


# How many times `retry` resumes one deployment before it asks for --force.
MAX_RETRIES: Final = 3

# A deployment failed this long ago is probably forgotten: HiveMind suggests destroying it.
STALE_FAILURE: Final = timedelta(hours=24)


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StageResult(BaseModel):
    """One stage's outcome: what ran, how long, and what went wrong."""

    model_config = ConfigDict(extra="forbid")

    name: str
    status: Literal["running", "ok", "failed", "skipped"]
    started_at: str
    finished_at: str | None = None
    seconds: float | None = None
    detail: str = ""
    error: str | None = None


class ResourceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    logical_id: str
    resource_type: str
    physical_id: str | None = None
    monthly_usd: float = 0.0


class SourceRecord(BaseModel):
    """Where the deployed release came from, so `retry` can pack it again."""

    model_config = ConfigDict(extra="forbid")

    ref: str  # the repository as given: a path or a git URL
    subdir: str = "."
    version: str | None = None  # the commit, tag or branch asked for; None: the checkout
    commit: str | None = None
    release_id: str
    files: int = 0
    note: str = ""


class InstanceRelease(BaseModel):
    """One instance's release: what runs there, and how long each deploy step took."""

    model_config = ConfigDict(extra="forbid")

    instance_id: str
    address: str
    release_id: str
    commit: str | None = None
    seconds: dict[str, float] = Field(default_factory=dict)
    kept_releases: list[str] = Field(default_factory=list)


UpdateKind = Literal["deploy", "blue-green", "rolling", "switch", "upgrade"]


class ReleaseEvent(BaseModel):
    """A release that went into service: which, from where, how, and when."""

    model_config = ConfigDict(extra="forbid")

    release_id: str
    commit: str | None = None
    version: str | None = None  # the --version REF it was packed from; None: the checkout
    how: UpdateKind
    at: str = Field(default_factory=now)


class UpdateProgress(BaseModel):
    """The update under way (or interrupted): what it brings and how far it got."""

    model_config = ConfigDict(extra="forbid")

    how: UpdateKind
    release_id: str
    version: str | None = None
    from_color: str | None = None  # blue-green: the colour serving before the update
    phase: str = "started"  # the last step that finished
    started_at: str = Field(default_factory=now)


class CheckResult(BaseModel):
    """One QA check: passed, failed with the reason, or not applicable with why."""

    model_config = ConfigDict(extra="forbid")

    name: str
    status: Literal["passed", "failed", "not_applicable"]
    detail: str
    seconds: float | None = None


def shown_value(path: str, value: object) -> str:
    """A spec value as the user sees it in a message (a plan, a fix, a retry command):
    the names of app.env's variables, never their values."""
    if path == "app.env" and isinstance(value, dict):
        return "{" + ", ".join(sorted(value)) + "}"
    return json.dumps(value) if not isinstance(value, str) else value


class Diagnosis(BaseModel):
    """Medic's reading of the last failure: its cause, the evidence, and the fix if any."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    cause: str
    summary: str
    evidence: list[str] = Field(default_factory=list)
    fix: dict[str, Any] | None = None  # Medic's Fix: spec changes, env needed, command
    by: str = "HiveMind's rules"  # or "model <id>"
    at: str = Field(default_factory=now)


class AgentCall(BaseModel):
    """One time an agent was asked with a model configured: cost and outcome."""

    model_config = ConfigDict(extra="forbid")

    agent: str
    source: Literal["model", "fallback"]
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    note: str = ""
    at: str = Field(default_factory=now)


class DeploymentState(BaseModel):
    """state.json: everything known about one deployment, except secrets."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = STATE_SCHEMA_VERSION
    deployment_id: str
    app: str
    region: str
    profile: str
    stack_name: str
    status: Status = Status.PENDING
    created_at: str = Field(default_factory=now)
    updated_at: str = Field(default_factory=now)
    stages: list[StageResult] = Field(default_factory=list)
    failed_stage: str | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    resources: list[ResourceRecord] = Field(default_factory=list)
    monthly_usd: float = 0.0
    note: str = ""
    url: str | None = None
    source: SourceRecord | None = None
    releases: list[InstanceRelease] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    diagnosis: Diagnosis | None = None
    agent_calls: list[AgentCall] = Field(default_factory=list)
    # A digest of the spec the stack was last provisioned from: a retry after the spec
    # changed (Medic's fix, `retry --set`) provisions again.
    provisioned_spec: str | None = None
    # Retries of this deployment so far (`retry` allows MAX_RETRIES unless --force).
    retry_count: int = 0
    # The releases that went into service, oldest first; the last one is serving.
    history: list[ReleaseEvent] = Field(default_factory=list)
    update: UpdateProgress | None = None

    @property
    def serving(self) -> ReleaseEvent | None:
        """The release in service now (None before the first deploy finished)."""
        return self.history[-1] if self.history else None

    def stage(self, name: str) -> StageResult | None:
        return next((s for s in reversed(self.stages) if s.name == name), None)

    def failed_for(self, at: datetime | None = None) -> timedelta | None:
        """How long it has been failed (since its failed stage ended, else since it was
        last updated); None when it is neither failed nor failed to roll back."""
        if self.status not in (Status.FAILED, Status.ROLLBACK_FAILED):
            return None
        stage = self.stage(self.failed_stage or "")
        since = datetime.fromisoformat((stage.finished_at if stage else None) or self.updated_at)
        since = since if since.tzinfo else since.replace(tzinfo=UTC)
        return (at or datetime.now(UTC)) - since


class DeploymentRecord:
    """One deployment's folder: its state, spec, lock and event log."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.deployment_id = folder.name

    @property
    def state_file(self) -> Path:
        return self.folder / STATE_FILE

    @property
    def cdk_out(self) -> Path:
        return self.folder / "cdk.out"

    def exists(self) -> bool:
        return self.state_file.is_file()

    def load(self) -> DeploymentState:
        try:
            return DeploymentState.model_validate_json(self.state_file.read_text("utf-8"))
        except FileNotFoundError:
            raise BadInputError(f"no deployment {self.deployment_id}") from None
        except ValueError as exc:
            raise BadInputError(
                f"the record of {self.deployment_id} cannot be read",
                where=str(self.state_file),
                cause=str(exc).splitlines()[0],
                next_step="restore the file from a backup, or move the folder away",
            ) from None

    def save(self, state: DeploymentState) -> DeploymentState:
        """Write state.json atomically; returns the state with its new `updated_at`."""
        state = state.model_copy(update={"updated_at": now()})
        write_atomically(self.state_file, state.model_dump_json(indent=2) + "\n")
        return state

    def update(self, **changes: object) -> DeploymentState:
        """Load, change these fields, save; returns the saved state."""
        return self.save(self.load().model_copy(update=changes))

    def spec(self) -> DeploymentSpec:
        return DeploymentSpec.from_json((self.folder / SPEC_FILE).read_text("utf-8"))

    def save_spec(self, spec: DeploymentSpec) -> None:
        write_atomically(self.folder / SPEC_FILE, spec.to_json())

    def keep_spec_before_update(self, spec: DeploymentSpec | None) -> None:
        """Keep the spec an update starts from (None: the update ended, forget it)."""
        path = self.folder / SPEC_BEFORE_UPDATE_FILE
        if spec is None:
            path.unlink(missing_ok=True)
        else:
            write_atomically(path, spec.to_json())

    def spec_before_update(self) -> DeploymentSpec | None:
        path = self.folder / SPEC_BEFORE_UPDATE_FILE
        return DeploymentSpec.from_json(path.read_text("utf-8")) if path.is_file() else None

    def log(self, line: str) -> None:
        with (self.folder / EVENTS_FILE).open("a", encoding="utf-8") as events:
            events.write(f"{now()} {line}\n")

    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """Hold this deployment's lock for a mutating command, or refuse (exit 3)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = (self.folder / LOCK_FILE).open("a+", encoding="utf-8")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another hivemind process"
                raise RefusedError(
                    f"deployment {self.deployment_id} is busy",
                    cause=f"locked by {holder}",
                    next_step=f"wait for it to finish, then run `hivemind status "
                    f"{self.deployment_id}`",
                ) from None
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} running `hivemind {command}` since {now()}\n")
            handle.flush()
            yield
        finally:
            handle.close()  # closing releases the lock, also when the process dies

    def is_locked(self) -> bool:
        """True while some process holds the lock (a dead process holds none)."""
        path = self.folder / LOCK_FILE
        if not path.exists():
            return False
        with path.open("a+", encoding="utf-8") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False


class RecordStore:
    """All deployment records under `$HIVEMIND_HOME/deployments/`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home() / "deployments"

    def record(self, deployment_id: str) -> DeploymentRecord:
        return DeploymentRecord(self.root / check_deployment_id(deployment_id))

    def create(self, spec: DeploymentSpec, deployment_id: str, stack_name: str) -> DeploymentRecord:
        record = self.record(deployment_id)
        if record.exists():
            raise BadInputError(f"deployment {deployment_id} already exists")
        record.folder.mkdir(parents=True, exist_ok=True)
        write_atomically(record.folder / SPEC_FILE, spec.to_json())
        record.save(
            DeploymentState(
                deployment_id=deployment_id,
                app=spec.app.name,
                region=spec.region,
                profile=spec.profile,
                stack_name=stack_name,
            )
        )
        return record

    def get(self, deployment_id: str) -> DeploymentRecord:
        record = self.record(deployment_id)
        if not record.exists():
            known = ", ".join(self.ids()[:10]) or "none yet"
            raise BadInputError(
                f"no deployment {deployment_id}",
                cause=f"known deployments: {known}",
                next_step="`hivemind list` shows every deployment on this machine",
            )
        return record

    def ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / STATE_FILE).is_file())

    def states(self) -> list[DeploymentState]:
        """Every record's state; raises on the first that cannot be read (see `readable`)."""
        return [self.record(i).load() for i in self.ids()]

    def readable(self) -> tuple[list[DeploymentState], dict[str, str]]:
        """The states of the records that can be read, and why each other one cannot
        (by deployment id): one damaged record does not hide the others."""
        states: list[DeploymentState] = []
        unreadable: dict[str, str] = {}
        for deployment_id in self.ids():
            try:
                states.append(self.record(deployment_id).load())
            except (BadInputError, OSError) as error:
                cause = getattr(error, "cause", None) or str(error)
                unreadable[deployment_id] = cause
        return states, unreadable


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
