"""The data plane of the sandbox's application load balancers: each listener is a real
reverse proxy on its balancer's loopback address, and each target group a listener uses
is health-checked in the background, so `http://<LoadBalancerDns>/` answers as on AWS.

* `LocalBalancer` stands in for one balancer: the loopback address that is its DNS name,
  and one `Forwarder` per listener. `local_balancer(arn)` finds it again.
* A `Forwarder` is a threaded HTTP/1.1 reverse proxy on (address, listener port). It
  reads its listener's rules and default actions from moto's backend on every request,
  so a listener or rule update (the blue-green switch) applies to the next request
  without rebinding. As on AWS, the rules are evaluated in priority order (lowest number
  first) and the first whose conditions all match answers; with none, the default
  action. Every condition type is evaluated with AWS's matching (`rule_matches`:
  http-header, path-pattern, host-header, http-request-method, query-string, source-ip;
  by Values, not RegexValues); a rule with a condition the sandbox cannot evaluate gets
  a 500 naming it (and a log line), never skipped. Actions: `forward` (one target group,
  or weighted across a ForwardConfig), `redirect` (the Location AWS builds, port
  included) and `fixed-response`. Requests go round-robin to the group's healthy
  targets; with none healthy, to every registered target that is not draining or
  unusable (AWS fails open the same way); with none, 503. A target that refuses the
  connection gives 502, one that does not answer within the balancer's idle timeout
  (`idle_timeout.timeout_seconds`, 60 s) 504. X-Forwarded-For (as
  `routing.http.xff_header_processing.mode` says), -Proto and -Port and an
  X-Amzn-Trace-Id are added; keep-alive, Content-Length and chunked bodies work both
  ways and responses are streamed. Connections to targets are kept alive and reused
  for GET, HEAD and OPTIONS requests without a body (the ones safe to send again when
  a target closed an idle connection); other requests get a connection of their own.
* `HEALTH` (a `TargetHealthMonitor`) checks every registered target of every target
  group some listener uses, with the group's current settings in moto (path, port,
  interval, timeout, thresholds, matcher), and answers DescribeTargetHealth with AWS's
  states and reasons. Timing: a target's first check runs as soon as it is registered
  (or its group is attached to a listener), later ones every HealthCheckIntervalSeconds,
  and a state changes after HealthyThresholdCount (UnhealthyThresholdCount) consecutive
  passes (failures): with threshold 2 and interval 15 s a target is healthy about 15 s
  after registration (on AWS registration itself adds tens of seconds). A deregistered
  target gets no new request; requests already on their way finish (they are not cut
  when the delay ends). Its deregistration completes as soon as none is in flight: the
  balancer's idle kept-alive connections to it close at once, the others as their
  requests end, so the target can stop without a failed request. DescribeTargetHealth
  shows it `draining` for the group's whole `deregistration_delay.timeout_seconds` even
  so, as AWS does ("even though target deregistration is complete, the status of the
  target is displayed as draining until the deregistration delay timeout expires", ALB
  guide, Deregistration delay); then it is no longer listed.
* `traffic(arn)` reads what a balancer or target group has served so far (the counters
  CloudWatch's ApplicationELB metrics are made of), `take_response_time_extremes(arn)`
  the fastest and slowest target response since it was last asked, and
  `network_bytes(address)` the TCP payload bytes the balancers (requests and HTTP health
  checks) exchanged with one target, as the kernel counts them (an instance's NetworkIn
  and NetworkOut; see `hivemind.sandbox.telemetry`).

moto's objects are read from the proxy's and the checks' threads without moto's request
lock: Python's dictionaries tolerate that, and every collection is copied before use.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import http.client
import ipaddress
import logging
import random
import re
import secrets
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from hivemind.sandbox import runtime, usage
from hivemind.sandbox.faults import FAULTS, InjectedFault

log = logging.getLogger(__name__)

# moto's ELBv2 backend and its models; see provisioning.MotoBackend for why they are Any.
MotoBackend = Any
MotoTargetGroup = Any

HEALTH_FAULT_TYPE = "Sandbox::HealthCheck"
HEALTH_CHECK_USER_AGENT = "ELB-HealthChecker/2.0"
SERVER = "awselb/2.0"
CONNECT_TIMEOUT = 10.0  # seconds; ALB answers 504 when a target does not accept in time
DEFAULT_IDLE_TIMEOUT = 60
BODY_CHUNK = 64 * 1024

# Target states, reasons and descriptions, as DescribeTargetHealth reports them on AWS.
INITIAL, HEALTHY, UNHEALTHY = "initial", "healthy", "unhealthy"
UNUSED, DRAINING, UNAVAILABLE = "unused", "draining", "unavailable"
REGISTRATION_IN_PROGRESS = ("Elb.RegistrationInProgress", "Target registration is in progress")
INITIAL_HEALTH_CHECKING = ("Elb.InitialHealthChecking", "Initial health checks in progress")
FAILED_HEALTH_CHECKS = ("Target.FailedHealthChecks", "Health checks failed")
TIMED_OUT = ("Target.Timeout", "Request timed out")
RESPONSE_CODE_MISMATCH = "Target.ResponseCodeMismatch"
NOT_IN_USE = (
    "Target.NotInUse",
    "Target group is not configured to receive traffic from the load balancer",
)
INVALID_STATE = "Target.InvalidState"
DEREGISTRATION_IN_PROGRESS = (
    "Target.DeregistrationInProgress",
    "Target deregistration is in progress",
)
HEALTH_CHECK_DISABLED = ("Target.HealthCheckDisabled", "Health checks are disabled")
UNSUPPORTED_TARGET = ("Elb.InternalError", "The sandbox routes to instance and ip targets only")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
_VALID_HEADER_NAME = re.compile(r"^[-A-Za-z0-9]+$")


# ---------------------------------------------------------------------------
# health checks


@dataclass(frozen=True)
class HealthCheck:
    """A target group's health check as moto holds it now (ModifyTargetGroup may change
    it between two checks)."""

    enabled: bool
    protocol: str
    path: str
    port: str  # "traffic-port" or a port number
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int
    codes: str  # the matcher's HttpCode: "200", "200-399", "200,302"

    @classmethod
    def of(cls, group: MotoTargetGroup) -> HealthCheck:
        matcher = getattr(group, "matcher", None) or {}
        enabled = group.health_check_enabled
        return cls(
            enabled=enabled if isinstance(enabled, bool) else str(enabled).lower() != "false",
            protocol=str(group.health_check_protocol or group.protocol or "HTTP").upper(),
            path=str(group.health_check_path or "/"),
            port=str(group.health_check_port or "traffic-port"),
            interval=float(group.health_check_interval_seconds or 30),
            timeout=float(group.health_check_timeout_seconds or 5),
            healthy_threshold=int(group.healthy_threshold_count or 5),
            unhealthy_threshold=int(group.unhealthy_threshold_count or 2),
            codes=str(matcher.get("HttpCode") or "200"),
        )

    def port_for(self, traffic_port: int) -> int:
        return traffic_port if self.port == "traffic-port" else int(self.port)

    def accepts(self, status: int) -> bool:
        """Whether `status` is a success for this group's matcher."""
        return code_matches(self.codes, status)


