"""Real database servers behind the sandbox's RDS DB instances.

Each DB instance a stack creates gets its own server process on its own loopback
address (`runtime.allocate_address`) at the instance's port, so an application
connects to `Endpoint.Address:Endpoint.Port` exactly as on AWS, with the master
user and password the template gave:

* **postgres**: the PostgreSQL 16 binaries bundled by the `pgserver` package
  (`initdb --auth=scram-sha-256`, then `postgres -h ADDRESS -p PORT`), whatever
  `EngineVersion` says. The master user is the cluster's bootstrap user, so it is a
  superuser (on RDS it is a member of `rds_superuser`); `DBName` is created owned by
  it. Every login, over TCP only, needs the password (no Unix socket: its path under
  a HiveMind home can exceed the 107-byte limit, and nothing connects through it).
* **postgres read replicas**: a real streaming standby, `pg_basebackup -R` from the
  source's server through a replication role `rdsrepladmin` (as on RDS) whose
  password the sandbox generates, so the master password is never written into the
  standby's configuration. Read-only, as on AWS.
* **mysql** (and **mariadb**): a MariaDB server, when one is installed
  (`mariadbd`/`mysqld` plus `mariadb-install-db`/`mysql_install_db`, see
  `find_mysql`); without one, creating the instance fails with `MYSQL_MISSING`. Its
  master user is `'<name>'@'%'` with the privileges RDS gives it (no SUPER);
  `DBName` is created. Primaries keep a binary log; a read replica replays it from
  the start through `rdsrepladmin` (GTID replication) and is `read_only`.

**Final snapshots hold the data.** Deleting an instance with a final snapshot
(DeleteDBInstance's FinalDBSnapshotIdentifier, or `DeletionPolicy: Snapshot`) shuts its
server down cleanly and copies its data directory to
`runtime.state_dir()/snapshots/<snapshot id>/` before the instance's folder goes;
RestoreDBInstanceFromDBSnapshot starts a new server on a copy of it, with the
snapshot's users and master password, as RDS restores one. DeleteDBSnapshot removes the
copy; the sandbox stopping removes them all.

What stays metadata only (moto's): Multi-AZ (one server, no standby), instance
class, storage, backups and manual snapshots (CreateDBSnapshot of a running instance
is a moto record, not a copy of the data: restoring one is refused), parameter groups, IAM
authentication, and what the RDS API does to an instance other than deleting it
(ModifyDBInstance, StopDBInstance, RebootDBInstance leave its server as it is). A
standby keeps the source address and port it was made from: moving its source to
another port (an in-place `Port` change) leaves it without a source.

Files: everything of one instance lives in `database_folder(identifier)` =
`runtime.state_dir()/databases/<identifier>/` (`data/` and `server.log`). Deleting
the instance stops its server and removes the folder; so does the sandbox stopping
(moto's state lives in memory, so nothing could use the data afterwards).

Privileges: PostgreSQL refuses to run as root and MariaDB should not, so when the
sandbox runs as root each server (and `initdb`, `pg_basebackup`,
`mariadb-install-db`) runs as an unprivileged user, `nobody` (PostgreSQL) or
`mysql`/`nobody` (MariaDB), which owns the instance's folder. That user must be able
to reach the folder: where it cannot (the state directory lies in a private folder,
such as `/root/.hivemind/...` or a 0700 temporary folder), the folder is kept in a directory of
the system's temporary folder that only grants passage (mode 0711), and
`databases/<identifier>` is a symbolic link to it.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hivemind.sandbox import runtime
from hivemind.sandbox.host_tools import namespace

log = logging.getLogger("hivemind.sandbox")

MYSQL_MISSING = (
    "the sandbox needs a MySQL-compatible server for engine mysql: install mariadb-server "
    "(`apt-get install mariadb-server`, which scripts/bootstrap does when run as root)"
)
ENGINES = ("postgres", "mysql", "mariadb")
REPLICATION_ROLE = "rdsrepladmin"

_START_SECONDS = 30.0
_STOP_SECONDS = 15.0
# Small enough that a stack's servers stay light, large enough for an app's tests.
_MARIADB_SETTINGS = ("--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M")
_PG_HBA = """\
# Written by the HiveMind sandbox. The server listens on its own loopback address only,
# so every client is local; every login needs its password.
host    all             all     0.0.0.0/0   scram-sha-256
host    all             all     ::/0        scram-sha-256
host    replication     all     0.0.0.0/0   scram-sha-256
host    replication     all     ::/0        scram-sha-256
"""


class DatabaseError(Exception):
    """A database server could not be started or changed; the message is one line that
    says why (it becomes the resource's CloudFormation status reason)."""


# ---------------------------------------------------------------------------
# who runs the servers, and where their files live


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged user a server runs as when the sandbox runs as root."""

    name: str
    uid: int
    gid: int


def _run_as(candidates: Sequence[str]) -> _RunAs | None:
    """None when the sandbox is not root (servers then run as the sandbox's own user)."""
    if os.geteuid() != 0:
        return None
    for name in candidates:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(name, entry.pw_uid, entry.pw_gid)
    raise DatabaseError(
        "the sandbox runs as root and runs database servers as an unprivileged user, "
        f"but none of {', '.join(candidates)} exists on this machine"
    )


def _reachable(path: Path, user: _RunAs) -> bool:
    """Whether `user` may pass through every directory down to `path` (ACLs aside)."""
    return namespace.reachable(path, user.uid, {user.gid, *os.getgrouplist(user.name, user.gid)})


_lock = threading.Lock()
_passage: Path | None = None  # the 0711 temporary directory, when one is needed


def _passage_dir(user: _RunAs) -> Path:
    """A directory `user` can reach, for folders the state directory cannot hold."""
    global _passage
    with _lock:
        if _passage is None:
            _passage = Path(tempfile.mkdtemp(prefix="hivemind-databases-"))
            _passage.chmod(0o711)  # passage to a folder whose name one knows, no listing
            runtime.on_shutdown(_remove_passage_dir)
        passage = _passage
    if not _reachable(passage, user):
        raise DatabaseError(
            f"the database server's user {user.name} cannot reach {passage} "
            "(a folder of the system's temporary directory)"
        )
    return passage


def _remove_passage_dir() -> None:
    global _passage
    with _lock:
        passage, _passage = _passage, None
    if passage is not None:
        shutil.rmtree(passage, ignore_errors=True)


def database_folder(identifier: str) -> Path:
    """Where the files of DB instance `identifier` live while it exists (possibly a link
    to a folder the server's user can reach, see the module's docstring)."""
    return runtime.state_dir() / "databases" / identifier


def _make_folder(identifier: str, user: _RunAs | None) -> Path:
    """Create the instance's folder, owned by the server's user; returns its real path."""
    folder = database_folder(identifier)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.is_symlink() or folder.exists():
        raise DatabaseError(f"{folder} already exists: another DB instance is named {identifier}")
    if user is None or _reachable(folder.parent, user):
        real = folder
        real.mkdir(mode=0o700)
    else:
        real = _passage_dir(user) / identifier
        real.mkdir(mode=0o700)
        folder.symlink_to(real, target_is_directory=True)
    if user is not None:
        os.chown(real, user.uid, user.gid)
    return real


def _remove_folder(identifier: str) -> None:
    folder = database_folder(identifier)
    if folder.is_symlink():
        shutil.rmtree(folder.resolve(), ignore_errors=True)
        folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()  # the last one leaves no empty databases/ behind


def _write_private(path: Path, text: str, user: _RunAs | None, mode: int = 0o600) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    if user is not None:
        os.chown(path, user.uid, user.gid)


# ---------------------------------------------------------------------------
# processes


def _environment() -> dict[str, str]:
    """The servers' and tools' environment: the sandbox's, without the client settings
    (PGHOST, MYSQL_HOST, ...) a developer's shell may carry."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PG", "MYSQL", "MARIADB"))
    }


def _run_tool(
    command: Sequence[str | Path],
    what: str,
    user: _RunAs | None,
    *,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = _START_SECONDS,
) -> str:
    """Run a helper program to completion; DatabaseError with its last output line when
    it fails."""
    try:
        finished = subprocess.run(
            [str(part) for part in command],
            input=stdin,
            capture_output=True,
            text=True,
            env={**_environment(), **(env or {})},
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
            cwd="/",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise DatabaseError(f"{what} did not finish within {timeout:.0f} s") from error
    except OSError as error:
        raise DatabaseError(f"{what} could not run: {error}") from error
    if finished.returncode != 0:
        raise DatabaseError(f"{what} failed: {_last_line(finished.stderr or finished.stdout)}")
    return finished.stdout


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "FATAL" in line]
    return (errors or lines or ["(no output)"])[-1]


def _log_tail(path: Path) -> str:
    try:
        return _last_line(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return "(no log)"


def _launch(
    command: Sequence[str | Path], user: _RunAs | None, log_file: Path
) -> subprocess.Popen[bytes]:
    """Start a server process that writes its output to `log_file`."""
    with open(log_file, "ab") as output:
        return subprocess.Popen(
            [str(part) for part in command],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_environment(),
            user=None if user is None else user.uid,
            group=None if user is None else user.gid,
            extra_groups=None if user is None else [],
            cwd="/",
        )


def _end(process: subprocess.Popen[bytes], polite: signal.Signals) -> None:
    """Stop a server: `polite` first (its clean shutdown), then SIGKILL."""
    if process.poll() is not None:
        return
    process.send_signal(polite)
    try:
        process.wait(_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        log.warning("database server %s ignored %s: killing it", process.pid, polite.name)
        process.kill()
        process.wait(_STOP_SECONDS)


# ---------------------------------------------------------------------------
# the servers


@dataclass(frozen=True)
class MasterUser:
    """A DB instance's master user: `MasterUsername` and `MasterUserPassword`."""

    name: str
    password: str = field(repr=False)


class DatabaseServer(abc.ABC):
    """A database server the sandbox runs for one DB instance, until `stop()`.

    `address` and `port` are where it serves (what the instance's endpoint says);
    `folder` holds its data and `server.log`; `pid` is its process.
    """

    engine: str
    _stop_signal: signal.Signals  # what asks the server for a clean, quick shutdown

    def __init__(
        self,
        identifier: str,
        *,
        address: str,
        port: int,
        folder: Path,
        user: _RunAs | None,
        master: MasterUser,
    ) -> None:
        self.identifier = identifier
        self.address = address
        self.port = port
        self.folder = folder
        self._user = user
        self._master = master
        self._process: subprocess.Popen[bytes] | None = None
        self._forget_shutdown: Callable[[], None] | None = None
        self._stopped = False

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "server.log"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        """Stop the server, release its address and remove its files. Idempotent."""
        with _lock:
            if self._stopped:
                return
            self._stopped = True
            if _servers.get(self.identifier) is self:
                del _servers[self.identifier]
        try:
            self._shut_down()
        finally:
            if self._forget_shutdown is not None:
                self._forget_shutdown()
            _remove_folder(self.identifier)
            runtime.release_address(self.address)
            log.info("database %s (%s) stopped and removed", self.identifier, self.engine)

    def change_port(self, port: int) -> None:
        """Serve on `port` from now on: the same address and data, after a restart."""
        if port == self.port:
            return
        self._shut_down()
        self.port = port
        self._serve()

    @abc.abstractmethod
    def set_master_password(self, password: str) -> None:
        """Give the master user `password`; the old one stops working."""

    def replication_source(self) -> tuple[str, str]:
        """(user, password) a read replica of this server streams with."""
        raise DatabaseError(f"the sandbox serves no read replicas of {self.engine} instances")

    @abc.abstractmethod
    def _serve(self) -> None:
        """Start the server process on `address:port`; return once it accepts logins."""

    def _shut_down(self) -> None:
        if self._process is not None:
            _end(self._process, self._stop_signal)
            self._process = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.identifier} at {self.address}:{self.port})"


