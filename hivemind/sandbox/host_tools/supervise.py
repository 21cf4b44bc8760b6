"""The supervisor of one service on a sandbox host: the part of systemd that runs a unit,
as a detached process `systemctl start` leaves behind (its own session, so it outlives
the SSH command that started it, inside the host's mount namespace it was started in).

It runs the unit's `ExecStartPre=` lines, then its `ExecStart=` process in a process
group of its own, so that a stop reaches everything the service started. The service's
stdout and stderr go to the unit's journal line by line, with timestamps. The state in
`<host dir>/run/<unit>.json` stays current. Restart= is honoured (after RestartSec=, at
most StartLimitBurst= times). On SIGTERM (`systemctl stop`) it stops the service:
SIGTERM to the group, SIGKILL after TimeoutStopSec=. Whatever is left of the group when
the main process ends is killed, as systemd cleans up a unit's control group.

    python -m hivemind.sandbox.host_tools.supervise UNIT
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from hivemind.sandbox.host_tools import HOME, NotOnHost, host_dir, instance_environment, users
from hivemind.sandbox.host_tools.units import (
    CLEAN_SIGNALS,
    Command,
    Journal,
    ServiceState,
    Unit,
    UnitError,
    expand_command,
    journal_file,
    load_unit,
    service_environment,
    unit_name,
    write_state,
)

# The names systemd gives exit statuses in `status=1/FAILURE`.
_EXIT_NAMES = {
    0: "SUCCESS",
    1: "FAILURE",
    2: "INVALIDARGUMENT",
    3: "NOTIMPLEMENTED",
    4: "NOPERMISSION",
    5: "NOTINSTALLED",
    6: "NOTCONFIGURED",
    7: "NOTRUNNING",
    200: "CHDIR",
    203: "EXEC",
    217: "USER",
}


def exit_description(returncode: int) -> tuple[str, str, bool]:
    """systemd's `code=` and `status=` for a process's return code, and whether the exit
    counts as clean."""
    if returncode >= 0:
        name = _EXIT_NAMES.get(returncode)
        return "exited", f"{returncode}/{name}" if name else str(returncode), returncode == 0
    try:
        name = signal.Signals(-returncode).name.removeprefix("SIG")
    except ValueError:
        name = str(-returncode)
    return "killed", name, name in CLEAN_SIGNALS


def wants_restart(policy: str, returncode: int, clean: bool) -> bool:
    """Whether `Restart=policy` restarts a service that ended this way."""
    killed = returncode < 0
    return {
        "always": True,
        "on-success": clean,
        "on-failure": not clean,
        "on-abnormal": killed and not clean,
        "on-abort": killed and not clean,
    }.get(policy, False)


class Supervisor:
    """Runs one unit until it ends for good or is stopped."""

    def __init__(self, host: Path, unit: Unit, journal: Journal) -> None:
        self.host = host
        self.unit = unit
        self.journal = journal
        self.state = ServiceState(unit.name, supervisor=os.getpid())
        self.stopping = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None

    # -- state and signals

    def _set(self, state: str, sub_state: str, **changes: object) -> None:
        self.state.set(state, sub_state, time.time())
        for key, value in changes.items():
            setattr(self.state, key, value)
        write_state(self.host, self.state)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.journal.systemd(f"Stopping {self.unit.description}...")
        process = self.process
        if process is not None and process.poll() is None:
            _kill_group(process.pid, signal.SIGTERM)
            timeout = self.unit.timeout_stop_sec
            if math.isfinite(timeout):
                timer = threading.Timer(timeout, self._stop_timed_out, (process.pid,))
                timer.daemon = True
                timer.start()

    def _stop_timed_out(self, pid: int) -> None:
        self.journal.systemd(f"{self.unit.name}: State 'stop-sigterm' timed out. Killing.")
        _kill_group(pid, signal.SIGKILL)

    # -- running

    def _spawn(self, command: Command, env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            command.argv,
            executable=command.executable,
            cwd=self._working_directory(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a stop reaches all of it
            close_fds=True,
        )
        self.process = process
        if self.stopping.is_set():  # a stop that came while it was being started
            _kill_group(process.pid, signal.SIGTERM)
        return process

    def _working_directory(self) -> str:
        directory = self.unit.working_directory or "/"
        optional = directory.startswith("-")
        directory = directory.lstrip("-")
        if directory == "~":
            directory = HOME
        if not os.path.isdir(directory):
            if optional:
                return "/"
            raise UnitError(
                f"{self.unit.name}: Changing to the requested working directory failed: "
                "No such file or directory",
                200,
            )
        return directory

    def _pump(self, process: subprocess.Popen[bytes], identifier: str) -> threading.Thread:
        """Copy the process's output to the journal, line by line, from a thread."""

        target = self.unit.standard_output
        kind, _, path = target.partition(":")
        to_file = kind in ("append", "file") and path.startswith("/")
        if to_file:
            # As systemd does: the file (opened for this run) instead of the journal.
            os.makedirs(os.path.dirname(path), exist_ok=True)
            output = open(path, "ab" if kind == "append" else "wb")  # noqa: SIM115

        def copy() -> None:
            assert process.stdout is not None
            try:
                for raw in iter(process.stdout.readline, b""):
                    if to_file:
                        output.write(raw)
                        output.flush()
                    else:
                        text = raw.decode("utf-8", errors="replace").rstrip("\n")
                        self.journal.write(identifier, process.pid, text)
            finally:
                if to_file:
                    output.close()

        thread = threading.Thread(target=copy, daemon=True)
        thread.start()
        return thread

    def _run(self, command: Command, env: dict[str, str]) -> int:
        """Run one process of the unit to its end; its return code."""
        process = self._spawn(command, env)
        identifier = os.path.basename(command.argv[0])
        self.state.main_pid, self.state.program = process.pid, identifier
        pump = self._pump(process, identifier)
        return self._wait(process, pump)

    def _wait(self, process: subprocess.Popen[bytes], pump: threading.Thread) -> int:
        returncode = process.wait()
        self.state.main_pid, self.state.exit_pid = 0, process.pid
        # What the service left behind in its group goes with it.
        _kill_group(process.pid, signal.SIGKILL)
        pump.join(timeout=2.0)
        if process.stdout is not None:
            process.stdout.close()
        return returncode

    def _fail(self, result: str, code: str = "", status: str = "") -> int:
        self.journal.systemd(f"{self.unit.name}: Failed with result '{result}'.")
        self.journal.systemd(f"Failed to start {self.unit.description}.")
        self._set("failed", "failed", result=result, exit_code=code, exit_status=status)
        return 1

    def _stopped(self) -> int:
        self.journal.systemd(f"{self.unit.name}: Deactivated successfully.")
        self.journal.systemd(f"Stopped {self.unit.description}.")
        self._set("inactive", "dead", result="success", main_pid=0)
        return 0

    def run(self) -> int:
        """Start the unit and supervise it; the exit status of the supervisor."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        unit = self.unit
        self._set("activating", "start-pre")
        self.journal.systemd(f"Starting {unit.description}...")
        try:
            env = service_environment(unit, instance_environment())
        except OSError as error:
            self.journal.systemd(
                f"{unit.name}: Failed to load environment files: {error.strerror or error}"
            )
            return self._fail("resources")
        if unit.user and not users.is_known(unit.user, self.host):
            # systemd's words for a User= the instance lacks (exit status 217/USER).
            self.journal.systemd(
                f"{unit.name}: Failed to determine user credentials: No such process"
            )
            self.journal.systemd(f"{unit.name}: Failed at step USER spawning: No such process")
            self.journal.systemd(f"{unit.name}: Main process exited, code=exited, status=217/USER")
            return self._fail("exit-code", "exited", "217/USER")
        env[users.RUN_AS_VARIABLE] = unit.user or "root"
        try:
            ended = self._run_each(unit.exec_start_pre, env, "Control")
            if ended is not None:
                return ended
            if unit.service_type == "oneshot":
                return self._run_oneshot(env)
            return self._run_service(env)
        except UnitError as error:
            self.journal.systemd(error.message)
            status = f"{error.exit_code}/{_EXIT_NAMES.get(error.exit_code, '')}".rstrip("/")
            return self._fail("exit-code", "exited", status)
        except OSError as error:
            self.journal.systemd(f"{unit.name}: Failed to execute: {error.strerror or error}")
            return self._fail("exit-code", "exited", "203/EXEC")

    def _run_each(self, lines: tuple[str, ...], env: dict[str, str], role: str) -> int | None:
        """Run each command line in turn, as systemd runs ExecStartPre= (role "Control")
        or a oneshot's ExecStart= ("Main"); the exit code to end with when one stops
        the unit, else None."""
        for line in lines:
            command = expand_command(line, self.unit, env)
            returncode = self._run(command, env)
            if self.stopping.is_set():
                return self._stopped()
            if returncode != 0 and not command.ignore_failure:
                code, status, _ = exit_description(returncode)
                self.journal.systemd(
                    f"{self.unit.name}: {role} process exited, code={code}, status={status}"
                )
                return self._fail("exit-code", code, status)
        return None

    def _run_oneshot(self, env: dict[str, str]) -> int:
        unit = self.unit
        ended = self._run_each(unit.exec_start, env, "Main")
        if ended is not None:
            return ended
        self.journal.systemd(f"Finished {unit.description}.")
        if unit.remain_after_exit:
            self._set("active", "exited", main_pid=0)
        else:
            self._set("inactive", "dead", main_pid=0, result="success")
        return 0

    def _run_service(self, env: dict[str, str]) -> int:
        unit = self.unit
        while True:
            command = expand_command(unit.exec_start[0], unit, env)
            process = self._spawn(command, env)
            identifier = os.path.basename(command.argv[0])
            pump = self._pump(process, identifier)
            self._set("active", "running", main_pid=process.pid, program=identifier)
            self.journal.systemd(f"Started {unit.description}.")
            returncode = self._wait(process, pump)
            if self.stopping.is_set():
                return self._stopped()
            code, status, clean = exit_description(returncode)
            self.journal.systemd(f"{unit.name}: Main process exited, code={code}, status={status}")
            result = "success" if clean else ("signal" if returncode < 0 else "exit-code")
            if not wants_restart(unit.restart, returncode, clean):
                if clean:
                    return self._stopped()
                return self._fail(result, code, status)
            if self.state.restarts >= unit.start_limit_burst:
                self.journal.systemd(f"{unit.name}: Start request repeated too quickly.")
                return self._fail("start-limit-hit", code, status)
            if not clean:
                self.journal.systemd(f"{unit.name}: Failed with result '{result}'.")
            self._set(
                "activating",
                "auto-restart",
                main_pid=0,
                result=result,
                exit_code=code,
                exit_status=status,
                restarts=self.state.restarts + 1,
            )
            if self.stopping.wait(unit.restart_sec if math.isfinite(unit.restart_sec) else 0):
                return self._stopped()
            self.journal.systemd(
                f"{unit.name}: Scheduled restart job, restart counter is at {self.state.restarts}."
            )


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hivemind.sandbox.host_tools.supervise UNIT", file=sys.stderr)
        return 2
    try:
        host = host_dir()
        name = unit_name(args[0])
    except (NotOnHost, UnitError) as error:
        print(f"supervise: {error}", file=sys.stderr)
        return 2
    journal = Journal(journal_file(host, name))
    try:
        unit = load_unit(name)
    except UnitError as error:
        journal.systemd(error.message)
        write_state(host, ServiceState(name, "failed", "failed", result="resources"))
        return 1
    try:
        return Supervisor(host, unit, journal).run()
    except Exception as error:  # the journal is where anyone would look for this
        journal.systemd(f"{name}: the sandbox's service supervisor failed: {error!r}")
        write_state(host, ServiceState(name, "failed", "failed", result="resources"))
        raise


if __name__ == "__main__":
    sys.exit(main())
