"""The sandbox server: moto's AWS APIs on a loopback port, in this process, with the
sandbox's CloudFormation engine and X-Ray API installed and a small control endpoint.

`start_server()` serves from a background thread (what tests use); `main()` is the
daemon `hivemind sandbox up` starts (`python -m hivemind.sandbox.daemon --home DIR`),
which records its pid and port under `DIR/sandbox/`, logs to `DIR/sandbox/sandbox.log`
and serves until SIGTERM.

Control endpoint (JSON, same port):
  GET    /moto-api/hivemind/ping    -> {"service": "hivemind-sandbox", "pid": ..., "version": ...}
  GET    /moto-api/hivemind/faults  -> {"faults": [...]}
  POST   /moto-api/hivemind/faults  {"resource_type", "on", "times", "message"?} -> the fault
  DELETE /moto-api/hivemind/faults  -> {"faults": []}
  POST   /moto-api/hivemind/reset   -> {"reset": true}: the sandbox as a new account
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind import __version__
from hivemind.sandbox import credentials as sandbox_credentials
from hivemind.sandbox.credentials import Credentials, guard
from hivemind.sandbox.faults import FAULTS, parse_fault

LOOPBACK = "127.0.0.1"
SERVICE_NAME = "hivemind-sandbox"
CONTROL_PATH = "/moto-api/hivemind"
log = logging.getLogger("hivemind.sandbox")

Response = tuple[int, dict[str, str], str]


def _json(status: int, body: Any) -> Response:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


def ping_endpoint(request: Any, full_url: str, headers: Any) -> Response:
    """Who is serving: lets a client tell the sandbox from anything else on the port."""
    return _json(200, {"service": SERVICE_NAME, "pid": os.getpid(), "version": __version__})


def faults_endpoint(request: Any, full_url: str, headers: Any) -> Response:
    """List (GET), arm (POST) or clear (DELETE) injected faults."""
    if request.method == "POST":
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
            fault = FAULTS.add(parse_fault(body if isinstance(body, dict) else {}))
        except (ValueError, TypeError) as error:
            return _json(400, {"error": str(error)})
        log.info("fault armed: %s", fault)
        return _json(200, fault.to_json())
    if request.method == "DELETE":
        FAULTS.clear()
        log.info("faults cleared")
    return _json(200, {"faults": [f.to_json() for f in FAULTS.armed()]})


def reset_endpoint(request: Any, full_url: str, headers: Any) -> Response:
    """Start over (POST): see `reset`."""
    if request.method != "POST":
        return _json(405, {"error": "POST to reset the sandbox"})
    reset()
    return _json(200, {"reset": True})


def reset() -> None:
    """The sandbox as a new, empty account without a restart: see `forget_all`; the
    CloudWatch Logs, metrics and X-Ray collection then runs again."""
    from hivemind.sandbox import telemetry

    forget_all()
    telemetry.COLLECTOR.start()
    log.info("sandbox reset: a new, empty account")


def forget_all() -> None:
    """Every stand-in (host, database server, load balancer, Instance Connect Endpoint,
    CloudWatch agent) stopped, every resource moto and the sandbox keep forgotten, every
    fault disarmed. moto keeps its resources per process, not per server: a server started
    after this one in the same process would otherwise see what this one left."""
    from moto.moto_api._internal.models import moto_api_backend

    from hivemind.sandbox import connect_endpoint, runtime, xray

    runtime.shutdown()
    connect_endpoint.forget_all()
    xray.forget_all()
    FAULTS.clear()
    moto_api_backend.reset()


_prepared = False


def prepare() -> None:
    """Install the sandbox into moto (idempotent): the CloudFormation engine, the X-Ray
    group and sampling-rule API, EC2's Instance Connect Endpoint API and hosts' consoles,
    CloudWatch's exact dimension matching, and the control endpoint. Each change goes
    through `patching`, which refuses one the installed moto would not honour."""
    global _prepared
    if _prepared:
        return
    from moto.moto_api._internal import urls as moto_api_urls

    from hivemind.sandbox import (
        cloudformation,
        cloudtrail,
        connect_endpoint,
        hosts,
        s3,
        telemetry,
        xray,
    )

    cloudformation.install()
    hosts.install()
    telemetry.install()
    cloudtrail.install()
    connect_endpoint.install_api()
    s3.install()
    s3.install_template_urls()
    xray.install_api()
    moto_api_urls.url_paths[f"{{0}}{CONTROL_PATH}/ping$"] = ping_endpoint
    moto_api_urls.url_paths[f"{{0}}{CONTROL_PATH}/faults$"] = faults_endpoint
    moto_api_urls.url_paths[f"{{0}}{CONTROL_PATH}/reset$"] = reset_endpoint
    _prepared = True


@dataclass
class SandboxServer:
    """A running sandbox server; `url` is its endpoint (http://127.0.0.1:PORT)."""

    host: str
    port: int
    _server: Any

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        from hivemind.sandbox import runtime

        self._server.stop()
        runtime.shutdown()  # the hosts, databases and forwarders of its stacks


class _Serving:
    """moto's server (as moto.server.ThreadedMotoServer serves it: werkzeug, a thread per
    request, moto's request handler), its application behind `credentials` when given."""

    def __init__(self, host: str, port: int, credentials: Credentials | None) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app: Any = DomainDispatcherApplication(create_backend_app)
        if credentials is not None:
            app = guard(app, credentials)
        self._server = make_server(host, port, app, True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()


def start_server(
    port: int | None = None, host: str = LOOPBACK, credentials: Credentials | None = None
) -> SandboxServer:
    """Serve the sandbox on `host:port` (port 0 or None: any free port) from a background
    thread of this process; returns once it accepts connections. With `credentials`,
    only requests signed with them (and control requests carrying their secret) are
    served (see `hivemind.sandbox.credentials`); the hosts' processes get them too."""
    prepare()
    from hivemind.sandbox import runtime

    requests_log = logging.getLogger("werkzeug")
    if requests_log.level == logging.NOTSET:
        requests_log.setLevel(logging.WARNING)  # else a line per request (unless configured)

    if credentials is not None:
        runtime.set_credentials(credentials.access_key_id, credentials.secret_access_key)
    server = _Serving(host, port or 0, credentials)
    from hivemind.sandbox import telemetry

    # CloudWatch Logs, metrics and X-Ray from the stand-ins, from now until the stop.
    telemetry.COLLECTOR.start()
    bound_host, bound_port = server.get_host_and_port()
    return SandboxServer(bound_host, bound_port, server)


# ---------------------------------------------------------------------------
# the daemon


def state_dir(home: Path) -> Path:
    """Where the daemon of a HiveMind home keeps its pid, port and log."""
    return home / "sandbox"


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _remove_if_ours(path: Path, value: str) -> None:
    try:
        if path.read_text(encoding="utf-8").strip() == value:
            path.unlink()
    except FileNotFoundError:
        pass


def _configure_logging(log_file: Path) -> None:
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("hivemind.sandbox").setLevel(logging.INFO)
    # One line per request would drown the log; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox daemon until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m hivemind.sandbox.daemon",
        description="Serve HiveMind's AWS sandbox on a loopback port.",
    )
    parser.add_argument("--home", type=Path, required=True, help="the HiveMind home")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free)")
    args = parser.parse_args(argv)

    directory = state_dir(args.home)
    directory.mkdir(parents=True, exist_ok=True)
    _configure_logging(directory / "sandbox.log")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    from hivemind.sandbox import certificates, connect_endpoint, runtime

    runtime.set_state_dir(directory / "run")
    # Before the pid file: once `control.status` finds the daemon, its CA is there.
    connect_endpoint.use_ca_directory(directory)
    certificates.write_trust_bundle(directory)
    keys = sandbox_credentials.new()
    sandbox_credentials.write(directory, keys)  # before the pid file, as the CA
    server = start_server(args.port, credentials=keys)
    pid, port = str(os.getpid()), str(server.port)
    _write_atomic(directory / "port", port)
    _write_atomic(directory / "pid", pid)  # last: a pid file means the port file is there
    log.info("sandbox serving at %s (pid %s)", server.url, pid)
    try:
        stop.wait()
    finally:
        log.info("sandbox stopping (pid %s)", pid)
        server.stop()
        _remove_if_ours(directory / "pid", pid)
        _remove_if_ours(directory / "port", port)
    return 0