_servers: dict[str, DatabaseServer] = {}


def server_of(identifier: str) -> DatabaseServer | None:
    """The server of DB instance `identifier`, if the sandbox runs one."""
    with _lock:
        return _servers.get(identifier)


def _started(
    identifier: str,
    port: int,
    user_candidates: Sequence[str],
    build: Callable[[str, Path, _RunAs | None], DatabaseServer],
) -> DatabaseServer:
    """Allocate an address and a folder, let `build` prepare the server's data, start it.
    On any failure nothing stays behind (process, folder, address)."""
    began = time.monotonic()
    with _lock:
        if identifier in _servers:
            raise DatabaseError(f"the sandbox already runs a database server named {identifier}")
    user = _run_as(user_candidates)
    address = runtime.allocate_address([port])
    server: DatabaseServer | None = None
    try:
        folder = _make_folder(identifier, user)
        server = build(address, folder, user)
        server._serve()
    except BaseException:
        if server is not None:
            server._shut_down()
        _remove_folder(identifier)
        runtime.release_address(address)
        raise
    with _lock:
        _servers[identifier] = server
    server._forget_shutdown = runtime.on_shutdown(server.stop)
    log.info(
        "database %s (%s) serving at %s:%s as %s (pid %s, ready in %.1f s)",
        identifier,
        server.engine,
        address,
        port,
        user.name if user else "the sandbox's user",
        server.pid,
        time.monotonic() - began,
    )
    return server


