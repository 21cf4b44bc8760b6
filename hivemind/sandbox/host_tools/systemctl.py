"""`systemctl` on a sandbox host: a service manager over the unit files in
`/etc/systemd/system`, answering the way systemd's `systemctl` answers a deploy.

Verbs: `daemon-reload` (nothing to do: units are read fresh every time), `enable [--now]`,
`disable [--now]`, `start`, `stop`, `restart`, `try-restart`, `reload-or-restart`,
`is-active` (exit 0, or 3), `is-enabled`, `is-failed`, `status` (state, main pid and the
journal's tail; exit 0 running, 3 not, 4 no such unit), `show [-p PROP]... [--value]`,
`reset-failed`, `cat`.

`start` leaves a supervisor behind (`hivemind.sandbox.host_tools.supervise`) and returns
once the service runs, or fails with systemd's message when it could not be started.
A host has one address, so a service's wildcard bind address 0.0.0.0 becomes it and
HOST is set to it (`units.service_environment`; why: `hivemind.sandbox.hosts`).
`stop` asks the supervisor to stop the service and waits for it; if the supervisor is
gone, the service's process group is killed directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hivemind.sandbox.host_tools import HOSTNAME_VARIABLE, NotOnHost, host_dir, source_root
from hivemind.sandbox.host_tools.namespace import in_namespace, namespace_of
from hivemind.sandbox.host_tools.units import (
    ACTIVE_STATES,
    DEFAULT_TIMEOUT_STOP_SEC,
    UNIT_DIR,
    ServiceState,
    Unit,
    UnitError,
    alive,
    format_entry,
    load_unit,
    read_journal,
    read_state,
    run_dir,
    unit_name,
    write_state,
)

START_TIMEOUT = 90.0  # systemd's default TimeoutStartSec
_FLAGS = {
    "--now": "now",
    "--no-pager": "",
    "--no-block": "",
    "--no-ask-password": "",
    "--system": "",
    "--force": "",
    "-f": "",
    "--full": "",
    "-l": "",
    "--no-legend": "",
    "--plain": "",
    "--quiet": "quiet",
    "-q": "quiet",
    "--value": "value",
}
_VALUED = {"-p": "property", "--property": "property", "-n": "lines", "--lines": "lines"}
_VALUED |= {"-o": "output", "--output": "output"}


class Usage(Exception):
    """A command line systemctl does not accept."""


@dataclass
class Options:
    verb: str = ""
    units: list[str] = field(default_factory=list)
    now: bool = False
    quiet: bool = False
    value: bool = False
    properties: list[str] = field(default_factory=list)
    lines: int = 10


def parse(argv: list[str]) -> Options:
    options = Options()
    words = iter(argv)
    for word in words:
        if word == "--":  # getopt's end of options, as systemctl takes it
            for rest in words:
                if not options.verb:
                    options.verb = rest
                else:
                    options.units.append(rest)
            break
        name, eq, inline = word.partition("=")
        if word in _FLAGS:
            flag = _FLAGS[word]
            if flag:
                setattr(options, flag, True)
        elif name in _VALUED or (word[:2] in _VALUED and len(word) > 2 and word[1] != "-"):
            key = _VALUED.get(name) or _VALUED[word[:2]]
            value = (inline if eq else next(words, None)) if name in _VALUED else word[2:]
            if value is None:
                raise Usage(f"option '{name}' requires an argument")
            if key == "property":
                options.properties += [p for p in value.split(",") if p]
            elif key == "lines":
                if not value.isdigit():
                    raise Usage(f"Failed to parse lines '{value}'")
                options.lines = int(value)
        elif word.startswith("-") and word != "-":
            raise Usage(f"unrecognized option '{word}'")
        elif not options.verb:
            options.verb = word
        else:
            options.units.append(word)
    if not options.verb:
        raise Usage("a command verb is required (start, stop, status, ...)")
    return options


# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(host: Path, unit: str) -> Iterator[None]:
    """One start or stop of a unit at a time."""
    directory = run_dir(host)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"{unit}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _running(state: ServiceState | None) -> bool:
    return state is not None and state.state in ACTIVE_STATES and alive(state.supervisor)


def start(host: Path, name: str) -> int:
    unit = load_unit(name)
    with _locked(host, unit.name):
        if _running(read_state(host, unit.name)):
            return 0
        supervisor = subprocess.Popen(
            # -S (no site) as the host's tools run: hivemind is found on PYTHONPATH.
            [sys.executable, "-S", "-m", "hivemind.sandbox.host_tools.supervise", unit.name],
            env={**os.environ, "PYTHONPATH": source_root()},
            cwd="/",  # holds no release folder the deploy may remove
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command and the SSH session
            close_fds=True,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            state = read_state(host, unit.name)
            ours = state is not None and state.supervisor == supervisor.pid
            if ours and state is not None:
                if state.state == "failed":
                    return _start_failed(unit)
                if state.state == "active" or state.sub_state == "auto-restart":
                    return 0
                if state.state == "inactive" and state.sub_state == "dead":
                    return 0  # a oneshot service that ran to its end
            if supervisor.poll() is not None:
                state = read_state(host, unit.name)
                failed = state is None or state.supervisor != supervisor.pid
                if failed or (state is not None and state.state == "failed"):
                    return _start_failed(unit)
                return 0
            time.sleep(0.01)
        print(f"Job for {unit.name} timed out.", file=sys.stderr)
        return 1


def _start_failed(unit: Unit) -> int:
    print(
        f"Job for {unit.name} failed because the control process exited with error code.\n"
        f'See "systemctl status {unit.name}" and "journalctl -xeu {unit.name}" for details.',
        file=sys.stderr,
    )
    return 1


def stop(host: Path, name: str) -> int:
    full = unit_name(name)
    try:
        timeout = load_unit(full).timeout_stop_sec
    except UnitError:
        timeout = DEFAULT_TIMEOUT_STOP_SEC  # a unit removed while running still stops
    with _locked(host, full):
        state = read_state(host, full)
        if state is None:
            if not (UNIT_DIR / full).is_file():
                print(f"Failed to stop {full}: Unit {full} not loaded.", file=sys.stderr)
                return 5
            return 0
        here = namespace_of(os.getpid())
        if _running(state) and in_namespace(state.supervisor, here):
            with contextlib.suppress(ProcessLookupError):
                os.kill(state.supervisor, signal.SIGTERM)
            wait = (timeout if math.isfinite(timeout) else DEFAULT_TIMEOUT_STOP_SEC) + 5.0
            deadline = time.monotonic() + wait
            while alive(state.supervisor) and time.monotonic() < deadline:
                time.sleep(0.01)
        # What a supervisor did not stop (or left running when it died): killed at once.
        for pid in (state.main_pid, state.supervisor):
            if in_namespace(pid, here):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        after = read_state(host, full) or state
        if after.state in ACTIVE_STATES:  # the supervisor was killed before it could say so
            after.set("inactive", "dead", time.time())
            after.main_pid = 0
            write_state(host, after)
    return 0


def _wants_links(unit: Unit) -> list[Path]:
    return [UNIT_DIR / f"{target}.wants" / unit.name for target in unit.wanted_by]


def _enabled(unit: Unit) -> str:
    if not unit.wanted_by:
        return "static"
    links = UNIT_DIR.glob(f"*.wants/{unit.name}")
    return "enabled" if any(link.is_symlink() for link in links) else "disabled"


def enable(name: str) -> int:
    try:
        unit = load_unit(name)
    except UnitError as error:
        if error.exit_code == 5:
            full = unit_name(name)
            print(f"Failed to enable unit: Unit file {full} does not exist.", file=sys.stderr)
            return 1
        raise
    if not unit.wanted_by:
        print(
            "The unit files have no installation config (WantedBy=, RequiredBy=, Also=,\n"
            "Alias= settings in the [Install] section, and DefaultInstance= for template\n"
            "units). This means they are not meant to be enabled using systemctl.",
            file=sys.stderr,
        )
        return 0
    for link in _wants_links(unit):
        if link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(unit.path)
        print(f"Created symlink {link} \u2192 {unit.path}.", file=sys.stderr)
    return 0


def disable(name: str) -> int:
    full = unit_name(name)
    if not (UNIT_DIR / full).is_file():
        print(f"Failed to disable unit: Unit file {full} does not exist.", file=sys.stderr)
        return 1
    for link in UNIT_DIR.glob(f"*.wants/{full}"):
        if link.is_symlink():
            link.unlink()
            print(f'Removed "{link}".', file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------
# reporting


def _ago(since: float) -> str:
    seconds = max(0, int(time.time() - since))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h"] * bool(hours) + [f"{minutes}min"] * bool(minutes) + [f"{seconds}s"]
    return " ".join(parts[:2]) + " ago"


def _stamp(since: float) -> str:
    return datetime.fromtimestamp(since).astimezone().strftime("%a %Y-%m-%d %H:%M:%S %Z")


def _program(state: ServiceState) -> str:
    """The main process's name now (it may have exec'd another program since it started)."""
    try:
        return Path(f"/proc/{state.main_pid}/comm").read_text().strip() or state.program
    except OSError:
        return state.program


def active_state(state: ServiceState | None) -> str:
    return "inactive" if state is None else state.state


def status(host: Path, name: str, lines: int) -> int:
    full = unit_name(name)
    try:
        unit = load_unit(full)
    except UnitError as error:
        if error.exit_code == 5:
            print(f"Unit {full} could not be found.", file=sys.stderr)
            return 4
        raise
    state = read_state(host, full)
    active = active_state(state)
    bullet = {"failed": "\u00d7"}.get(active, "\u25cf" if active in ACTIVE_STATES else "\u25cb")
    out = [
        f"{bullet} {full} - {unit.description}",
        f"     Loaded: loaded ({unit.path}; {_enabled(unit)}; preset: disabled)",
    ]
    if state is None:
        out.append("     Active: inactive (dead)")
    else:
        detail = state.state if state.state == "failed" else f"{state.state} ({state.sub_state})"
        if state.result != "success" and state.state in ("failed", "activating"):
            detail += f" (Result: {state.result})"
        out.append(f"     Active: {detail} since {_stamp(state.since)}; {_ago(state.since)}")
        if state.state in ACTIVE_STATES and alive(state.main_pid):
            out.append(f"   Main PID: {state.main_pid} ({_program(state)})")
        elif state.exit_code:
            out.append(
                f"    Process: {state.exit_pid or '-'} ExecStart "
                f"(code={state.exit_code}, status={state.exit_status})"
            )
    tail = list(read_journal(host, full))[-lines:] if lines else []
    if tail:
        hostname = os.environ.get(HOSTNAME_VARIABLE, "localhost")
        out.append("")
        out += [format_entry(entry, hostname) for entry in tail]
    print("\n".join(out))
    return 0 if active == "active" else 3


def show(host: Path, name: str, properties: list[str], value_only: bool) -> int:
    full = unit_name(name)
    try:
        unit: Unit | None = load_unit(full)
    except UnitError:
        unit = None
    state = read_state(host, full)
    running = state is not None and state.state in ACTIVE_STATES and alive(state.main_pid)
    status_code = state.exit_status.split("/")[0] if state and state.exit_status else "0"
    known = {
        "Id": full,
        "Names": full,
        "Description": unit.description if unit else full,
        "LoadState": "loaded" if unit else "not-found",
        "ActiveState": active_state(state),
        "SubState": state.sub_state if state else "dead",
        "Result": state.result if state else "success",
        "MainPID": str(state.main_pid if state and running else 0),
        "ExecMainPID": str((state.main_pid or state.exit_pid) if state else 0),
        "ExecMainStatus": status_code if status_code.isdigit() else "0",
        "NRestarts": str(state.restarts if state else 0),
        "UnitFileState": _enabled(unit) if unit else "",
        "FragmentPath": str(unit.path) if unit else "",
        "ActiveEnterTimestamp": _stamp(state.since) if state and state.since else "",
    }
    for key in properties or list(known):
        value = known.get(key, "")
        print(value if value_only else f"{key}={value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        options = parse(args)
    except Usage as error:
        print(f"systemctl: {error}", file=sys.stderr)
        return 1
    try:
        return run(options)
    except Usage as error:
        print(f"systemctl: {error}", file=sys.stderr)
        return 1
    except UnitError as error:
        units = " ".join(unit_name(name) for name in options.units if "/" not in name)
        print(f"Failed to {options.verb} {units}: {error.message}", file=sys.stderr)
        return error.exit_code if error.exit_code < 200 else 1
    except NotOnHost as error:
        print(f"systemctl: {error}", file=sys.stderr)
        return 1


def run(options: Options) -> int:
    verb, units = options.verb, options.units
    if verb in ("daemon-reload", "daemon-reexec"):
        return 0
    host = host_dir()
    needs_unit = verb not in ("reset-failed",)
    if needs_unit and not units:
        raise Usage(f"Too few arguments for '{verb}': a unit name is required.")
    status_code = 0
    for name in units or [""]:
        status_code = max(status_code, _run_one(host, verb, name, options))
    return status_code


def _run_one(host: Path, verb: str, name: str, options: Options) -> int:
    if verb == "start":
        return start(host, name)
    if verb == "stop":
        return stop(host, name)
    if verb in ("restart", "reload-or-restart", "try-restart"):
        if verb == "try-restart" and not _running(read_state(host, unit_name(name))):
            return 0
        load_unit(name)
        stop(host, name)
        return start(host, name)
    if verb == "enable":
        code = enable(name)
        return start(host, name) if code == 0 and options.now else code
    if verb == "disable":
        code = disable(name)
        return stop(host, name) if code == 0 and options.now else code
    if verb in ("is-active", "is-failed"):
        state = active_state(read_state(host, unit_name(name)))
        if not options.quiet:
            print(state)
        return (
            0
            if state == ("active" if verb == "is-active" else "failed")
            else (3 if verb == "is-active" else 1)
        )
    if verb == "is-enabled":
        try:
            answer = _enabled(load_unit(name))
        except UnitError:
            full = unit_name(name)
            print(
                f"Failed to get unit file state for {full}: No such file or directory",
                file=sys.stderr,
            )
            return 1
        if not options.quiet:
            print(answer)
        return 0 if answer in ("enabled", "static") else 1
    if verb == "status":
        return status(host, name, options.lines)
    if verb == "show":
        return show(host, name, options.properties, options.value)
    if verb == "cat":
        unit = load_unit(name)
        print(f"# {unit.path}\n{unit.path.read_text(encoding='utf-8')}", end="")
        return 0
    if verb == "reset-failed":
        names = [unit_name(name)] if name else [p.stem for p in run_dir(host).glob("*.json")]
        for full in names:
            found = read_state(host, full)
            if found is not None and found.state == "failed":
                found.set("inactive", "dead", time.time())
                found.result = "success"
                write_state(host, found)
        return 0
    raise Usage(f"Unknown command verb '{verb}'.")


if __name__ == "__main__":
    sys.exit(main())
