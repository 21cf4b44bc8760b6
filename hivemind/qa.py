"""QA: checks that a deployment works, from the outside and from an instance.

Each check ends `passed`, `failed` with the reason, or `not_applicable` with why:

* the health path and `/` through the load balancer (status, latency);
* with HTTPS, that plain HTTP is redirected to it;
* the load balancer's listener ports, and the app's port on every instance;
* the database, reached from an instance (it is private to the VPC);
* the TLS certificate's validity, name and expiry, when HTTPS is on.

With a domain (`access.domain`), every check through the load balancer asks for that
name: the connection goes to the load balancer's address, TLS names the domain (SNI) and
verifies the certificate for it, and HTTP's Host header is the domain. An ACM
certificate is issued for the operator's domain, never for the load balancer's own
`*.elb.amazonaws.com` name, so that is the only way HTTPS can be checked before (or
without) the domain's DNS record pointing at the load balancer. Certificates are
verified against the system's trust store (OpenSSL's, so SSL_CERT_FILE applies).
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from hivemind.records import CheckResult
from hivemind.spec import DeploymentSpec

HTTP_TIMEOUT = 10.0
EXPIRY_WARNING_DAYS = 14

# Runs a shell command on an instance: (exit code, output).
RunOnInstance = Callable[[str, str], tuple[int, str]]


@dataclass(frozen=True)
class Target:
    """What QA checks: the URL, the listener ports, the instances and the database.

    `url` is what the checks ask for (scheme, name, port); `host` is where they connect,
    the load balancer's DNS name, which is the URL's own name unless a domain is set."""

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
    name = spec.access.domain or host
    url = f"{'https' if https else 'http'}://{name}" if host else None
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
        headers = dict(target.headers)
        results.append(_http("http health", target, spec.app.health_path, headers, ok_below=400))
        results.append(_http("http /", target, "/", headers, ok_below=500))
        if urlsplit(target.url).scheme == "https":
            results.append(_redirect(target))
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
        results.append(_tls(target.host, spec.access.domain or target.host))
    else:
        results.append(
            CheckResult(
                name="tls",
                status="not_applicable",
                detail="HTTPS is off (no certificate in the spec)",
            )
        )
    return results


class _HTTPConnection(http.client.HTTPConnection):
    """HTTP to `address` for the name in the URL (the Host header); no proxy."""

    def __init__(self, name: str, port: int, address: str) -> None:
        super().__init__(name, port, timeout=HTTP_TIMEOUT)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to `address`, TLS naming and verifying the URL's name (SNI), which is the
    Host header too; no proxy."""

    def __init__(self, name: str, port: int, address: str) -> None:
        super().__init__(name, port, timeout=HTTP_TIMEOUT, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)  # type: ignore[attr-defined]


def _get(target: Target, url: str, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    """GET `path` of `url` (its scheme, name and port), connecting to the target's host;
    the answer's body is read, redirects are not followed."""
    parts = urlsplit(url)
    https = parts.scheme == "https"
    name = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    kind = _HTTPSConnection if https else _HTTPConnection
    connection = kind(name, port, target.host or name)
    try:
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer
    finally:
        connection.close()


def _http(
    name: str, target: Target, path: str, headers: dict[str, str], *, ok_below: int
) -> CheckResult:
    assert target.url is not None
    url = target.url + path
    started = time.monotonic()
    try:
        code = _get(target, target.url, path, headers).status
    except (OSError, http.client.HTTPException, ValueError) as error:
        return CheckResult(
            name=name, status="failed", detail=f"GET {url}: {_reason(error)}",
            seconds=_since(started),
        )  # fmt: skip
    seconds = _since(started)
    # As the load balancer's health check: 2xx and 3xx answer (a redirect is not followed).
    status = "passed" if 200 <= code < ok_below else "failed"
    return CheckResult(
        name=name, status=status, detail=f"GET {url}: HTTP {code} in {seconds * 1000:.0f} ms",
        seconds=seconds,
    )  # fmt: skip


def _redirect(target: Target) -> CheckResult:
    """Plain HTTP on port 80 answers with a permanent redirect to the HTTPS URL."""
    assert target.url is not None
    secure = urlsplit(target.url)
    plain = f"http://{secure.hostname}"
    started = time.monotonic()
    try:
        answer = _get(target, plain, "/", {})
    except (OSError, http.client.HTTPException, ValueError) as error:
        return CheckResult(
            name="http redirect", status="failed", detail=f"GET {plain}/: {_reason(error)}",
            seconds=_since(started),
        )  # fmt: skip
    location = answer.getheader("Location") or ""
    moved = answer.status in (301, 308) and location.startswith(f"https://{secure.hostname}")
    return CheckResult(
        name="http redirect",
        status="passed" if moved else "failed",
        detail=f"GET {plain}/: HTTP {answer.status}"
        + (f" to {location}" if location else " (no Location)")
        + ("" if moved else f"; expected a permanent redirect to https://{secure.hostname}"),
        seconds=_since(started),
    )


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


def _tls(host: str, name: str) -> CheckResult:
    """The certificate `host`:443 presents for `name`: trusted, for that name, and not
    about to expire."""
    started = time.monotonic()
    context = ssl.create_default_context()
    try:
        with (
            socket.create_connection((host, 443), timeout=HTTP_TIMEOUT) as raw,
            context.wrap_socket(raw, server_hostname=name) as secured,
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
        detail=f"valid certificate for {name}, expires {expires:%Y-%m-%d} (in {days} days)",
        seconds=_since(started),
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate not trusted: {error.verify_message}"
    return str(error) or type(error).__name__


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