# ---------------------------------------------------------------------------
# PostgreSQL


@functools.cache
def postgres_bin() -> Path:
    """The directory of the PostgreSQL binaries the `pgserver` package bundles."""
    spec = importlib.util.find_spec("pgserver")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").is_file():
            return candidate
    raise DatabaseError(
        "the sandbox's PostgreSQL comes from the pgserver package, which is not installed "
        "(run ./scripts/bootstrap)"
    )


class PostgresServer(DatabaseServer):
    """A PostgreSQL server: a primary (`initialize`) or a streaming standby (`copy_from`)."""

    engine = "postgres"
    _stop_signal = signal.SIGINT  # PostgreSQL's fast shutdown
    # The password of the replication role, once a replica of this server was made.
    _replication_password: str | None = None
    _pending_database: str | None = None  # DBName, created by the first start

    @property
    def _bin(self) -> Path:
        return postgres_bin()

    def initialize(self, database_name: str | None) -> None:
        """Create an empty cluster whose bootstrap superuser is the master user; its first
        start creates `database_name` (if given) owned by the master user."""
        self._check_binaries_reachable()
        password_file = self.folder / "master-password"
        _write_private(password_file, self._master.password + "\n", self._user)
        try:
            _run_tool(
                [
                    self._bin / "initdb",
                    "-D",
                    self.data_dir,
                    "-U",
                    self._master.name,
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                    "--no-sync",  # a sandbox: surviving power loss is not worth the time
                    "--no-instructions",
                ],
                f"initdb for {self.identifier}",
                self._user,
            )
        finally:
            password_file.unlink(missing_ok=True)
        _write_private(self.data_dir / "pg_hba.conf", _PG_HBA, self._user)
        self._pending_database = database_name

    def copy_from(self, source: PostgresServer) -> None:
        """Make the data directory a standby of `source` (`pg_basebackup -R`)."""
        self._check_binaries_reachable()
        role, password = source.replication_source()
        _run_tool(
            [
                self._bin / "pg_basebackup",
                "-h",
                source.address,
                "-p",
                str(source.port),
                "-U",
                role,
                "-D",
                self.data_dir,
                "--write-recovery-conf",
                "--checkpoint=fast",
                "--wal-method=stream",
                "--no-sync",
            ],
            f"pg_basebackup of {source.identifier} for {self.identifier}",
            self._user,
            env={"PGPASSWORD": password},
        )
        # A replica of this replica streams with the same role (it came with the copy).
        self._replication_password = password

    def create_database(self, name: str) -> None:
        """Create database `name` owned by the master user (nothing if it exists)."""
        self._psql(
            "SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'owner')\n"
            "WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')\\gexec\n",
            name=name,
            owner=self._master.name,
        )

    def set_master_password(self, password: str) -> None:
        self._psql(
            "ALTER ROLE :\"owner\" PASSWORD :'password';\n",
            owner=self._master.name,
            password=password,
        )
        self._master = MasterUser(self._master.name, password)

    def replication_source(self) -> tuple[str, str]:
        with _lock:
            if self._replication_password is None:
                self._replication_password = secrets.token_urlsafe(24)
            password = self._replication_password
        self._psql(
            "SELECT format('CREATE ROLE %I REPLICATION LOGIN PASSWORD %L', :'role', :'password')\n"
            "WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')\\gexec\n",
            role=REPLICATION_ROLE,
            password=password,
        )
        return REPLICATION_ROLE, password

    def _serve(self) -> None:
        self._check_binaries_reachable()
        command: list[str | Path] = [
            self._bin / "postgres",
            "-D",
            self.data_dir,
            "-h",
            self.address,
            "-p",
            str(self.port),
            "-k",
            "",  # no Unix socket
        ]
        self._process = _launch(command, self._user, self.log_file)
        self._wait_until_ready()
        if self._pending_database:
            self.create_database(self._pending_database)
            self._pending_database = None

    def _wait_until_ready(self) -> None:
        """Wait for the status PostgreSQL writes into postmaster.pid once it accepts
        connections ("ready"; "standby" for a standby without hot standby), as
        `pg_ctl -w` does."""
        assert self._process is not None
        deadline = time.monotonic() + _START_SECONDS
        pid_file = self.data_dir / "postmaster.pid"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DatabaseError(
                    f"PostgreSQL for {self.identifier} did not start: {_log_tail(self.log_file)}"
                )
            try:
                lines = pid_file.read_text(encoding="utf-8").splitlines()
            except OSError:
                lines = []
            ours = bool(lines) and lines[0].strip() == str(self._process.pid)
            if ours and len(lines) >= 8 and lines[7].strip() in ("ready", "standby"):
                return
            time.sleep(0.02)
        raise DatabaseError(
            f"PostgreSQL for {self.identifier} did not accept connections within "
            f"{_START_SECONDS:.0f} s: {_log_tail(self.log_file)}"
        )

    def _check_binaries_reachable(self) -> None:
        if self._user is not None and not _reachable(self._bin, self._user):
            raise DatabaseError(
                f"the PostgreSQL binaries in {self._bin} are out of reach of the user "
                f"{self._user.name} the sandbox runs database servers as (install HiveMind "
                "where every user can read it)"
            )

    def _psql(self, script: str, **variables: str) -> str:
        """Run `script` as the master user over TCP; values are psql variables, so psql
        quotes them (:'value' as a literal, :"value" as an identifier)."""
        command: list[str | Path] = [
            self._bin / "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.address,
            "-p",
            str(self.port),
            "-U",
            self._master.name,
            "-d",
            "postgres",
        ]
        for name, value in variables.items():
            command += ["-v", f"{name}={value}"]
        return _run_tool(
            command,
            f"psql on {self.identifier}",
            None,
            env={"PGPASSWORD": self._master.password, "PGCONNECT_TIMEOUT": "10"},
            stdin=script,
        )


