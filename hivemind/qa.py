"""QA: checks that a deployment works, from the outside and from an instance.

Each check ends `passed`, `failed` with the reason, or `not_applicable` with why:

* the health path and `/` through the load balancer's URL (status, latency);
* the load balancer's listener ports, and the app's port on every instance;
* the database, reached from an instance (it is private to the VPC);
* the TLS certificate's validity and expiry, when HTTPS is on.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from hivemind.records import CheckResult
from hivemind.spec import DeploymentSpec

HTTP_TIMEOUT = 10.0
EXPIRY_WARNING_DAYS = 14

# Runs a shell command on an instance: (exit code, output).
RunOnInstance = Callable[[str, str], tuple[int, str]]
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Target:
    """What QA checks: the URL, the listener ports, the instances and the database."""

    url: str | None
    host: str | None
    listener_ports: tuple[int, ...]
    instances: tuple[tuple[str, str], ...]  # (instance id, private address)
    database: tuple[str, int] | None
    # Sent with every HTTP check: the standby rule's header checks a blue-green update's
    # new instances through the load balancer before the switch.
    headers: tuple[tuple[str, str], ...] = ()


def target_of(
    spec: DeploymentSpec,
    outputs: dict[str, str],
    instances: list[tuple[str, str]],
    headers: dict[str, str] | None = None,
) -> Target:
    host = outputs.get("LoadBalancerDns")
    https = spec.access.certificate_arn is not None
    url = f"{'https' if https else 'http'}://{host}" if host else None
    database = None
    if outputs.get("DatabaseEndpoint") and outputs.get("DatabasePort"):
        database = (outputs["DatabaseEndpoint"], int(outputs["DatabasePort"]))
    ports = (80, 443) if https else (80,)
    return Target(url, host, ports, tuple(instances), database, tuple((headers or {}).items()))


def verify(spec: DeploymentSpec, target: Target, run_on: RunOnInstance) -> list[CheckResult]:
    """Every check, in the order a person would look."""
    results: list[CheckResult] = []
    if target.url is None:
        why = "the app serves no HTTP port, so there is no load balancer"
        results.append(CheckResult(name="http health", status="not_applicable", detail=why))
    else:
        url, headers = target.url, dict(target.headers)
        results.append(_http("http health", url + spec.app.health_path, headers, ok_below=400))
        results.append(_http("http /", url + "/", headers, ok_below=500))
        for port in target.listener_ports:
            assert target.host is not None
            results.append(_port(f"load balancer port {port}", target.host, port))
    if spec.app.port is not None:
        for instance_id, address in target.instances:
            results.append(
                _from_instance(
                    run_on,
                    instance_id,
                    f"app port {spec.app.port} on {instance_id}",
                    address,
                    spec.app.port,
                )
            )
    if target.database is None:
        results.append(
            CheckResult(
                name="database", status="not_applicable", detail="no database in this deployment"
            )
        )
    elif not target.instances:
        results.append(
            CheckResult(name="database", status="failed", detail="no instance to check it from")
        )
    else:
        instance_id = target.instances[0][0]
        host, port = target.database
        results.append(
            _from_instance(run_on, instance_id, "database", host, port, via=f" from {instance_id}")
        )
    if spec.access.certificate_arn and target.host:
        results.append(_tls(target.host))
    else:
        results.append(
            CheckResult(
                name="tls",
                status="not_applicable",
                detail="HTTPS is off (no certificate in the spec)",
            )
        )
    return results


def _http(name: str, url: str, headers: dict[str, str], *, ok_below: int) -> CheckResult:
    started = time.monotonic()
    request = urllib.request.Request(url, headers=headers)
    try:
        with _NO_PROXY.open(request, timeout=HTTP_TIMEOUT) as answer:
            code = answer.status
    except urllib.error.HTTPError as error:
        code = error.code
    except (OSError, ValueError) as error:
        return CheckResult(
            name=name, status="failed", detail=f"GET {url}: {_reason(error)}",
            seconds=_since(started),
        )  # fmt: skip
    seconds = _since(started)
    status = "passed" if 200 <= code < ok_below else "failed"
    return CheckResult(
        name=name, status=status, detail=f"GET {url}: HTTP {code} in {seconds * 1000:.0f} ms",
        seconds=seconds,
    )  # fmt: skip


def _port(name: str, host: str, port: int) -> CheckResult:
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=HTTP_TIMEOUT):
            pass
    except OSError as error:
        return CheckResult(
            name=name, status="failed", detail=f"{host}:{port}: {_reason(error)}",
            seconds=_since(started),
        )  # fmt: skip
    return CheckResult(
        name=name, status="passed", detail=f"{host}:{port} accepts connections",
        seconds=_since(started),
    )  # fmt: skip


_CONNECT = (
    "python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)' "
)


def _from_instance(
    run_on: RunOnInstance, instance_id: str, name: str, host: str, port: int, via: str = ""
) -> CheckResult:
    started = time.monotonic()
    code, output = run_on(instance_id, f"{_CONNECT} {host} {port}")
    if code == 0:
        return CheckResult(
            name=name, status="passed", detail=f"{host}:{port} accepts connections{via}",
            seconds=_since(started),
        )  # fmt: skip
    last = (output.strip().splitlines() or [f"exit code {code}"])[-1]
    return CheckResult(
        name=name, status="failed", detail=f"{host}:{port}{via}: {last}", seconds=_since(started)
    )


def _tls(host: str) -> CheckResult:
    started = time.monotonic()
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, 443), timeout=HTTP_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=host) as secured,
        ):
            certificate = secured.getpeercert() or {}
    except (OSError, ssl.SSLError) as error:
        return CheckResult(
            name="tls", status="failed", detail=f"{host}:443: {_reason(error)}",
            seconds=_since(started),
        )  # fmt: skip
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(certificate["notAfter"])), tz=UTC)
    days = (expires - datetime.now(UTC)).days
    status = "passed" if days >= EXPIRY_WARNING_DAYS else "failed"
    return CheckResult(
        name="tls",
        status=status,
        detail=f"valid certificate for {host}, expires {expires:%Y-%m-%d} (in {days} days)",
        seconds=_since(started),
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and error.reason is not None:
        return str(error.reason)
    return str(error) or type(error).__name__


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
