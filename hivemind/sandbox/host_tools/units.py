"""Unit files, service state and the journal of a sandbox host, kept the way systemd keeps
them as far as a deploy can tell.

* Unit files are read where systemd reads them, `/etc/systemd/system/<unit>` inside the
  host's namespace (the host's own folder). Every read is fresh: `daemon-reload` has
  nothing to reload.
* The state of a service lives in `<host dir>/run/<unit>.json`, written atomically by its
  supervisor (and by `systemctl` once the supervisor is gone). The daemon that stops a
  host reads it from outside the namespace to stop every service first.
* The journal of a unit is `<host dir>/journal/<unit>.log`, one entry per line:
  `<ISO 8601 time>\\t<identifier>\\t<pid>\\t<message>`.

Only the directives a deploy uses are understood (see `Unit`); the rest are ignored the
way systemd ignores directives of another section.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hivemind.sandbox.host_tools import ADDRESS_VARIABLE, HOME, HOSTNAME_VARIABLE, PATH_VARIABLE

UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_RESTART_SEC = 0.1  # systemd's default RestartSec
DEFAULT_TIMEOUT_STOP_SEC = 10.0
DEFAULT_START_LIMIT_BURST = 5  # restarts before systemd gives up on a unit
# Service types the supervisor runs: the main process is the service.
SIMPLE_TYPES = frozenset({"simple", "exec", "notify", "idle"})
SUPPORTED_TYPES = SIMPLE_TYPES | {"oneshot"}
# Exit statuses systemd counts as a clean stop when they come as signals.
CLEAN_SIGNALS = frozenset({"HUP", "INT", "TERM", "PIPE"})
_WILDCARD = re.compile(r"(?<![\d.])0\.0\.0\.0(?![\d.])")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The start-up hooks that make a service's wildcard binds take the host's address, in
# Python (`sitecustomize`, on PYTHONPATH) and Node (`--require`d through NODE_OPTIONS).
START_UP_HOOKS = Path(__file__).resolve().with_name("one_address")
NODE_HOOK = START_UP_HOOKS / "node_listen.cjs"


class UnitError(Exception):
    """A unit cannot be used: `message` is what systemctl prints, `exit_code` its status."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def unit_name(name: str) -> str:
    """A unit's full name: `app` is `app.service`."""
    name = name.strip()
    if not name or "/" in name:
        raise UnitError(f"Invalid unit name {name!r}.", 1)
    return name if "." in name else f"{name}.service"


@dataclass(frozen=True)
class Unit:
    """A service unit: what the supervisor needs to run it."""

    name: str
    path: Path
    description: str
    service_type: str = "simple"
    exec_start: tuple[str, ...] = ()
    exec_start_pre: tuple[str, ...] = ()
    working_directory: str | None = None
    environment: tuple[str, ...] = ()  # the `Environment=` lines, in order
    environment_files: tuple[str, ...] = ()
    user: str | None = None  # one of the host's users (see `users`); runs as its real one
    restart: str = "no"
    restart_sec: float = DEFAULT_RESTART_SEC
    timeout_stop_sec: float = DEFAULT_TIMEOUT_STOP_SEC
    remain_after_exit: bool = False
    start_limit_burst: int = DEFAULT_START_LIMIT_BURST
    wanted_by: tuple[str, ...] = ()
    # `journal`, or `append:PATH` / `file:PATH` (stderr goes where stdout goes)
    standard_output: str = "journal"


def parse_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file's sections, each a list of (key, value) in order (keys repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), [])
        elif current is not None and "=" in line:
            key, value = line.split("=", 1)
            current.append((key.strip(), value.strip()))
    return sections