def start_postgres(
    identifier: str, *, port: int, master: MasterUser, database_name: str | None
) -> DatabaseServer:
    """A new PostgreSQL server for DB instance `identifier`: an empty cluster whose master
    user logs in with its password, with `database_name` (if given) owned by it."""

    def build(address: str, folder: Path, user: _RunAs | None) -> DatabaseServer:
        server = PostgresServer(
            identifier, address=address, port=port, folder=folder, user=user, master=master
        )
        server.initialize(database_name)
        return server

    return _started(identifier, port, ("nobody",), build)


def _start_postgres_replica(
    identifier: str, *, source: DatabaseServer, port: int
) -> DatabaseServer:
    """A streaming standby of `source` for read replica `identifier`: the source's data
    and users, read-only, following every change the source makes."""
    if not isinstance(source, PostgresServer):
        raise DatabaseError(f"{identifier}: its source {source.identifier} is not PostgreSQL")

    def build(address: str, folder: Path, user: _RunAs | None) -> DatabaseServer:
        replica = PostgresServer(
            identifier, address=address, port=port, folder=folder, user=user, master=source._master
        )
        replica.copy_from(source)
        return replica

    return _started(identifier, port, ("nobody",), build)


# ---------------------------------------------------------------------------
# MySQL (MariaDB)