def code_matches(codes: str, status: int) -> bool:
    """Whether `status` is among `codes`, a matcher's HttpCode ("200", "200-399", "200,302")."""
    for part in codes.split(","):
        low, _, high = part.strip().partition("-")
        if low and int(low) <= status <= int(high or low):
            return True
    return False


@dataclass(frozen=True)
class TargetStatus:
    """One target's row of DescribeTargetHealth."""

    target_id: str
    port: int
    health_check_port: int
    state: str
    reason: str | None
    description: str | None


@dataclass(eq=False)
class _Target:
    """One target of one target group, as the health checks see it."""

    target_id: str
    port: int
    next_check: float
    address: str | None = None
    health_check_port: int = 0
    state: str = INITIAL
    reason: str | None = REGISTRATION_IN_PROGRESS[0]
    description: str | None = REGISTRATION_IN_PROGRESS[1]
    passes: int = 0
    failures: int = 0
    checking: bool = False
    draining_until: float = 0.0
    generation: int = 0  # bumped whenever a check under way must no longer count
    in_flight: int = 0  # requests the balancer sent it that are not over yet

    @property
    def parked(self) -> bool:
        """Not being checked (not in use, unusable, health checks off)."""
        return self.state in (UNUSED, UNAVAILABLE)

    def restart(self, now: float) -> None:
        """Health checking starts over, as for a target just registered."""
        self._set(INITIAL, REGISTRATION_IN_PROGRESS)
        self.next_check = now
        self.generation += 1

    def park(self, state: str, why: tuple[str, str]) -> None:
        if (self.state, self.reason, self.description) != (state, *why):
            self._set(state, why)
            self.generation += 1

    def drain(self, until: float) -> None:
        self._set(DRAINING, DEREGISTRATION_IN_PROGRESS)
        self.draining_until = until
        self.generation += 1

    def record(self, check: HealthCheck, why_failed: tuple[str, str] | None) -> None:
        """Count one health check's result (None: it passed) and change state once a
        threshold is reached."""
        if why_failed is None:
            self.passes, self.failures = self.passes + 1, 0
            if self.state != HEALTHY and self.passes >= check.healthy_threshold:
                self.state, self.reason, self.description = HEALTHY, None, None
            elif self.state == INITIAL:
                self.reason, self.description = INITIAL_HEALTH_CHECKING
            return
        self.passes, self.failures = 0, self.failures + 1
        if self.state == UNHEALTHY or self.failures >= check.unhealthy_threshold:
            self._set(UNHEALTHY, why_failed)
        elif self.state == INITIAL:
            self.reason, self.description = INITIAL_HEALTH_CHECKING

    def status(self) -> TargetStatus:
        return TargetStatus(
            self.target_id,
            self.port,
            self.health_check_port or self.port,
            self.state,
            self.reason,
            self.description,
        )

    def _set(self, state: str, why: tuple[str, str]) -> None:
        self.state, (self.reason, self.description) = state, why
        self.passes = self.failures = 0
        self.checking = False


@dataclass(eq=False)
class _Group:
    targets: dict[str, _Target] = field(default_factory=dict)
    turn: int = 0  # round-robin position


@dataclass(frozen=True)
class _Check:
    group_arn: str
    target: _Target
    generation: int
    address: str | None
    port: int
    check: HealthCheck
    started: float


@dataclass(frozen=True)
class Route:
    """Where one request goes: a target of a target group (and the health monitor's
    record of it, which counts the request as in flight until `finish`)."""

    group_arn: str
    target_id: str
    address: str
    port: int
    target: _Target | None = field(default=None, compare=False, repr=False)