def parse_duration(text: str, default: float) -> float:
    """A systemd time span (`10`, `500ms`, `1min 30s`, `infinity`) in seconds."""
    text = text.strip().lower()
    if not text:
        return default
    if text == "infinity":
        return math.inf
    scale = {"us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3, "": 1.0, "s": 1.0}
    scale |= {"sec": 1.0, "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0}
    scale |= {"minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0}
    total, matched = 0.0, False
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text):
        if suffix not in scale:
            return default
        total += float(number) * scale[suffix]
        matched = True
    return total if matched else default


def load_unit(name: str, unit_dir: Path = UNIT_DIR) -> Unit:
    """The unit `name` from its file; UnitError (exit 5) when there is none."""
    full = unit_name(name)
    path = unit_dir / full
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise UnitError(f"Unit {full} not found.", 5) from None
    except OSError as error:
        raise UnitError(f"Failed to read {path}: {error.strerror}.", 1) from None
    sections = parse_sections(text)

    def values(section: str, key: str) -> list[str]:
        """Every assignment of `key`, an empty assignment clearing the ones before it."""
        found: list[str] = []
        for found_key, value in sections.get(section, []):
            if found_key == key:
                found = [] if value == "" else [*found, value]
        return found

    def last(section: str, key: str, default: str = "") -> str:
        found = values(section, key)
        return found[-1] if found else default

    service_type = last("Service", "Type", "simple")
    if service_type not in SUPPORTED_TYPES:
        raise UnitError(
            f"{full}: Type={service_type} is not supported by the sandbox's systemctl "
            f"(supported: {', '.join(sorted(SUPPORTED_TYPES))}).",
            1,
        )
    exec_start = values("Service", "ExecStart")
    if not exec_start:
        raise UnitError(f"{full} has no ExecStart= setting, refusing.", 1)
    if len(exec_start) > 1 and service_type != "oneshot":
        raise UnitError(
            f"{full} has more than one ExecStart= setting, which is only allowed for "
            "Type=oneshot services. Refusing.",
            1,
        )
    burst = last("Unit", "StartLimitBurst") or last("Service", "StartLimitBurst")
    return Unit(
        name=full,
        path=path,
        description=last("Unit", "Description") or full,
        service_type=service_type,
        exec_start=tuple(exec_start),
        exec_start_pre=tuple(values("Service", "ExecStartPre")),
        working_directory=last("Service", "WorkingDirectory") or None,
        environment=tuple(values("Service", "Environment")),
        environment_files=tuple(values("Service", "EnvironmentFile")),
        user=last("Service", "User") or None,
        restart=last("Service", "Restart", "no"),
        restart_sec=parse_duration(last("Service", "RestartSec"), DEFAULT_RESTART_SEC),
        timeout_stop_sec=parse_duration(
            last("Service", "TimeoutStopSec") or last("Service", "TimeoutSec"),
            DEFAULT_TIMEOUT_STOP_SEC,
        ),
        remain_after_exit=last("Service", "RemainAfterExit").lower() in ("yes", "true", "1"),
        start_limit_burst=int(burst) if burst.isdigit() else DEFAULT_START_LIMIT_BURST,
        wanted_by=tuple(
            target for value in values("Install", "WantedBy") for target in value.split()
        ),
        standard_output=last("Service", "StandardOutput", "journal"),
    )


# ---------------------------------------------------------------------------
# the environment and command line of a service


def read_environment_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` assignments as systemd reads an EnvironmentFile (`parse_env_file`)."""
    return parse_environment(path.read_bytes().decode("utf-8"))  # \r stays \r


# systemd's character classes (src/basic/string-util.h, src/basic/escape.h).
_NEWLINE = "\n\r"
_WHITESPACE = " \t\n\r"
_COMMENTS = "#;"
_SHELL_NEED_ESCAPE = '"\\`$'


def parse_environment(text: str) -> dict[str, str]:
    """The assignments of an EnvironmentFile's text, read character by character as
    systemd's `parse_env_file_internal` (src/basic/env-file.c, v254 and later) reads it:
    `#` and `;` start a comment line; a line break is `\\n` or `\\r`; whitespace around
    keys and unquoted values is dropped; a value may mix unquoted parts, `'literal'`
    parts and `"double-quoted"` parts, where a backslash unescapes `" \\ ` $` and is
    kept before any other character; a backslash before a line break continues the
    line; line breaks inside quotes are part of the value. A key that is not a valid
    name is dropped, as systemd drops an invalid assignment."""
    variables: dict[str, str] = {}
    state = "pre_key"
    key: list[str] = []
    value: list[str] = []
    key_trail: int | None = None  # where trailing whitespace of the key starts
    value_trail: int | None = None  # ... and of an unquoted value

    def push() -> None:
        name = "".join(key[:key_trail] if key_trail is not None else key)
        if _NAME.match(name):
            variables[name] = "".join(value)

    for c in text:
        if state == "pre_key":
            if c in _COMMENTS:
                state = "comment"
            elif c not in _WHITESPACE:
                state, key, key_trail = "key", [c], None
        elif state == "key":
            if c in _NEWLINE:
                state, key = "pre_key", []
            elif c == "=":
                state, value, value_trail = "pre_value", [], None
            else:
                if c not in _WHITESPACE:
                    key_trail = None
                elif key_trail is None:
                    key_trail = len(key)
                key.append(c)
        elif state == "pre_value":
            if c in _NEWLINE:
                push()
                state, key, value = "pre_key", [], []
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c not in _WHITESPACE:
                state = "value"
                value.append(c)
        elif state == "value":
            if c in _NEWLINE:
                if value_trail is not None:
                    del value[value_trail:]
                push()
                state, key, value = "pre_key", [], []
            elif c == "\\":
                state, value_trail = "value_escape", None
            else:
                if c not in _WHITESPACE:
                    value_trail = None
                elif value_trail is None:
                    value_trail = len(value)
                value.append(c)
        elif state == "value_escape":
            state = "value"
            if c not in _NEWLINE:
                value.append(c)
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            state = "double"
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value.extend(("\\", c))
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c in _NEWLINE:
                state = "pre_key"
        elif state == "comment_escape":
            state = "pre_key" if c in _NEWLINE else "comment"
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        if state == "value" and value_trail is not None:
            del value[value_trail:]
        push()
    return variables


def service_environment(unit: Unit, instance: Mapping[str, str]) -> dict[str, str]:
    """The environment systemd would give `unit`'s processes on this host.

    `instance` holds the variables every process of the host gets (see `host_tools`).
    A service does not inherit the environment of whoever started it. `Environment=`
    comes first and `EnvironmentFile=` overrides it, as in systemd; a missing file
    without a leading `-` is an error (OSError). Then, on a host with an address, that
    address stands in for the wildcard (see `hosts` for why): `HOST` is set to it unless
    the unit names another address, any value that is exactly `0.0.0.0` becomes it, and
    the start-up hooks (`START_UP_HOOKS`) go first on PYTHONPATH and into NODE_OPTIONS
    (after the unit's own options), so that every Python and Node program the service
    runs, from whatever script, binds the host's address when it asks for the
    wildcard."""
    address = instance.get(ADDRESS_VARIABLE, "")
    env = {
        "PATH": instance.get(PATH_VARIABLE, os.defpath),
        "LANG": "C.UTF-8",
        "HOME": HOME,
        **instance,
    }
    if unit.user:
        env.update(USER=unit.user, LOGNAME=unit.user)
    for line in unit.environment:
        for assignment in shlex.split(line):
            key, sep, value = assignment.partition("=")
            if sep and _NAME.match(key):
                env[key] = value
    for entry in unit.environment_files:
        optional = entry.startswith("-")
        path = Path(entry.lstrip("-"))
        try:
            env.update(read_environment_file(path))
        except FileNotFoundError:
            if not optional:
                raise
    if address:
        env = {key: address if value == "0.0.0.0" else value for key, value in env.items()}
        env.setdefault("HOST", address)
        hooks, require = str(START_UP_HOOKS), f"--require {_node_quoted(NODE_HOOK)}"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (hooks, env.get("PYTHONPATH"))))
        env["NODE_OPTIONS"] = " ".join(filter(None, (env.get("NODE_OPTIONS"), require)))
    return env


