"""Start, stop and find the sandbox daemon of a HiveMind home, point AWS clients at it,
and arm its faults.

The daemon (`python -m hivemind.sandbox.daemon`) runs detached in its own session,
bound to 127.0.0.1; `<home>/sandbox/` holds its `pid`, `port` and `sandbox.log`,
and the sandbox's CA (`ca.pem`, `ca.key`).
A pid file whose process is gone, or is not a sandbox daemon, is stale and is
removed by `status()`. This module imports neither moto nor boto3.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hivemind
from hivemind.errors import HiveMindError
from hivemind.sandbox import credentials as sandbox_credentials
from hivemind.sandbox.credentials import SECRET_HEADER

LOOPBACK = "127.0.0.1"
SERVICE_NAME = "hivemind-sandbox"  # what the daemon's ping answers (see server.py)
CONTROL_PATH = "/moto-api/hivemind"
DEFAULT_REGION = "us-east-1"
# What a sandbox server a test runs in its own process takes (it takes any key, as moto
# does); a daemon makes its own at each start (see hivemind.sandbox.credentials).
SANDBOX_ACCESS_KEY = "testing"
# The port every sandbox host serves SSH on: `hivemind.sandbox.hosts.SSH_PORT`, repeated
# here because that module imports asyncssh and moto (a test keeps the two equal).
SANDBOX_SSH_PORT = 2222
# Credentials and endpoints a child process could otherwise take from the operator's
# environment instead of the sandbox's.
CONFLICTING_VARIABLES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CREDENTIAL_EXPIRATION",
)


class SandboxError(HiveMindError):
    """The sandbox daemon could not be started, reached or stopped."""


# The sandbox's CA (see hivemind.sandbox.connect_endpoint), in the daemon's folder.
CA_CERTIFICATE_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
# The system's trusted CAs plus the sandbox's (see hivemind.sandbox.certificates).
TRUST_BUNDLE_FILE = "trust.pem"


@dataclass(frozen=True)
class SandboxInfo:
    """A running sandbox: its endpoint, daemon pid and port, and the CA certificate its
    TLS endpoints (EC2 Instance Connect Endpoints) present certificates of (None: not
    known, e.g. for a sandbox server a test runs in its own process)."""

    url: str
    pid: int
    port: int
    ca_bundle: Path | None = None
    # The system's trusted CAs and the sandbox's, for TLS clients of the sandbox's load
    # balancers (SSL_CERT_FILE); None as ca_bundle.
    trust_bundle: Path | None = None
    # The daemon's own access key (only the home's owner can read it).
    access_key_id: str = SANDBOX_ACCESS_KEY
    secret_access_key: str = SANDBOX_ACCESS_KEY


def state_dir(home: Path) -> Path:
    """Where the sandbox of a HiveMind home keeps its pid, port and log."""
    return home / "sandbox"


def log_file(home: Path) -> Path:
    return state_dir(home) / "sandbox.log"


def ca_file(home: Path) -> Path:
    """The sandbox CA's certificate of a HiveMind home (written by its daemon's start)."""
    return state_dir(home) / CA_CERTIFICATE_FILE


def status(home: Path) -> SandboxInfo | None:
    """The running sandbox of `home`, or None. Cleans up a stale pid file."""
    directory = state_dir(home)
    pid = _read_int(directory / "pid")
    if pid is None:
        return None
    if not _is_sandbox_daemon(pid):
        _remove_state(directory)
        return None
    port = _read_int(directory / "port")
    if port is None:
        return None
    answer = _ping(port)
    if answer is None or answer.get("pid") != pid:
        return None  # starting, or wedged: `down` can still stop it
    ca = ca_file(home)
    trust = directory / TRUST_BUNDLE_FILE
    keys = sandbox_credentials.read(directory)
    if keys is None:
        return None  # another user's home, or a daemon from before credentials
    return SandboxInfo(
        url=f"http://{LOOPBACK}:{port}",
        pid=pid,
        port=port,
        ca_bundle=ca if ca.is_file() else None,
        trust_bundle=trust if trust.is_file() else None,
        access_key_id=keys.access_key_id,
        secret_access_key=keys.secret_access_key,
    )


def up(home: Path, *, port: int | None = None, timeout: float = 60.0) -> SandboxInfo:
    """Start the sandbox daemon of `home` unless it is running; return it once it answers."""
    directory = state_dir(home)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        running = status(home)
        if running is not None:
            return running
        if _read_int(directory / "pid") is not None:
            # A daemon of ours that does not answer (still starting, or wedged).
            _stop(directory, timeout=10.0)
        process = _spawn(home, port)
        return _wait_until_ready(home, process, timeout)


def down(home: Path, *, timeout: float = 10.0) -> bool:
    """Stop the sandbox daemon of `home`; False when none was running. Its resources
    (all in the daemon's memory) are gone with it."""
    directory = state_dir(home)
    if not directory.is_dir():
        return False
    with _locked(directory):
        return _stop(directory, timeout=timeout)


def environment(
    info: SandboxInfo, region: str = DEFAULT_REGION, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables that point boto3, the AWS CLI and the AWS CDK CLI at the sandbox with
    fake credentials, and make them trust the sandbox's CA (AWS_CA_BUNDLE, when `info`
    knows it) for its TLS endpoints, and OpenSSL's clients for its HTTPS load balancers
    (SSL_CERT_FILE). Apply them on top of an environment from which
    `CONFLICTING_VARIABLES` are removed (see `child_environment`)."""
    base = os.environ if base is None else base
    no_proxy = [p for p in base.get("NO_PROXY", base.get("no_proxy", "")).split(",") if p]
    for host in (LOOPBACK, "localhost"):
        if host not in no_proxy:
            no_proxy.append(host)
    variables = {
        "AWS_ENDPOINT_URL": info.url,
        "AWS_ACCESS_KEY_ID": info.access_key_id,
        "AWS_SECRET_ACCESS_KEY": info.secret_access_key,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        # Never ask an instance metadata service for credentials or the region.
        "AWS_EC2_METADATA_DISABLED": "true",
        # The CDK CLI's own calls (telemetry, notices) would leave the machine.
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "NO_PROXY": ",".join(no_proxy),
        "no_proxy": ",".join(no_proxy),
        # The sandbox's EC2 instances are SSH hosts on their own loopback address, at
        # this port instead of 22 (see hivemind.sandbox.hosts).
        "HIVEMIND_SSH_PORT": str(SANDBOX_SSH_PORT),
    }
    if info.ca_bundle is not None:
        # The EC2 Instance Connect Endpoints' certificates are issued by the sandbox's CA;
        # the AWS API endpoint itself is plain HTTP, so nothing else changes.
        variables["AWS_CA_BUNDLE"] = str(info.ca_bundle)
    if info.trust_bundle is not None:
        # The sandbox's load balancers serve HTTPS with certificates from its CA
        # (`hivemind sandbox certificate`); OpenSSL's clients (QA's checks, curl) trust
        # it through the system's store with that CA added.
        variables["SSL_CERT_FILE"] = str(info.trust_bundle)
    return variables


def child_environment(
    info: SandboxInfo, region: str = DEFAULT_REGION, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A complete environment for a child process (the CDK CLI) that talks to the sandbox:
    `base` (default: this process's) without the operator's AWS identity, plus
    `environment()`."""
    base = dict(os.environ if base is None else base)
    for name in CONFLICTING_VARIABLES:
        base.pop(name, None)
    return {**base, **environment(info, region, base)}


def add_fault(
    info: SandboxInfo,
    resource_type: str,
    on: str = "create",
    times: int = 1,
    message: str | None = None,
    match: str = "",
    code: str = "",
) -> dict[str, Any]:
    """Make the next `times` creations (on="create"), updates (on="update") or deletions
    (on="delete") of `resource_type` (e.g. AWS::RDS::DBInstance, or a pattern like
    AWS::RDS::*) fail, each with a status reason saying the sandbox did it; or the
    host-level operations `connect`, `command` (those containing `match`) and `health`
    (see `hivemind.sandbox.faults`)."""
    body: dict[str, Any] = {"resource_type": resource_type, "on": on, "times": times}
    if message:
        body["message"] = message
    if match:
        body["match"] = match
    if code:
        body["code"] = code
    return _control(info, "POST", "faults", body)


def clear_faults(info: SandboxInfo) -> None:
    """Disarm every fault."""
    _control(info, "DELETE", "faults")


def reset(info: SandboxInfo) -> None:
    """Empty the sandbox, as a new account: everything created in it is gone, every fault
    disarmed; the daemon keeps running (and its CA, so its endpoint certificates stay
    trusted)."""
    _control(info, "POST", "reset", {}, timeout=60.0)


def faults(info: SandboxInfo) -> list[dict[str, Any]]:
    """The armed faults, each with how many more times it fires."""
    return list(_control(info, "GET", "faults")["faults"])


# ---------------------------------------------------------------------------


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _request(
    url: str,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    timeout: float = 5.0,
    secret: str | None = None,
) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    # Loopback only: never through a proxy from the operator's environment.
    with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
        answer = json.loads(response.read().decode() or "{}")
    return answer if isinstance(answer, dict) else {}


def _control(
    info: SandboxInfo,
    method: str,
    what: str,
    body: dict[str, Any] | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    url = f"{info.url}{CONTROL_PATH}/{what}"
    try:
        return _request(url, method, body, timeout, secret=info.secret_access_key)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        with contextlib.suppress(ValueError):
            detail = json.loads(detail).get("error", detail)
        raise SandboxError(
            f"The sandbox refused the request: {detail}",
            where=url,
            next_step="hivemind sandbox fault --help",
        ) from error
    except (urllib.error.URLError, OSError) as error:
        raise SandboxError(
            "The sandbox does not answer.",
            where=info.url,
            cause=str(error),
            next_step="hivemind sandbox status",
        ) from error


def _ping(port: int) -> dict[str, Any] | None:
    try:
        answer = _request(f"http://{LOOPBACK}:{port}{CONTROL_PATH}/ping", timeout=2.0)
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return answer if answer.get("service") == SERVICE_NAME else None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def _remove_state(directory: Path) -> None:
    for name in ("pid", "port"):
        with contextlib.suppress(FileNotFoundError):
            (directory / name).unlink()


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One `up` or `down` at a time per home, across processes."""
    with open(directory / "lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError, OSError):
        # Reap it if it is our own exited child, so it does not linger as a zombie.
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _is_sandbox_daemon(pid: int) -> bool:
    """Whether `pid` is alive and is a sandbox daemon (not a process that reused the pid)."""
    if not _alive(pid):
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return True  # no /proc to ask: trust the pid file
    return b"hivemind.sandbox.daemon" in command


def _spawn(home: Path, port: int | None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "hivemind.sandbox.daemon", "--home", str(home)]
    if port:
        command += ["--port", str(port)]
    env = dict(os.environ)
    # The daemon imports this very checkout, wherever it is started from.
    source_root = str(Path(hivemind.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH")) if p)
    with open(log_file(home), "ab") as log:
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            start_new_session=True,  # outlives the command that started it
            close_fds=True,
        )


def _wait_until_ready(home: Path, process: subprocess.Popen[bytes], timeout: float) -> SandboxInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SandboxError(
                f"The sandbox daemon exited during start-up (exit code {process.returncode}).",
                where=str(log_file(home)),
                details=_tail(log_file(home)),
                next_step=f"cat {log_file(home)}",
            )
        info = status(home)
        if info is not None and info.pid == process.pid:
            return info
        time.sleep(0.1)
    process.terminate()
    raise SandboxError(
        f"The sandbox daemon did not answer within {timeout:.0f} s.",
        where=str(log_file(home)),
        details=_tail(log_file(home)),
        next_step=f"cat {log_file(home)}",
    )


def _stop(directory: Path, *, timeout: float) -> bool:
    pid = _read_int(directory / "pid")
    if pid is None or not _is_sandbox_daemon(pid):
        _remove_state(directory)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        while _alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    _remove_state(directory)
    return True


def _tail(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []
