"""Test fixtures for flask-notes: a real, throwaway PostgreSQL server.

The server comes from the ``pgserver`` PyPI package, which bundles PostgreSQL
binaries. It listens on 127.0.0.1 only, with password (scram-sha-256) auth,
and is stopped and deleted at the end of the test session.
"""

import importlib
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest

APP_DIR = Path(__file__).resolve().parent.parent
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


def _pgserver_bin() -> Path:
    # Same as Path(pgserver.__file__).parent, without importing pgserver (its
    # import-time setup warns when XDG_RUNTIME_DIR is unset); we only need its binaries.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise RuntimeError("flask-notes tests need the 'pgserver' package: pip install pgserver")
    return Path(spec.origin).parent / "pginstall" / "bin"


PG_BIN = _pgserver_bin()
PG_USER = "postgres"


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_command_prefix() -> list[str]:
    """PostgreSQL refuses to run as root, so drop to ``nobody`` when we are root."""
    if os.geteuid() == 0:
        return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    return []


def _chown_to_pg_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user="nobody", group="nogroup")


def _run_pg(args: list[str], cwd: Path) -> None:
    result = subprocess.run(
        _pg_command_prefix() + args, cwd=cwd, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"{Path(args[0]).name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@pytest.fixture(scope="session")
def notes_pg_url():
    """Start PostgreSQL on a free loopback port; yield its postgresql:// URL."""
    base = Path(tempfile.mkdtemp(prefix="flask-notes-pg-"))
    _chown_to_pg_user(base)
    data_dir = base / "data"
    log_file = base / "postgres.log"
    password = secrets.token_urlsafe(16)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    _chown_to_pg_user(pwfile)
    port = _free_loopback_port()

    started = False
    try:
        _run_pg(
            [str(PG_BIN / "initdb"), "-D", str(data_dir), "-U", PG_USER,
             f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=trust",
             "--encoding=UTF8", "--no-locale"],
            cwd=base,
        )
        try:
            # -l sends server output to a file, so pg_ctl's pipes close once it returns.
            _run_pg(
                [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-l", str(log_file), "-w",
                 "-o", f"-h 127.0.0.1 -p {port} -k {data_dir}", "start"],
                cwd=base,
            )
        except RuntimeError as exc:
            log = log_file.read_text() if log_file.exists() else "(no log)"
            raise RuntimeError(f"{exc}\n--- postgres.log ---\n{log}") from None
        started = True
        yield f"postgresql://{PG_USER}:{password}@127.0.0.1:{port}/postgres"
    finally:
        try:
            if started:
                _run_pg(
                    [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "stop"], cwd=base
                )
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def notes_app_module(notes_pg_url):
    """Import app.py with DATABASE_URL pointing at the test server."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATABASE_URL", notes_pg_url)
        mp.setenv("SECRET_KEY", "test-secret")
        module = importlib.import_module("app")
    return module


@pytest.fixture
def notes_client(notes_app_module, notes_pg_url, monkeypatch):
    """A Flask test client against an empty notes table."""
    with psycopg.connect(notes_pg_url) as conn:
        if conn.execute("SELECT to_regclass('public.notes')").fetchone()[0] is not None:
            conn.execute("TRUNCATE notes RESTART IDENTITY")
    flask_app = notes_app_module.app
    monkeypatch.setitem(flask_app.config, "DATABASE_URL", notes_pg_url)
    flask_app.config.update(TESTING=True)
    return flask_app.test_client()