class TargetHealthMonitor:
    """The health of every target of every target group in this process.

    Targets are checked from a small thread pool; a scheduler thread (started on first
    use, stopped with the daemon) notices registrations, deregistrations, listeners
    attached or switched away and instances stopped, within `tick` seconds or at once
    when `sync` is called (the patched RegisterTargets and DeregisterTargets do).
    """

    def __init__(self, tick: float = 0.25, workers: int = 16) -> None:
        self._tick = tick
        self._workers = workers
        self._lock = threading.Lock()
        self._groups: dict[str, _Group] = {}
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._forget: Callable[[], None] | None = None

    def ensure_running(self) -> None:
        """Start the scheduler if it is not running (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = threading.Event()
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="alb-health")
            self._thread = threading.Thread(
                target=self._run,
                args=(self._stopping, self._pool),
                name="alb-health-scheduler",
                daemon=True,
            )
            self._thread.start()
        self._forget = runtime.on_shutdown(self.stop)

    def stop(self) -> None:
        """Stop checking and forget every target's health (the daemon is stopping)."""
        with self._lock:
            thread, pool, forget = self._thread, self._pool, self._forget
            self._thread = self._pool = self._forget = None
            self._groups.clear()
            self._stopping.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if forget is not None:
            forget()

    def sync(self, backend: MotoBackend, group: MotoTargetGroup) -> None:
        """Take in the group's registrations and deregistrations now, and check what is
        new without waiting for the scheduler's next round."""
        self.ensure_running()
        used = group.arn in groups_in_use(backend)
        with self._lock:
            self._sync_locked(backend, group, used, time.monotonic())
        self._wake.set()

    def describe(self, backend: MotoBackend, group: MotoTargetGroup) -> list[TargetStatus]:
        """Every registered or draining target of the group with its health, in
        registration order (a deregistered target is draining for the group's whole
        deregistration delay, as AWS shows it, even once no request is in flight)."""
        self.ensure_running()
        used = group.arn in groups_in_use(backend)
        with self._lock:
            entry = self._sync_locked(backend, group, used, time.monotonic())
            return [target.status() for target in entry.targets.values()]

    def choose(self, backend: MotoBackend, group: MotoTargetGroup) -> Route | None:
        """The next target for a request to `group` (round robin over the healthy ones;
        with none healthy, over every one that is initial or unhealthy); None when the
        group has no target to send it to. The request counts as in flight until
        `finish(route)`."""
        self.ensure_running()
        with self._lock:
            entry = self._sync_locked(backend, group, True, time.monotonic())
            candidates = [t for t in entry.targets.values() if t.address and _serves(t)]
            if not candidates:
                candidates = [
                    t
                    for t in entry.targets.values()
                    if t.address and t.state in (INITIAL, UNHEALTHY)
                ]
            if not candidates:
                return None
            target = candidates[entry.turn % len(candidates)]
            entry.turn += 1
            target.in_flight += 1
            assert target.address is not None
            return Route(group.arn, target.target_id, target.address, target.port, target)

    def finish(self, route: Route) -> None:
        """A request `choose` routed is over (answered, failed or abandoned by the
        client). For a deregistered target, the balancer's idle connections to it
        close; with its last request in flight over, its deregistration is complete."""
        target = route.target
        if target is None:
            return
        with self._lock:
            target.in_flight -= 1
            draining, idle = target.state == DRAINING, target.in_flight == 0
        if draining:
            _close_idle_connections(route.address, route.port)
            if idle:
                log.info(
                    "deregistration of %s from %s complete: no request in flight",
                    route.target_id,
                    route.group_arn,
                )

    # -- the scheduler

    def _run(self, stopping: threading.Event, pool: ThreadPoolExecutor) -> None:
        while not stopping.is_set():
            try:
                for check in self._due(time.monotonic()):
                    pool.submit(self._perform, check)
            except RuntimeError:  # the pool shut down under us: the daemon is stopping
                return
            except Exception:
                log.exception("scheduling load balancer health checks failed")
            self._wake.wait(self._tick)
            self._wake.clear()

    def _due(self, now: float) -> list[_Check]:
        due: list[_Check] = []
        seen: set[str] = set()
        for backend in _elbv2_backends():
            used = groups_in_use(backend)
            for group in list(backend.target_groups.values()):
                seen.add(group.arn)
                try:
                    due.extend(self._due_in(backend, group, group.arn in used, now))
                except Exception:  # one odd group must not stop the checks of the others
                    log.exception("health checks of target group %s failed", group.arn)
        with self._lock:
            for arn in [arn for arn in self._groups if arn not in seen]:
                del self._groups[arn]  # the target group was deleted
        return due

    def _due_in(
        self, backend: MotoBackend, group: MotoTargetGroup, in_use: bool, now: float
    ) -> list[_Check]:
        check = HealthCheck.of(group)
        due = []
        with self._lock:
            entry = self._sync_locked(backend, group, in_use, now)
            for target in entry.targets.values():
                if target.parked or target.state == DRAINING or target.checking:
                    continue
                if target.next_check <= now:
                    target.checking = True
                    port = check.port_for(target.port)
                    due.append(
                        _Check(
                            group.arn, target, target.generation, target.address, port, check, now
                        )
                    )
        return due

    def _perform(self, check: _Check) -> None:
        try:
            why_failed = probe(
                check.group_arn, check.target.target_id, check.address, check.port, check.check
            )
        except Exception:
            log.exception("health check of %s failed to run", check.target.target_id)
            why_failed = FAILED_HEALTH_CHECKS
        with self._lock:
            target = check.target
            entry = self._groups.get(check.group_arn)
            if (
                entry is None
                or entry.targets.get(target.target_id) is not target
                or target.generation != check.generation
            ):
                return  # deregistered, parked or restarted meanwhile: this result is stale
            target.checking = False
            target.next_check = check.started + check.check.interval
            target.record(check.check, why_failed)

    def _sync_locked(
        self, backend: MotoBackend, group: MotoTargetGroup, in_use: bool, now: float
    ) -> _Group:
        entry = self._groups.setdefault(group.arn, _Group())
        check = HealthCheck.of(group)
        registered: set[str] = set()
        for item in list(group.targets.values()):
            target_id = str(item["Id"])
            registered.add(target_id)
            port = int(item.get("Port") or group.port)
            target = entry.targets.get(target_id)
            if target is None or target.state == DRAINING:
                entry.targets.pop(target_id, None)  # registered again: last in order, anew
                target = entry.targets[target_id] = _Target(target_id, port, next_check=now)
            target.port = port
            target.health_check_port = check.port_for(port)
            target.address, unusable = _address_of(backend, group, target_id)
            if not in_use:
                target.park(UNUSED, NOT_IN_USE)
            elif unusable is not None:
                target.park(*unusable)
            elif not check.enabled:
                target.park(UNAVAILABLE, HEALTH_CHECK_DISABLED)
            elif target.parked:
                target.restart(now)
        delay = _deregistration_delay(group)
        for target_id, target in list(entry.targets.items()):
            if target_id in registered:
                continue
            if target.state != DRAINING:
                target.drain(now + delay)
                _deregistering(group.arn, target)
            if target.draining_until <= now:
                del entry.targets[target_id]
        return entry


def _deregistering(group_arn: str, target: _Target) -> None:
    """A target just deregistered: the balancer's idle kept-alive connections to it close
    (requests in flight keep theirs until they are over, see `finish`)."""
    if target.address is not None:
        _close_idle_connections(target.address, target.port)
    if target.in_flight == 0:
        log.info(
            "deregistration of %s from %s complete: no request in flight",
            target.target_id,
            group_arn,
        )


def _serves(target: _Target) -> bool:
    """Whether requests go to the target while some target of its group is healthy."""
    return target.state == HEALTHY or target.reason == HEALTH_CHECK_DISABLED[0]


def probe(
    group_arn: str, target_id: str, address: str | None, port: int, check: HealthCheck
) -> tuple[str, str] | None:
    """Run one health check against a target; None when it passes, else the (reason,
    description) AWS would report. An armed `health` fault fails it with its message."""
    try:
        FAULTS.trip(HEALTH_FAULT_TYPE, "health", subject=f"{group_arn} {target_id}")
    except InjectedFault as fault:
        return FAILED_HEALTH_CHECKS[0], fault.message
    if not address:
        return FAILED_HEALTH_CHECKS
    if check.protocol == "TCP":
        try:
            socket.create_connection((address, port), timeout=check.timeout).close()
        except TimeoutError:
            return TIMED_OUT
        except OSError:
            return FAILED_HEALTH_CHECKS
        return None
    connection: http.client.HTTPConnection
    if check.protocol == "HTTPS":
        # ALB does not verify its targets' certificates either.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(
            address, port, timeout=check.timeout, context=context
        )
    else:
        connection = _TargetConnection(address, port, timeout=check.timeout)
    try:
        connection.request(
            "GET",
            check.path,
            headers={
                "Host": f"{address}:{port}",
                "User-Agent": HEALTH_CHECK_USER_AGENT,
                "Accept": "*/*",
                "Connection": "close",
            },
        )
        status = connection.getresponse().status
    except TimeoutError:
        return TIMED_OUT
    except (OSError, http.client.HTTPException):
        return FAILED_HEALTH_CHECKS
    finally:
        connection.close()
    if check.accepts(status):
        return None
    return RESPONSE_CODE_MISMATCH, f"Health checks failed with these codes: [{status}]"


def _address_of(
    backend: MotoBackend, group: MotoTargetGroup, target_id: str
) -> tuple[str | None, tuple[str, tuple[str, str]] | None]:
    """Where a target listens, and the (state, why) that keeps it out of use, if any."""
    if group.target_type == "ip":
        return target_id, None
    if group.target_type != "instance":
        return None, (UNAVAILABLE, UNSUPPORTED_TARGET)
    instance = backend.ec2_backend.get_instance_by_id(target_id)
    state = "terminated" if instance is None else str(instance.state)
    if state != "running":
        return None, (UNUSED, (INVALID_STATE, f"Target is in the {state} state"))
    return instance.private_ip, None