@dataclass(frozen=True)
class MysqlInstallation:
    """A MySQL-compatible server installed on this machine: the server and the program
    that creates a data directory for it."""

    server: Path
    install_db: Path


def _find_program(names: Iterable[str]) -> Path | None:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
        if found:
            return Path(found)
    return None


def find_mysql() -> MysqlInstallation | None:
    """The MySQL-compatible server the sandbox runs for engine mysql (`mariadbd` or
    `mysqld`, on PATH or in /usr/sbin, with `mariadb-install-db` or `mysql_install_db`),
    or None when there is none."""
    server = _find_program(("mariadbd", "mysqld"))
    install_db = _find_program(("mariadb-install-db", "mysql_install_db"))
    if server is None or install_db is None:
        return None
    return MysqlInstallation(server, install_db)


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _sql_name(value: str) -> str:
    return "`" + value.replace("`", "``") + "`"


def _native_hash(password: str) -> str:
    """The mysql_native_password hash of `password` (what `IDENTIFIED BY PASSWORD` takes),
    so neither the init file nor the binary log holds the password itself."""
    return "*" + hashlib.sha1(hashlib.sha1(password.encode()).digest()).hexdigest().upper()


# What RDS grants the master user of a MySQL instance: no SUPER, so `read_only` holds
# for it on a replica, as on AWS.
_MASTER_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, INDEX, "
    "ALTER, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, "
    "REPLICATION SLAVE, REPLICATION CLIENT, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, "
    "ALTER ROUTINE, CREATE USER, EVENT, TRIGGER"
)
_MYSQL_USERS = ("mysql", "nobody")