def _node_quoted(path: Path) -> str:
    """`path` as one word of NODE_OPTIONS, which Node splits at spaces outside quotes."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class Command:
    """One `Exec*=` line, ready to run."""

    executable: str
    argv: list[str]
    ignore_failure: bool  # the `-` prefix


def expand_command(line: str, unit: Unit, env: Mapping[str, str]) -> Command:
    """An `Exec*=` line as systemd runs it: prefixes (`-` ignore failure, `@` argv[0], `:` no
    expansion, `+`/`!` privileges: ignored), `%` specifiers, `$VAR` (split into words) and
    `${VAR}` (one word) from the service environment, the executable looked up on its PATH
    when not absolute, and the wildcard address `0.0.0.0` replaced by the host's address
    (a program the line runs through a script is covered by the start-up hooks of
    `service_environment`). UnitError when the executable cannot be found (systemd's
    203/EXEC)."""
    ignore_failure = no_expand = own_argv0 = False
    text = line.strip()
    while text and text[0] in "-@:+!":
        ignore_failure |= text[0] == "-"
        own_argv0 |= text[0] == "@"
        no_expand |= text[0] == ":"
        text = text[1:]
    words: list[str] = []
    for word in shlex.split(_specifiers(text, unit)):
        if no_expand:
            words.append(word)
            continue
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            words.extend(env.get(whole.group(1), "").split())
            continue
        word = re.sub(
            r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
            lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1) or m.group(2) or "", ""),
            word,
        )
        words.append(word)
    address = env.get(ADDRESS_VARIABLE, "")
    if address:
        words = [_WILDCARD.sub(address, word) for word in words]
    if not words:
        raise UnitError(f"{unit.name}: empty command line {line!r}.", 1)
    program = words[0]
    argv = words[1:] if own_argv0 else words
    if not argv:
        raise UnitError(f"{unit.name}: no argv[0] after '@' in {line!r}.", 1)
    executable = program if "/" in program else shutil.which(program, path=env.get("PATH"))
    if executable is None or not os.access(executable, os.X_OK):
        raise UnitError(
            f"{unit.name}: Failed to locate executable {program}: No such file or directory",
            203,
        )
    return Command(executable, argv, ignore_failure)


def _specifiers(text: str, unit: Unit) -> str:
    prefix = unit.name.rsplit(".", 1)[0]
    known = {
        "%": "%",
        "n": unit.name,
        "N": prefix,
        "p": prefix.split("@", 1)[0],
        "i": prefix.split("@", 1)[1] if "@" in prefix else "",
        "h": HOME,
        "H": os.environ.get(HOSTNAME_VARIABLE, ""),
    }
    return re.sub(r"%(.)", lambda m: known.get(m.group(1), m.group(0)), text)


# ---------------------------------------------------------------------------
# service state


ACTIVE_STATES = frozenset({"activating", "active", "deactivating", "reloading"})


@dataclass
class ServiceState:
    """What systemd would say about a service: `state` is ActiveState (active, activating,
    deactivating, inactive, failed), `sub_state` its SubState (running, exited,
    auto-restart, dead, failed, start-pre, stop-sigterm)."""

    unit: str
    state: str = "inactive"
    sub_state: str = "dead"
    supervisor: int = 0  # the supervise process's pid
    main_pid: int = 0  # while it runs; also the process group of the service
    exit_pid: int = 0  # the main process that ended last (for `status`)
    since: float = 0.0  # when `state` last changed (epoch seconds)
    restarts: int = 0
    result: str = "success"  # success, exit-code, signal, resources, start-limit-hit
    exit_code: str = ""  # "exited" or "killed", like systemd's code=
    exit_status: str = ""  # "1/FAILURE", "TERM"
    program: str = ""  # the main process's name

    def set(self, state: str, sub_state: str, when: float) -> None:
        if state != self.state:
            self.since = when
        self.state, self.sub_state = state, sub_state


def run_dir(host: Path) -> Path:
    return host / "run"


def journal_dir(host: Path) -> Path:
    return host / "journal"


def read_state(host: Path, unit: str) -> ServiceState | None:
    """The last state written for `unit`, or None if it never ran. A state that says the
    service runs while its supervisor is gone is reported failed."""
    try:
        data = json.loads((run_dir(host) / f"{unit}.json").read_text(encoding="utf-8"))
        state = ServiceState(**data)
    except (OSError, ValueError, TypeError):
        return None
    if state.state in ACTIVE_STATES and not alive(state.supervisor):
        state.state, state.sub_state, state.result = "failed", "failed", "signal"
    return state


def write_state(host: Path, state: ServiceState) -> None:
    directory = run_dir(host)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{state.unit}.json"
    temporary = directory / f".{state.unit}.{os.getpid()}.{threading.get_ident()}"
    temporary.write_text(json.dumps(asdict(state)), encoding="utf-8")
    os.replace(temporary, target)


def all_states(host: Path) -> list[ServiceState]:
    """The state of every service that ever ran on the host."""
    found = []
    for path in sorted(run_dir(host).glob("*.json")):
        state = read_state(host, path.name.removesuffix(".json"))
        if state is not None:
            found.append(state)
    return found


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


# ---------------------------------------------------------------------------
# the journal


@dataclass(frozen=True)
class Entry:
    """One journal line of a unit."""

    time: datetime
    identifier: str  # the program (`python3`) or `systemd`
    pid: int
    message: str
    unit: str = ""


def journal_file(host: Path, unit: str) -> Path:
    return journal_dir(host) / f"{unit}.log"


@dataclass
class Journal:
    """Appends entries to one unit's journal; safe to share between threads."""

    path: Path
    # Reentrant: the supervisor also writes from its SIGTERM handler.
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def write(self, identifier: str, pid: int, message: str) -> None:
        stamp = datetime.now(UTC).isoformat(timespec="microseconds")
        lines = message.splitlines() or [""]
        text = "".join(f"{stamp}\t{identifier}\t{pid}\t{line}\n" for line in lines)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(descriptor, text.encode("utf-8", errors="replace"))
            finally:
                os.close(descriptor)

    def systemd(self, message: str) -> None:
        """A line systemd itself writes (`Started ...`)."""
        self.write("systemd", 1, message)


def read_journal(host: Path, unit: str) -> Iterator[Entry]:
    """`unit`'s journal entries, oldest first."""
    try:
        handle = journal_file(host, unit).open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t", 3)
            if len(parts) != 4:
                continue
            try:
                when = datetime.fromisoformat(parts[0])
                pid = int(parts[2])
            except ValueError:
                continue
            yield Entry(when, parts[1], pid, parts[3], unit)


def format_entry(entry: Entry, hostname: str, output: str = "short") -> str:
    """An entry as journalctl prints it (`short`, `short-iso`, `cat`)."""
    if output == "cat":
        return entry.message
    local = entry.time.astimezone()
    stamp = (
        local.isoformat(timespec="seconds")
        if output == "short-iso"
        else (local.strftime("%b %d %H:%M:%S"))
    )
    return f"{stamp} {hostname} {entry.identifier}[{entry.pid}]: {entry.message}"