def _deregistration_delay(group: MotoTargetGroup) -> float:
    return float(group.attributes.get("deregistration_delay.timeout_seconds", 300))


def group_arns(action: Mapping[str, Any]) -> list[str]:
    """The target groups a listener action forwards to."""
    if action.get("Type") != "forward":
        return []
    forward = action.get("ForwardConfig") or {}
    arns = [str(g["TargetGroupArn"]) for g in forward.get("TargetGroups") or []]
    return arns or ([str(action["TargetGroupArn"])] if action.get("TargetGroupArn") else [])


def groups_in_use(backend: MotoBackend) -> set[str]:
    """The target groups some listener (default action or rule) of `backend` forwards to."""
    used: set[str] = set()
    for balancer in list(backend.load_balancers.values()):
        for listener in list(balancer.listeners.values()):
            for rule in list(listener.rules.values()):
                for action in list(rule.actions):
                    used.update(group_arns(action.data))
    return used


def _elbv2_backends() -> Iterator[MotoBackend]:
    from moto.elbv2.models import elbv2_backends

    for regions in list(elbv2_backends.values()):
        yield from list(regions.values())


HEALTH = TargetHealthMonitor()


# ---------------------------------------------------------------------------
# traffic counters


@dataclass(frozen=True)
class Traffic:
    """What a balancer or a target group has served since the daemon started; counters
    only grow (CloudWatch's per-period sums are differences of two readings).

    `elb_codes` counts responses the balancer made itself (no target, target failed,
    redirects, fixed responses; 460 when the client left first); `target_codes` those
    from targets, `target_seconds` their total response time (first byte)."""

    requests: int = 0
    elb_codes: Mapping[int, int] = field(default_factory=dict)
    target_codes: Mapping[int, int] = field(default_factory=dict)
    target_connection_errors: int = 0
    target_seconds: float = 0.0


@dataclass(frozen=True)
class NetworkBytes:
    """TCP payload bytes exchanged with one target address since the daemon started (the
    balancer's requests and health checks): `to_target` it received, `from_target` it
    sent. Counters only grow."""

    to_target: int = 0
    from_target: int = 0


class _TrafficBook:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, Traffic] = {}
        # The fastest and slowest target response per ARN since `take_extremes` last ran.
        self._extremes: dict[str, tuple[float, float]] = {}
        self._network: dict[str, NetworkBytes] = {}

    def count(
        self,
        arns: Iterable[str],
        *,
        elb_code: int | None = None,
        target_code: int | None = None,
        seconds: float = 0.0,
        connection_error: bool = False,
    ) -> None:
        with self._lock:
            for arn in arns:
                now = self._counts.get(arn, Traffic())
                elb_codes, target_codes = dict(now.elb_codes), dict(now.target_codes)
                if elb_code is not None:
                    elb_codes[elb_code] = elb_codes.get(elb_code, 0) + 1
                if target_code is not None:
                    target_codes[target_code] = target_codes.get(target_code, 0) + 1
                self._counts[arn] = Traffic(
                    now.requests + 1,
                    elb_codes,
                    target_codes,
                    now.target_connection_errors + connection_error,
                    now.target_seconds + seconds,
                )
                if target_code is not None:
                    fastest, slowest = self._extremes.get(arn, (seconds, seconds))
                    self._extremes[arn] = (min(fastest, seconds), max(slowest, seconds))

    def read(self, arn: str) -> Traffic:
        with self._lock:
            return self._counts.get(arn, Traffic())

    def take_extremes(self, arn: str) -> tuple[float, float] | None:
        with self._lock:
            return self._extremes.pop(arn, None)

    def count_network(self, address: str, to_target: int, from_target: int) -> None:
        if to_target <= 0 and from_target <= 0:
            return
        with self._lock:
            now = self._network.get(address, NetworkBytes())
            self._network[address] = NetworkBytes(
                now.to_target + max(0, to_target), now.from_target + max(0, from_target)
            )

    def network(self, address: str) -> NetworkBytes:
        with self._lock:
            return self._network.get(address, NetworkBytes())


_TRAFFIC = _TrafficBook()


def traffic(arn: str) -> Traffic:
    """What the balancer or target group `arn` has served so far (zeros if nothing)."""
    return _TRAFFIC.read(arn)


def take_response_time_extremes(arn: str) -> tuple[float, float] | None:
    """The fastest and slowest target response (seconds) of the balancer or target group
    `arn` since the previous call, or None without any; for the one reader of these, the
    sandbox's CloudWatch metrics (a minimum and maximum per period cannot be told from
    counters)."""
    return _TRAFFIC.take_extremes(arn)


def network_bytes(address: str) -> NetworkBytes:
    """What the balancers exchanged with the target at `address` so far (zeros if nothing)."""
    return _TRAFFIC.network(address)


class _TargetConnection(http.client.HTTPConnection):
    """A connection to a target whose TCP payload bytes count towards the target's
    `network_bytes` (read from the kernel, TCP_INFO): after each exchange (`account`) and
    when it closes."""

    _counted = (0, 0)

    def connect(self) -> None:
        super().connect()
        if self.sock is not None:
            self._counted = usage.tcp_bytes(self.sock)  # from here on: the SYN is not data

    def account(self) -> None:
        if self.sock is None:
            return
        sent, received = usage.tcp_bytes(self.sock)
        _TRAFFIC.count_network(self.host, sent - self._counted[0], received - self._counted[1])
        self._counted = (sent, received)

    def close(self) -> None:
        self.account()
        super().close()


# ---------------------------------------------------------------------------
# listener rules

# The condition types of ALB listener rules, all of which the sandbox evaluates.
RULE_CONDITIONS = (
    "http-header",
    "path-pattern",
    "host-header",
    "http-request-method",
    "query-string",
    "source-ip",
)
RULES_EVALUATED = (
    f"the sandbox's load balancers evaluate the conditions {', '.join(RULE_CONDITIONS)} "
    "by their Values (wildcards * and ?), not by RegexValues"
)


class UnsupportedCondition(Exception):
    """A listener rule condition the sandbox cannot evaluate; the message names it."""


@dataclass(frozen=True)
class RequestFacts:
    """What listener rule conditions look at in one request."""

    method: str
    path: str  # without the query string
    query: str
    host: str | None  # the Host header, without the protocol's default port
    headers: tuple[tuple[str, str], ...]
    source_ip: str  # the address the connection comes from (not X-Forwarded-For)

    @classmethod
    def of(cls, request: _Handler, protocol: str) -> RequestFacts:
        path, _, query = request.path.partition("?")
        host = request.headers.get("Host")
        if host is not None:
            host = host.strip().removesuffix(":443" if protocol == "HTTPS" else ":80")
        return cls(
            request.command,
            path,
            query,
            host,
            tuple((str(n), str(v)) for n, v in request.headers.items()),
            str(request.client_address[0]),
        )

    def header_values(self, name: str) -> list[str]:
        """Every value of a header, in the order the request has them."""
        return [value for key, value in self.headers if key.lower() == name.lower()]