class MysqlServer(DatabaseServer):
    """A MariaDB server for a DB instance of engine mysql or mariadb: a primary
    (`initialize`), which keeps a binary log, or a read replica (`initialize_replica`).

    SQL it needs run (the master user, the database, a new password, where to replicate
    from) goes into an init file for its next start, so the sandbox needs no MySQL
    client. Passwords of users go in as their mysql_native_password hash.
    """

    engine = "mysql"
    _stop_signal = signal.SIGTERM  # MariaDB's clean shutdown
    _installation: MysqlInstallation
    _pending_sql: str | None = None
    _replica = False
    # The password of the replication role of a primary.
    _replication_password: str | None = None

    def initialize(self, installation: MysqlInstallation, database_name: str | None) -> None:
        """Create the data directory of a primary; its first start creates the master
        user, the database and the replication role."""
        self._install(installation)
        self._replication_password = secrets.token_urlsafe(24)
        statements = [
            f"CREATE USER IF NOT EXISTS {self._account} "
            f"IDENTIFIED BY PASSWORD {_sql_string(_native_hash(self._master.password))};",
            f"GRANT {_MASTER_PRIVILEGES} ON *.* TO {self._account} WITH GRANT OPTION;",
            f"CREATE USER IF NOT EXISTS '{REPLICATION_ROLE}'@'%' "
            f"IDENTIFIED BY PASSWORD {_sql_string(_native_hash(self._replication_password))};",
            f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_ROLE}'@'%';",
        ]
        if database_name:
            statements.append(f"CREATE DATABASE IF NOT EXISTS {_sql_name(database_name)};")
        self._pending_sql = "\n".join(statements) + "\n"

    def initialize_replica(self, installation: MysqlInstallation, source: MysqlServer) -> None:
        """Create the data directory of a read replica of `source`: its first start
        replays the source's whole binary log (users, databases, data), then follows it."""
        self._install(installation)
        self._replica = True
        role, password = source.replication_source()
        self._pending_sql = (
            f"CHANGE MASTER TO MASTER_HOST={_sql_string(source.address)}, "
            f"MASTER_PORT={source.port}, MASTER_USER={_sql_string(role)}, "
            f"MASTER_PASSWORD={_sql_string(password)}, MASTER_USE_GTID=slave_pos;\n"
            "START SLAVE;\n"
        )

    def replication_source(self) -> tuple[str, str]:
        if self._replication_password is None:
            raise DatabaseError(
                f"{self.identifier} is a MySQL read replica: the sandbox makes replicas of "
                "primaries only"
            )
        return REPLICATION_ROLE, self._replication_password

    def set_master_password(self, password: str) -> None:
        self._pending_sql = (
            f"ALTER USER {self._account} "
            f"IDENTIFIED BY PASSWORD {_sql_string(_native_hash(password))};\n"
        )
        self._shut_down()
        self._master = MasterUser(self._master.name, password)
        self._serve()

    @property
    def _account(self) -> str:
        return f"{_sql_string(self._master.name)}@'%'"

    def _install(self, installation: MysqlInstallation) -> None:
        self._installation = installation
        command: list[str | Path] = [
            installation.install_db,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            "--skip-test-db",
            "--skip-name-resolve",
            *_MARIADB_SETTINGS,
        ]
        if self._user is not None:
            command.append(f"--user={self._user.name}")  # it hands the files to that user
        _run_tool(command, f"mariadb-install-db for {self.identifier}", None)

    def _serve(self) -> None:
        command: list[str | Path] = [
            self._installation.server,
            "--no-defaults",
            f"--datadir={self.data_dir}",
            f"--bind-address={self.address}",
            f"--port={self.port}",
            "--socket=mysqld.sock",  # relative to the data directory: short wherever it is
            "--pid-file=mysqld.pid",
            "--skip-name-resolve",
            f"--server-id={zlib.crc32(self.identifier.encode()) % 4_000_000_000 + 1}",
            *_MARIADB_SETTINGS,
        ]
        if self._replica:
            command += ["--skip-log-bin", "--read-only"]
        else:
            command.append("--log-bin=binlog")  # what replicas replay
        if self._user is not None:
            command.append(f"--user={self._user.name}")
        init_file = self.folder / "init.sql"
        if self._pending_sql is not None:
            _write_private(init_file, self._pending_sql, self._user)
            command.append(f"--init-file={init_file}")
        try:
            self._process = _launch(command, self._user, self.log_file)
            self._wait_until_ready()
        finally:
            init_file.unlink(missing_ok=True)
        self._pending_sql = None

    def _wait_until_ready(self) -> None:
        """Wait for the server's greeting on its TCP port: MariaDB runs its init file
        before it greets anyone."""
        assert self._process is not None
        deadline = time.monotonic() + _START_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DatabaseError(
                    f"MariaDB for {self.identifier} did not start: {_log_tail(self.log_file)}"
                )
            try:
                with socket.create_connection((self.address, self.port), timeout=1) as probe:
                    if probe.recv(1):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise DatabaseError(
            f"MariaDB for {self.identifier} did not accept connections within "
            f"{_START_SECONDS:.0f} s: {_log_tail(self.log_file)}"
        )


def start_mysql(
    identifier: str, *, port: int, master: MasterUser, database_name: str | None
) -> DatabaseServer:
    """A new MariaDB server for DB instance `identifier` (engine mysql or mariadb), with
    the master user `'<name>'@'%'` (RDS's privileges for it) and `database_name` (if
    given). Fails with `MYSQL_MISSING` when no MySQL-compatible server is installed."""
    installation = _mysql_installation()

    def build(address: str, folder: Path, user: _RunAs | None) -> DatabaseServer:
        server = MysqlServer(
            identifier, address=address, port=port, folder=folder, user=user, master=master
        )
        server.initialize(installation, database_name)
        return server

    return _started(identifier, port, _MYSQL_USERS, build)


def start_read_replica(identifier: str, *, source: DatabaseServer, port: int) -> DatabaseServer:
    """A read replica of `source` for DB instance `identifier`: the source's data and
    users, read-only, following every change the source makes (a PostgreSQL streaming
    standby, or a MariaDB replica of the source's binary log)."""
    if isinstance(source, PostgresServer):
        return _start_postgres_replica(identifier, source=source, port=port)
    if not isinstance(source, MysqlServer):
        raise DatabaseError(f"the sandbox makes no read replicas of {source.engine} instances")
    installation = _mysql_installation()

    def build(address: str, folder: Path, user: _RunAs | None) -> DatabaseServer:
        replica = MysqlServer(
            identifier, address=address, port=port, folder=folder, user=user, master=source._master
        )
        replica.initialize_replica(installation, source)
        return replica

    return _started(identifier, port, _MYSQL_USERS, build)


# ---------------------------------------------------------------------------
# final snapshots that hold the data


@dataclass
class _Snapshot:
    """A final snapshot's data: a copy of its instance's data directory, taken after a
    clean shutdown, and what a server needs to run it again."""

    engine: str
    master: MasterUser
    folder: Path  # holds data/
    replication_password: str | None = None


_snapshots: dict[str, _Snapshot] = {}