def rules_by_priority(listener: Any) -> list[Any]:
    """A moto listener's rules in the order ALB evaluates them (lowest priority number
    first), without its default rule."""
    rules = [rule for rule in list(listener.rules.values()) if not rule.is_default]
    return sorted(rules, key=lambda rule: int(rule.priority))


def rule_matches(conditions: Iterable[Mapping[str, Any]], request: RequestFacts) -> bool:
    """Whether the request meets every condition of a rule, with ALB's semantics:

    * `http-header`: the header's name case-insensitively, any of its values (when it
      appears more than once) against any pattern, case-insensitively;
    * `host-header`: the Host header case-insensitively; `path-pattern`: the path
      (without the query string) case-sensitively; both in the `*Config` form or the
      legacy `Values` form;
    * `http-request-method`: the method exactly;
    * `query-string`: any of the key/value pairs (a pair without a key: any value),
      case-insensitively, on the decoded query string; `\\` makes a wildcard literal;
    * `source-ip`: the client's address in any of the CIDR blocks.

    Patterns match whole strings; `*` matches any run of characters, `?` exactly one.
    `UnsupportedCondition` for a condition the sandbox cannot evaluate (an unknown
    type, RegexValues, a condition without its configuration), whether or not the
    others match."""
    matchers = [_condition(condition) for condition in conditions]
    return all(matches(request) for matches in matchers)


def check_condition(condition: Mapping[str, Any]) -> None:
    """`UnsupportedCondition` if the sandbox cannot evaluate `condition`."""
    _condition(condition)


def _condition(condition: Mapping[str, Any]) -> Callable[[RequestFacts], bool]:
    field_ = str(condition.get("Field") or "")
    if field_ == "http-header":
        config = _config(condition, "HttpHeaderConfig")
        name = str(config.get("HttpHeaderName") or "")
        if not name:
            raise UnsupportedCondition("condition http-header without an HttpHeaderName")
        values = _patterns(field_, config, ignore_case=True)
        return lambda r: any(p.fullmatch(v) for v in r.header_values(name) for p in values)
    if field_ == "host-header":
        hosts = _patterns(field_, _config(condition, "HostHeaderConfig"), ignore_case=True)
        return lambda r: r.host is not None and any(p.fullmatch(r.host) for p in hosts)
    if field_ == "path-pattern":
        paths = _patterns(field_, _config(condition, "PathPatternConfig"), ignore_case=False)
        return lambda r: any(p.fullmatch(r.path) for p in paths)
    if field_ == "http-request-method":
        methods = set(_values(field_, _config(condition, "HttpRequestMethodConfig")))
        return lambda r: r.method in methods
    if field_ == "query-string":
        pairs = [
            (
                None if pair.get("Key") is None else _wildcard(str(pair["Key"]), True, True),
                _wildcard(str(pair.get("Value") or ""), True, True),
            )
            for pair in _values(field_, _config(condition, "QueryStringConfig"))
        ]
        return lambda r: any(
            (key is None or key.fullmatch(k)) and value.fullmatch(v)
            for k, v in parse_qsl(r.query, keep_blank_values=True)
            for key, value in pairs
        )
    if field_ == "source-ip":
        try:
            networks = [
                ipaddress.ip_network(str(cidr), strict=False)
                for cidr in _values(field_, _config(condition, "SourceIpConfig"))
            ]
        except ValueError as error:
            raise UnsupportedCondition(f"condition source-ip: {error}") from None
        return lambda r: any(ipaddress.ip_address(r.source_ip) in n for n in networks)
    # Never the condition's values in the message: a rule's header value may be a secret.
    raise UnsupportedCondition(
        f"condition type {field_!r}" if field_ else "a condition without a Field"
    )


def _config(condition: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A condition's configuration; host-header and path-pattern also come in the legacy
    form, with their Values on the condition itself."""
    config = condition.get(key)
    if isinstance(config, Mapping):
        return config
    if key in ("HostHeaderConfig", "PathPatternConfig") and condition.get("Values"):
        return {"Values": condition["Values"]}
    raise UnsupportedCondition(f"condition {condition.get('Field')} without a {key}")


def _values(field_: str, config: Mapping[str, Any]) -> list[Any]:
    if config.get("RegexValues"):
        raise UnsupportedCondition(f"condition {field_} with RegexValues")
    values = config.get("Values")
    if not values:
        raise UnsupportedCondition(f"condition {field_} without Values")
    return list(values)


def _patterns(
    field_: str, config: Mapping[str, Any], *, ignore_case: bool
) -> list[re.Pattern[str]]:
    return [_wildcard(str(value), ignore_case, False) for value in _values(field_, config)]


@functools.lru_cache(maxsize=1024)
def _wildcard(pattern: str, ignore_case: bool, escapes: bool) -> re.Pattern[str]:
    """A rule's match pattern as a regular expression: `*` any run of characters, `?`
    exactly one, and with `escapes` (query strings) a backslash makes the next
    character literal."""
    parts: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\" and escapes:
            escaped = True
        elif char in "*?":
            parts.append(".*" if char == "*" else ".")
        else:
            parts.append(re.escape(char))
    if escaped:
        parts.append(re.escape("\\"))
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


# ---------------------------------------------------------------------------
# the reverse proxy


class ListenerUnavailable(Exception):
    """A listener's port cannot be served; the message says why and what to do."""


class _ClientGone(Exception):
    """The client closed its connection (or sent a body that cannot be read)."""


class _TargetFailed(Exception):
    """No response from the target: the balancer answers `status` itself."""

    def __init__(self, status: int, *, connection_error: bool = False) -> None:
        super().__init__(status)
        self.status = status
        self.connection_error = connection_error


# Methods a proxy may send a second time when a kept-alive connection proves closed.
_REPEATABLE = frozenset({"GET", "HEAD", "OPTIONS"})


class _ConnectionPool:
    """Idle kept-alive connections to targets (at most `per_target` each, for at most
    `idle_seconds`), as ALB keeps connections to its targets open."""

    def __init__(self, idle_seconds: float = 4.0, per_target: int = 8) -> None:
        self._idle_seconds = idle_seconds
        self._per_target = per_target
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[tuple[float, _TargetConnection]]] = {}

    def take(self, route: Route) -> _TargetConnection | None:
        expired: list[_TargetConnection] = []
        found = None
        with self._lock:
            idle = self._idle.get((route.address, route.port), [])
            while idle and found is None:
                since, connection = idle.pop()
                if time.monotonic() - since < self._idle_seconds:
                    found = connection
                else:
                    expired.append(connection)
        for connection in expired:
            connection.close()
        return found

    def give(self, route: Route, connection: _TargetConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault((route.address, route.port), [])
            if len(idle) < self._per_target:
                idle.append((time.monotonic(), connection))
                return
        connection.close()

    def discard(self, address: str, port: int) -> None:
        """Close the idle connections to one target."""
        with self._lock:
            idle = self._idle.pop((address, port), [])
        for _, connection in idle:
            connection.close()

    def close(self) -> None:
        with self._lock:
            idle = [c for connections in self._idle.values() for _, c in connections]
            self._idle.clear()
        for connection in idle:
            connection.close()


def _close_idle_connections(address: str, port: int) -> None:
    """Close every listener's idle kept-alive connections to the target at (address,
    port), so that a deregistered target has none left once its last request is over."""
    for balancer in local_balancers():
        for forwarder in balancer.forwarders():
            forwarder.close_idle_connections(address, port)


class _Handler(BaseHTTPRequestHandler):
    """One client connection to a listener; each request on it goes to `Forwarder.serve`."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave in separate writes
    server: _ListenerServer

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.forwarder.idle_timeout())
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
            if len(self.raw_requestline) > 65536:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414)
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            if not self.parse_request():
                return
            self.server.forwarder.serve(self)
            self.wfile.flush()
        except (TimeoutError, ConnectionError, _ClientGone):
            self.close_connection = True

    def version_string(self) -> str:
        return SERVER

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.server.forwarder.name, *args)


class _ListenerServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], forwarder: Forwarder, tls: ssl.SSLContext | None
    ) -> None:
        self.forwarder = forwarder
        self._tls = tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own server_bind asks DNS for the address's name, which can hang
        # for seconds on a machine offline.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self._tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(CONNECT_TIMEOUT)
        try:
            secure = self._tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            secure.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("%s: serving %s failed", self.forwarder.name, client_address)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._open_lock:
            if open_:
                self._open.add(connection)
            else:
                self._open.discard(connection)

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class Forwarder:
    """One listener served for real: a reverse proxy on (address, port) that sends each
    request where the listener's default actions say, reading them on every request.

    Binds when constructed; `ListenerUnavailable` says why it could not."""

    def __init__(
        self,
        backend: MotoBackend,
        balancer_arn: str,
        listener_arn: str,
        address: str,
        port: int,
        protocol: str = "HTTP",
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.backend = backend
        self.balancer_arn = balancer_arn
        self.listener_arn = listener_arn
        self.address = address
        self.port = port
        self.protocol = protocol.upper()
        self.name = f"{protocol.lower()}://{address}:{port}"
        self._pool = _ConnectionPool()
        self._unsupported_lock = threading.Lock()
        self._unsupported_seen: set[str] = set()
        try:
            self._server = _ListenerServer((address, port), self, tls)
        except PermissionError as error:
            raise ListenerUnavailable(_permission_advice(address, port)) from error
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise ListenerUnavailable(
                    f"The sandbox cannot listen on {address}:{port}: the address is already in use"
                ) from error
            raise ListenerUnavailable(
                f"The sandbox cannot listen on {address}:{port}: {error.strerror or error}"
            ) from error
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"alb {address}:{port}",
            daemon=True,
        )
        self._thread.start()
        HEALTH.ensure_running()
        log.info("load balancer listener serving at %s", self.name)

    def stop(self) -> None:
        """Close the port and every connection on it (requests under way are cut)."""
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._pool.close()
        self._thread.join(timeout=5)
        log.info("load balancer listener at %s stopped", self.name)

    def close_idle_connections(self, address: str, port: int) -> None:
        """Close this listener's idle kept-alive connections to one target."""
        self._pool.discard(address, port)

    # -- what the listener says now

    def _balancer(self) -> Any:
        return self.backend.load_balancers.get(self.balancer_arn)

    def idle_timeout(self) -> float:
        """The balancer's idle timeout: how long a client connection or a target may stay
        silent."""
        balancer = self._balancer()
        attributes = balancer.attrs if balancer is not None else {}
        return float(attributes.get("idle_timeout.timeout_seconds") or DEFAULT_IDLE_TIMEOUT)

    def _action(self, request: _Handler) -> dict[str, Any] | None:
        """The action that answers `request`: that of the listener's first rule (by
        priority) whose conditions the request meets, else the default action; None
        when the listener is gone. `UnsupportedCondition` names a rule the sandbox
        cannot evaluate."""
        balancer = self._balancer()
        listener = balancer.listeners.get(self.listener_arn) if balancer is not None else None
        if listener is None:
            return None
        facts = RequestFacts.of(request, self.protocol)
        for rule in rules_by_priority(listener):
            try:
                matched = rule_matches(list(rule.conditions or []), facts)
            except UnsupportedCondition as error:
                raise UnsupportedCondition(
                    f"listener rule {rule.arn} (priority {rule.priority}): {error}"
                ) from None
            if matched:
                return _first_action(rule.actions)
        return _first_action(listener.default_actions)

    # -- one request

    def serve(self, request: _Handler) -> None:
        """Answer one request as the listener's rules and default action say."""
        started = time.monotonic()
        try:
            action = self._action(request)
        except UnsupportedCondition as error:
            self._discard_body(request)
            self._unsupported(request, error)
            return
        kind = action.get("Type") if action else None
        if action is None or kind not in ("forward", "redirect", "fixed-response"):
            # authenticate-cognito/-oidc would need an identity provider the sandbox lacks.
            self._discard_body(request)
            self._respond(request, 503 if action is None else 500)
        elif kind == "redirect":
            self._discard_body(request)
            self._redirect(request, action.get("RedirectConfig") or {})
        elif kind == "fixed-response":
            self._discard_body(request)
            self._fixed(request, action.get("FixedResponseConfig") or {})
        else:
            self._forward(request, action, started)

    def _forward(self, request: _Handler, action: dict[str, Any], started: float) -> None:
        group_arn = _pick_group(action)
        group = self.backend.target_groups.get(group_arn) if group_arn else None
        route = HEALTH.choose(self.backend, group) if group is not None else None
        counted = [self.balancer_arn, *([group_arn] if group_arn else [])]
        if route is None:
            self._discard_body(request)
            self._respond(request, 503, counted)
            return
        try:
            self._send(request, route, counted, started)
        finally:
            HEALTH.finish(route)

    def _send(self, request: _Handler, route: Route, counted: list[str], started: float) -> None:
        """Send the request to the target and its response to the client (or answer
        for a target that fails); a connection that may serve again is kept idle."""
        try:
            upstream, response = self._exchange(request, route)
        except _TargetFailed as failure:
            # A body partly sent to the target is lost: the client's connection cannot go on.
            bodiless = _body_framing(request) == (0, False)
            self._respond(
                request,
                failure.status,
                counted,
                headers=[] if bodiless else [("Connection", "close")],
                connection_error=failure.connection_error,
            )
            return
        except _ClientGone:
            _TRAFFIC.count(counted, elb_code=460)
            request.close_connection = True
            return
        _TRAFFIC.count(counted, target_code=response.status, seconds=time.monotonic() - started)
        relayed = self._relay(request, response)
        upstream.account()
        if relayed and response.isclosed() and not response.will_close:
            self._pool.give(route, upstream)
        else:
            upstream.close()

    def _exchange(
        self, request: _Handler, route: Route
    ) -> tuple[_TargetConnection, http.client.HTTPResponse]:
        """Send the request to the target and read its response's head.

        A request without a body that may be sent twice goes on an idle kept-alive
        connection when there is one, and once more on a new connection if that one
        turns out closed by the target meanwhile. `_TargetFailed` carries the status
        the balancer answers instead."""
        timeout = self.idle_timeout()
        body = _body_framing(request)
        if request.command in _REPEATABLE and body == (0, False):
            pooled = self._pool.take(route)
            if pooled is not None:
                assert pooled.sock is not None
                pooled.sock.settimeout(timeout)
                try:
                    self._send_upstream(request, pooled, body)
                    return pooled, pooled.getresponse()
                except (ConnectionError, http.client.BadStatusLine):
                    pooled.close()  # closed by the target while idle: try a new connection
                except TimeoutError as error:
                    pooled.close()
                    raise _TargetFailed(504) from error
                except (OSError, http.client.HTTPException) as error:
                    pooled.close()
                    raise _TargetFailed(502) from error
        upstream = _TargetConnection(
            route.address, route.port, timeout=min(CONNECT_TIMEOUT, timeout)
        )
        try:
            upstream.connect()
        except TimeoutError as error:
            raise _TargetFailed(504, connection_error=True) from error
        except OSError as error:
            raise _TargetFailed(502, connection_error=True) from error
        assert upstream.sock is not None
        upstream.sock.settimeout(timeout)
        upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._send_upstream(request, upstream, body)
            return upstream, upstream.getresponse()
        except TimeoutError as error:
            upstream.close()
            raise _TargetFailed(504) from error
        except (OSError, http.client.HTTPException) as error:
            upstream.close()
            raise _TargetFailed(502) from error
        except BaseException:
            upstream.close()
            raise

    def _send_upstream(
        self, request: _Handler, upstream: _TargetConnection, body: tuple[int, bool]
    ) -> None:
        upstream.putrequest(
            request.command, request.path, skip_host=True, skip_accept_encoding=True
        )
        for name, value in self._forwarded_headers(request):
            upstream.putheader(name, value)
        length, chunked = body
        if chunked:
            upstream.putheader("Transfer-Encoding", "chunked")
        elif length:
            upstream.putheader("Content-Length", str(length))
        upstream.endheaders()
        for data in _request_body(request, length, chunked):
            upstream.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            upstream.send(b"0\r\n\r\n")

    def _forwarded_headers(self, request: _Handler) -> list[tuple[str, str]]:
        balancer = self._balancer()
        attributes: Mapping[str, Any] = balancer.attrs if balancer is not None else {}
        named = {t.strip().lower() for t in request.headers.get("Connection", "").split(",")}
        dropped = HOP_BY_HOP | named | {"content-length", "expect"}
        dropped |= {"x-forwarded-proto", "x-forwarded-port"}
        drop_invalid = str(attributes.get("routing.http.drop_invalid_header_fields.enabled"))
        headers = [
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in dropped
            and not (drop_invalid == "true" and not _VALID_HEADER_NAME.match(name))
        ]
        client = str(request.client_address[0])
        mode = str(attributes.get("routing.http.xff_header_processing.mode") or "append")
        if mode == "remove":
            headers = [(n, v) for n, v in headers if n.lower() != "x-forwarded-for"]
        elif mode == "append":
            earlier = [v for n, v in headers if n.lower() == "x-forwarded-for"]
            headers = [(n, v) for n, v in headers if n.lower() != "x-forwarded-for"]
            headers.append(("X-Forwarded-For", ", ".join([*earlier, client])))
        headers.append(("X-Forwarded-Proto", self.protocol.lower()))
        headers.append(("X-Forwarded-Port", str(self.port)))
        if not request.headers.get("X-Amzn-Trace-Id"):
            headers.append(("X-Amzn-Trace-Id", _trace_id()))
        return headers

    def _relay(self, request: _Handler, response: http.client.HTTPResponse) -> bool:
        """Send the target's response on to the client, streaming its body; False when
        either side failed before its end."""
        named = {t.strip().lower() for t in (response.getheader("Connection") or "").split(",")}
        dropped = HOP_BY_HOP | named | {"content-length"}
        length = None if response.chunked else response.getheader("Content-Length")
        status = response.status
        bodiless = request.command == "HEAD" or status in (204, 304) or status < 200
        request.send_response_only(status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in dropped:
                request.send_header(name, value)
        chunked = False
        if length is not None and length.strip().isdigit():
            request.send_header("Content-Length", length.strip())
        elif bodiless:
            pass
        elif request.request_version == "HTTP/1.1":
            request.send_header("Transfer-Encoding", "chunked")
            chunked = True
        else:
            request.send_header("Connection", "close")  # the body ends when the connection does
        if request.request_version == "HTTP/1.0" and not request.close_connection:
            request.send_header("Connection", "keep-alive")
        try:
            request.end_headers()
            if bodiless:
                response.read()
                return True
            while data := response.read1(BODY_CHUNK):
                request.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            response.read()  # read1 leaves a response with a length open at its end
            if chunked:
                request.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            # The target failed mid-body (or the client left): the status is sent already,
            # so the client learns it from the connection closing early.
            request.close_connection = True
            return False
        return True

    # -- responses the balancer makes itself

    def _respond(
        self,
        request: _Handler,
        status: int,
        counted: list[str] | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes | None = None,
        content_type: str = "text/html",
        connection_error: bool = False,
    ) -> None:
        _TRAFFIC.count(
            counted or [self.balancer_arn], elb_code=status, connection_error=connection_error
        )
        reason = http.client.responses.get(status, "")
        if body is None:
            title = f"{status} {reason}".strip()
            body = (
                f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
                f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
            ).encode()
        request.send_response_only(status, reason)
        request.send_header("Server", SERVER)
        request.send_header("Date", request.date_time_string())
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            request.send_header(name, value)
        if request.request_version == "HTTP/1.0" and not request.close_connection:
            request.send_header("Connection", "keep-alive")
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)

    def _redirect(self, request: _Handler, config: Mapping[str, Any]) -> None:
        host_header = request.headers.get("Host") or self.address
        host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        path, _, query = request.path.partition("?")
        values = {
            "protocol": self.protocol,
            "host": host,
            "port": str(self.port),
            "path": path.lstrip("/"),
            "query": query,
        }

        def fill(key: str, default: str) -> str:
            text = str(config.get(key) or default)
            return re.sub(r"#\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)

        location = (
            f"{fill('Protocol', '#{protocol}').lower()}://{fill('Host', '#{host}')}"
            f":{fill('Port', '#{port}')}{fill('Path', '/#{path}')}"
        )
        if query_text := fill("Query", "#{query}"):
            location += f"?{query_text}"
        status = 302 if config.get("StatusCode") == "HTTP_302" else 301
        self._respond(request, status, headers=[("Location", location)])

    def _unsupported(self, request: _Handler, error: UnsupportedCondition) -> None:
        message = f"The HiveMind sandbox cannot evaluate {error}: {RULES_EVALUATED}."
        with self._unsupported_lock:
            first = message not in self._unsupported_seen
            self._unsupported_seen.add(message)
        if first:  # every request the rule sees gets the 500; the log says it once
            log.error("%s: %s", self.name, message)
        self._respond(request, 500, body=message.encode() + b"\n", content_type="text/plain")

    def _fixed(self, request: _Handler, config: Mapping[str, Any]) -> None:
        self._respond(
            request,
            int(config.get("StatusCode") or 200),
            body=str(config.get("MessageBody") or "").encode(),
            content_type=str(config.get("ContentType") or "text/plain"),
        )

    @staticmethod
    def _discard_body(request: _Handler) -> None:
        length, chunked = _body_framing(request)
        for _ in _request_body(request, length, chunked):
            pass


def _first_action(actions: Iterable[Any]) -> dict[str, Any] | None:
    """The action of a rule (or of the default actions) that answers: the first by Order
    (an authenticate action comes before its forward; the sandbox does not run those)."""
    ordered = sorted((dict(a.data) for a in list(actions)), key=lambda a: int(a.get("Order") or 0))
    return next(iter(ordered), None)


def _pick_group(action: Mapping[str, Any]) -> str | None:
    """The target group for one request: the only one, or one of a ForwardConfig's by
    weight."""
    forward = action.get("ForwardConfig") or {}
    weighted = [
        (str(g["TargetGroupArn"]), int(g.get("Weight", 1)))
        for g in forward.get("TargetGroups") or []
        if int(g.get("Weight", 1)) > 0
    ]
    if weighted:
        arns, weights = zip(*weighted, strict=True)
        return str(random.choices(arns, weights)[0])
    arn = action.get("TargetGroupArn")
    return str(arn) if arn else None


def _body_framing(request: _Handler) -> tuple[int, bool]:
    """(Content-Length, chunked) of the request's body."""
    encoding = request.headers.get("Transfer-Encoding", "")
    if "chunked" in encoding.lower():
        return 0, True
    try:
        return max(0, int(request.headers.get("Content-Length") or 0)), False
    except ValueError as error:
        raise _ClientGone("unreadable Content-Length") from error


def _request_body(request: _Handler, length: int, chunked: bool) -> Iterator[bytes]:
    """The request's body as it arrives (de-chunked); _ClientGone when it cannot be read."""
    try:
        yield from _read_body(request.rfile, length, chunked)
    except OSError as error:
        raise _ClientGone(str(error)) from error


def _read_exactly(rfile: Any, length: int) -> Iterator[bytes]:
    """`length` bytes of a body, in pieces of at most BODY_CHUNK."""
    remaining = length
    while remaining:
        data = rfile.read(min(remaining, BODY_CHUNK))
        if not data:
            raise _ClientGone("body cut short")
        remaining -= len(data)
        yield data


def _read_body(rfile: Any, length: int, chunked: bool) -> Iterator[bytes]:
    if not chunked:
        yield from _read_exactly(rfile, length)
        return
    while True:
        line = rfile.readline(65537)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as error:
            raise _ClientGone("unreadable chunk size") from error
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers end at an empty line; ALB does not forward them either
            return
        yield from _read_exactly(rfile, size)
        rfile.readline(3)  # the CRLF after the chunk


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def _permission_advice(address: str, port: int) -> str:
    start = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")
    current = start.read_text().strip() if start.exists() else "unknown"
    return (
        f"The sandbox cannot listen on {address}:{port}: ports below 1024 need root or "
        f"net.ipv4.ip_unprivileged_port_start<={port} (it is {current} here). Run "
        f"`sudo sysctl -w net.ipv4.ip_unprivileged_port_start={port}` (add "
        f"`net.ipv4.ip_unprivileged_port_start={port}` to /etc/sysctl.d/ to keep it), then "
        "`hivemind sandbox down` and retry"
    )


# ---------------------------------------------------------------------------
# balancers


class LocalBalancer:
    """One application load balancer's stand-in: the loopback address that is its DNS
    name, and one forwarder per listener. Stopped with the daemon if not closed before."""

    def __init__(self, backend: MotoBackend, arn: str, address: str) -> None:
        self.backend = backend
        self.arn = arn
        self.address = address
        self._lock = threading.Lock()
        self._listeners: dict[str, Forwarder] = {}
        self._forget = runtime.on_shutdown(self.close)

    @classmethod
    def create(cls, backend: MotoBackend, arn: str) -> LocalBalancer:
        """A balancer on a loopback address of its own, where ports 80 and 443 are free."""
        balancer = cls(backend, arn, runtime.allocate_address([80, 443]))
        with _BALANCERS_LOCK:
            _BALANCERS[arn] = balancer
        return balancer

    def open_listener(
        self,
        listener_arn: str,
        port: int,
        protocol: str = "HTTP",
        tls: ssl.SSLContext | None = None,
    ) -> Forwarder:
        """Serve a listener on this balancer's address, in place of how it was served
        before (a new port is bound before the old one closes); `ListenerUnavailable`
        if the port cannot be bound."""
        with self._lock:
            previous = self._listeners.get(listener_arn)
        if previous is not None and previous.port == port:
            self.close_listener(listener_arn)
            previous = None
        forwarder = Forwarder(
            self.backend, self.arn, listener_arn, self.address, port, protocol, tls
        )
        with self._lock:
            self._listeners[listener_arn] = forwarder
        if previous is not None:
            previous.stop()
        return forwarder

    def listener(self, listener_arn: str) -> Forwarder | None:
        with self._lock:
            return self._listeners.get(listener_arn)

    def forwarders(self) -> list[Forwarder]:
        """The forwarders of every listener served now."""
        with self._lock:
            return list(self._listeners.values())

    def close_listener(self, listener_arn: str) -> None:
        with self._lock:
            forwarder = self._listeners.pop(listener_arn, None)
        if forwarder is not None:
            forwarder.stop()

    def close(self) -> None:
        """Stop every listener and give the address back (idempotent)."""
        with self._lock:
            forwarders = list(self._listeners.values())
            self._listeners.clear()
        for forwarder in forwarders:
            forwarder.stop()
        with _BALANCERS_LOCK:
            if _BALANCERS.get(self.arn) is self:
                del _BALANCERS[self.arn]
        runtime.release_address(self.address)
        self._forget()


_BALANCERS_LOCK = threading.Lock()
_BALANCERS: dict[str, LocalBalancer] = {}


def local_balancer(arn: str) -> LocalBalancer | None:
    """The stand-in of the balancer `arn`, if the sandbox made one."""
    with _BALANCERS_LOCK:
        return _BALANCERS.get(arn)


def local_balancers() -> list[LocalBalancer]:
    """Every balancer stand-in serving now."""
    with _BALANCERS_LOCK:
        return list(_BALANCERS.values())