def snapshot_folder(snapshot_id: str) -> Path:
    return runtime.state_dir() / "snapshots" / snapshot_id


def keep_final_snapshot(identifier: str, snapshot_id: str) -> None:
    """Copy the data of DB instance `identifier` into its final snapshot `snapshot_id`:
    the server shuts down cleanly first, so the copy is consistent, as RDS's final
    snapshot is taken once the instance stopped taking writes. The caller then stops
    the server (which removes the instance's own folder)."""
    server = server_of(identifier)
    if server is None:
        return
    server._shut_down()
    target = snapshot_folder(snapshot_id)
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True, mode=0o700)
    shutil.copytree(server.data_dir, target / "data", symlinks=True)
    replication = getattr(server, "_replication_password", None)
    with _lock:
        first = not _snapshots
        _snapshots[snapshot_id] = _Snapshot(server.engine, server._master, target, replication)
    if first:
        runtime.on_shutdown(_forget_snapshots)
    log.info("final snapshot %s of %s keeps its data in %s", snapshot_id, identifier, target)


def snapshot_holds_data(snapshot_id: str) -> bool:
    with _lock:
        return snapshot_id in _snapshots


def delete_snapshot_data(snapshot_id: str) -> None:
    with _lock:
        snapshot = _snapshots.pop(snapshot_id, None)
    if snapshot is not None:
        shutil.rmtree(snapshot.folder, ignore_errors=True)


def _forget_snapshots() -> None:
    with _lock:
        kept = list(_snapshots.values())
        _snapshots.clear()
    for snapshot in kept:
        shutil.rmtree(snapshot.folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        (runtime.state_dir() / "snapshots").rmdir()


def _chown_tree(root: Path, user: _RunAs) -> None:
    os.chown(root, user.uid, user.gid, follow_symlinks=False)
    for folder, names, files in os.walk(root):
        for name in [*names, *files]:
            os.chown(Path(folder) / name, user.uid, user.gid, follow_symlinks=False)


def restore_snapshot(snapshot_id: str, identifier: str, *, port: int) -> DatabaseServer:
    """A new server for DB instance `identifier`, restored from final snapshot
    `snapshot_id`: its data, users and master password, as RDS restores a snapshot."""
    with _lock:
        snapshot = _snapshots.get(snapshot_id)
    if snapshot is None:
        raise DatabaseError(
            f"the sandbox keeps the data of final snapshots only (DeleteDBInstance with "
            f"FinalDBSnapshotIdentifier, DeletionPolicy Snapshot): {snapshot_id} has none"
        )

    def build(address: str, folder: Path, user: _RunAs | None) -> DatabaseServer:
        server: DatabaseServer
        if snapshot.engine == "postgres":
            server = PostgresServer(
                identifier, address=address, port=port, folder=folder, user=user,
                master=snapshot.master,
            )  # fmt: skip
        else:
            mysql = MysqlServer(
                identifier, address=address, port=port, folder=folder, user=user,
                master=snapshot.master,
            )  # fmt: skip
            mysql._installation = _mysql_installation()
            mysql._replication_password = snapshot.replication_password
            server = mysql
        shutil.copytree(snapshot.folder / "data", server.data_dir, symlinks=True)
        if user is not None:
            _chown_tree(server.data_dir, user)
        return server

    candidates = ("nobody",) if snapshot.engine == "postgres" else _MYSQL_USERS
    return _started(identifier, port, candidates, build)


def _mysql_installation() -> MysqlInstallation:
    installation = find_mysql()
    if installation is None:
        raise DatabaseError(MYSQL_MISSING)
    return installation


def start_database(
    engine: str, identifier: str, *, port: int, master: MasterUser, database_name: str | None
) -> DatabaseServer:
    """A new server of `engine` for DB instance `identifier` (see `start_postgres` and
    `start_mysql`); DatabaseError for an engine the sandbox does not serve."""
    if engine == "postgres":
        return start_postgres(identifier, port=port, master=master, database_name=database_name)
    if engine in ("mysql", "mariadb"):
        return start_mysql(identifier, port=port, master=master, database_name=database_name)
    raise DatabaseError(
        f"the sandbox serves DB instances of engine {', '.join(ENGINES)}, not {engine}"
    )
