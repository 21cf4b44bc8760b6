"""What the sandbox reports to CloudWatch and X-Ray, measured from its real stand-ins, so
`hivemind status --show-logs/--show-metrics/--show-traces` (and any boto3 client at the
sandbox's endpoint) reads real data: CloudWatch Logs (FilterLogEvents, GetLogEvents),
metrics (GetMetricStatistics, GetMetricData, ListMetrics) and traces
(GetTraceSummaries, BatchGetTraces).

**Instances.** `watch_instance` gives each EC2 instance's host what its user data
would have set up on AWS: the CloudWatch agent (`hivemind.sandbox.cloudwatch_agent`:
the app's log lines, the CWAgent memory and disk metrics) and the X-Ray daemon
(`hivemind.sandbox.xray_daemon`), when the user data starts them. Both stop with the host.

**What AWS itself publishes**, every round, in the account and region of the resource:

* `AWS/EC2`, dimension `InstanceId`, for every instance with a host:
  `CPUUtilization` (Percent): the CPU time the host's processes used in the period, over
  the period times this machine's CPUs; `NetworkIn` / `NetworkOut` (Bytes, per period):
  the TCP payload bytes the load balancers' forwarders (requests and health checks) sent
  to / received from the instance's address. Traffic that does not pass a balancer (SSH,
  the app's own calls out) is not counted: the hosts share this machine's loopback, where
  the kernel keeps no count per address.
* `AWS/ApplicationELB`, for every balancer with a forwarder, dimension `LoadBalancer`
  (`app/<name>/<id>`, from its ARN), and for each target group its listeners forward to,
  dimensions `TargetGroup` (`targetgroup/<name>/<id>`) and `LoadBalancer`: per period,
  from the forwarder's counters (`forwarder.traffic`), `RequestCount` (every request the
  listener answered), `HTTPCode_Target_2XX_Count` .. `5XX`, `HTTPCode_ELB_3XX_Count` ..
  `5XX` and `HTTPCode_ELB_500/502/503/504_Count`, `TargetConnectionErrorCount` and
  `TargetResponseTime` (seconds, one statistic set per period: sum, count, minimum,
  maximum) — each only when non-zero, as AWS reports them only while requests flow;
  and, for target groups, `HealthyHostCount` / `UnHealthyHostCount` (the forwarder's
  health checks) every round.
* `AWS/RDS`, dimension `DBInstanceIdentifier`, for every DB instance with a server:
  `DatabaseConnections` (established TCP connections to the server's address and port,
  from /proc/net/tcp), `CPUUtilization` (Percent: the CPU time of the server's processes,
  as for instances) and `FreeStorageSpace` (Bytes: the instance's AllocatedStorage less
  what its data folder takes, and never more than its filesystem has free).

**When.** One background thread runs a round every `cloudwatch_agent.collection_interval()`
seconds (5, or HIVEMIND_SANDBOX_AGENT_INTERVAL as the daemon starts); on AWS the agent's
metrics come every 60 s, EC2's every 5 minutes (1 with detailed monitoring), ELB's and
RDS's every minute. Each value is stamped with the time it was measured, so a query with
Period=60 sums (or averages) the rounds of each minute. moto keeps metric data in memory
and scans all of it for every query, so the sandbox keeps what it published for
`RETENTION` (3 hours, a dashboard's default range) and drops older data points.

`install()` fixes two things of moto's that these metrics run into: GetMetricStatistics
matches dimensions exactly, as CloudWatch does (moto matched any series that has the
asked dimensions among others, so a query by LoadBalancer alone also summed the
per-target-group series), and ListMetrics lists a series of two or more dimensions once
(moto listed it once per data point). moto computes no percentiles: p50 or p99 give no
value.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hivemind.sandbox import cloudwatch_agent, databases, forwarder, patching, usage, xray_daemon
from hivemind.sandbox.hosts import SandboxHost

log = logging.getLogger("hivemind.sandbox")

RETENTION = timedelta(hours=3)
PRUNE_EVERY = 60.0  # seconds between two sweeps of old data points
# The namespaces the sandbox publishes AWS's own metrics in (an agent's namespace is
# swept too, see `Collector._prune`).
AWS_NAMESPACES = ("AWS/EC2", "AWS/ApplicationELB", "AWS/RDS")
_GIB = 1024**3


def _now() -> datetime:
    """The time a value is stamped with: naive UTC, as moto keeps its data points."""
    return datetime.now(UTC).replace(tzinfo=None)


def _cloudwatch(account_id: str, region: str) -> Any:
    from moto.cloudwatch.models import cloudwatch_backends

    return cloudwatch_backends[account_id][region]


def _datum(
    name: str, value: float, unit: str, dimensions: dict[str, str], stamp: datetime
) -> dict[str, Any]:
    return {
        "MetricName": name,
        "Value": float(value),
        "Unit": unit,
        "Timestamp": stamp,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
    }


_installed = False


def install() -> None:
    """Make GetMetricStatistics answer for the series whose dimensions are exactly the
    ones asked for, and ListMetrics tell series apart by their dimensions as a set
    (idempotent)."""
    global _installed
    if _installed:
        return
    from moto.cloudwatch import models
    from moto.cloudwatch.models import CloudWatchBackend, Dimension

    def same_dimensions(metric_dimensions: list[Dimension], dimensions: list[Dimension]) -> bool:
        # moto's own compares every dimension with every other one: never equal for two.
        return sorted((d.name, d.value) for d in metric_dimensions) == sorted(
            (d.name, d.value) for d in dimensions
        )

    patching.replace(models, "are_dimensions_same", same_dimensions)

    original = CloudWatchBackend.get_metric_statistics

    def get_metric_statistics(self: CloudWatchBackend, *args: Any, **kwargs: Any) -> Any:
        found = original(self, *args, **kwargs)
        asked = kwargs["dimensions"] if "dimensions" in kwargs else args[6]
        wanted = sorted((d["Name"], d.get("Value")) for d in asked or [])
        kept = []
        for statistics in found:
            statistics.metric_data = [
                datum
                for datum in statistics.metric_data
                if sorted((d.name, d.value) for d in datum.dimensions) == wanted
            ]
            if statistics.metric_data:
                kept.append(statistics)
        return kept

    patching.replace(CloudWatchBackend, "get_metric_statistics", get_metric_statistics)
    _installed = True


# ---------------------------------------------------------------------------
# instances


@dataclass(eq=False)
class InstanceWatch:
    """What runs for one instance's host: its agent and daemon (either may be absent) and
    what its EC2 metrics are measured from."""

    host: SandboxHost
    account_id: str
    region: str
    agent: cloudwatch_agent.CloudWatchAgent | None = None
    daemon: xray_daemon.XRayDaemon | None = None
    cpu: usage.CpuMeter = field(default_factory=usage.CpuMeter)
    since: float = field(default_factory=time.monotonic)
    network: forwarder.NetworkBytes = field(default_factory=forwarder.NetworkBytes)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: bool = False

    def collect(self) -> None:
        """One round: the agent ships and publishes, then the instance's EC2 metrics."""
        with self.lock:
            if self.stopped:
                return
            if self.agent is not None:
                try:
                    self.agent.collect()
                except Exception:
                    log.exception("%s: the CloudWatch agent's round failed", self.host.instance_id)
            self._publish_ec2()

    def _publish_ec2(self) -> None:
        now = time.monotonic()
        elapsed, self.since = now - self.since, now
        used = self.cpu.read(self.host.processes())
        network = forwarder.network_bytes(self.host.address)
        received = network.to_target - self.network.to_target
        sent = network.from_target - self.network.from_target
        self.network = network
        if elapsed <= 0:
            return
        stamp = _now()
        dimensions = {"InstanceId": self.host.instance_id}
        percent = 100.0 * used / elapsed / usage.machine_cpus()
        _cloudwatch(self.account_id, self.region).put_metric_data(
            "AWS/EC2",
            [
                _datum("CPUUtilization", min(100.0, percent), "Percent", dimensions, stamp),
                _datum("NetworkIn", received, "Bytes", dimensions, stamp),
                _datum("NetworkOut", sent, "Bytes", dimensions, stamp),
            ],
        )

    def stop(self) -> None:
        """Stop the agent and the daemon (the host is stopping)."""
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
            if self.agent is not None:
                self.agent.close()
            if self.daemon is not None:
                self.daemon.stop()


def user_data_of(instance: Any) -> bytes:
    """An instance's user data as the instance reads it (base64 decoded); empty without."""
    value = getattr(instance, "user_data", None)
    if value is None:
        return b""
    encoded = value.as_bytes() if hasattr(value, "as_bytes") else str(value).encode()
    try:
        return base64.b64decode(encoded)
    except ValueError:
        return b""


def watch_instance(host: SandboxHost, instance: Any, *, account_id: str, region: str) -> None:
    """Give a new instance's host the agent and the X-Ray daemon its user data starts, and
    publish its EC2 metrics from now on; all of it stops with the host. What cannot be set
    up is logged, never fatal: the instance runs as it would with a broken agent."""
    user_data = user_data_of(instance)
    watch = InstanceWatch(host, account_id, region)
    if xray_daemon.installed_by(cloudwatch_agent.user_data_scripts(user_data)):
        from moto.xray.models import xray_backends

        daemon = xray_daemon.XRayDaemon(
            host.instance_id, host.address, xray_backends[account_id][region]
        )
        try:
            daemon.start()
        except OSError as error:
            log.warning("%s: its X-Ray daemon cannot listen: %s", host.instance_id, error)
        else:
            watch.daemon = daemon
            host.set_environment(xray_daemon.ADDRESS_VARIABLE, daemon.endpoint)
    try:
        watch.agent = _agent(host, instance, user_data, account_id, region)
    except Exception:  # user data the reader trips over: the instance runs without an agent
        log.exception("%s: its CloudWatch agent could not be set up", host.instance_id)
    COLLECTOR.watch(watch)
    host.add_companion(lambda: COLLECTOR.unwatch(watch))


def _agent(
    host: SandboxHost, instance: Any, user_data: bytes, account_id: str, region: str
) -> cloudwatch_agent.CloudWatchAgent | None:
    from moto.logs.models import logs_backends
    from moto.ssm.models import ssm_backends

    ssm = ssm_backends[account_id][region]

    def read_parameter(name: str) -> str | None:
        try:
            found = ssm.get_parameter(name)
        except Exception:  # moto's ParameterVersionNotFound and its siblings
            return None
        return None if found is None else str(found.value)

    try:
        config = cloudwatch_agent.find_config(user_data, read_parameter)
    except cloudwatch_agent.ConfigNotFound as error:
        log.warning("%s: no CloudWatch agent: %s", host.instance_id, error)
        return None
    if config is None:
        return None
    identity = cloudwatch_agent.InstanceIdentity(
        instance_id=host.instance_id,
        hostname=host.hostname,
        address=host.address,
        instance_type=str(getattr(instance, "instance_type", "") or ""),
        image_id=str(getattr(instance, "image_id", "") or ""),
    )
    view = cloudwatch_agent.HostView(host.local_path, host.directory, host.processes)
    log.info("%s: CloudWatch agent running with %s", host.instance_id, ", ".join(config.sources))
    return cloudwatch_agent.CloudWatchAgent(
        config,
        identity,
        view,
        logs_backends[account_id][region],
        _cloudwatch(account_id, region),
    )


# ---------------------------------------------------------------------------
# load balancers


def balancer_dimension(arn: str) -> str:
    """The LoadBalancer dimension of a balancer: `app/<name>/<id>` of its ARN."""
    return arn.split(":loadbalancer/", 1)[-1]


def target_group_dimension(arn: str) -> str:
    """The TargetGroup dimension of a target group: `targetgroup/<name>/<id>`."""
    return arn.rsplit(":", 1)[-1]


def _groups_of(balancer: Any) -> list[str]:
    """The target groups the balancer's listeners forward to, in listener order."""
    arns: list[str] = []
    for listener in list(balancer.listeners.values()):
        for rule in list(listener.rules.values()):
            for action in list(rule.actions):
                arns += forwarder.group_arns(action.data)
    return list(dict.fromkeys(arns))


def _code_classes(codes: dict[int, int]) -> dict[int, int]:
    classes: dict[int, int] = {}
    for code, count in codes.items():
        classes[code // 100] = classes.get(code // 100, 0) + count
    return classes


def _difference(now: dict[int, int], before: dict[int, int]) -> dict[int, int]:
    return {code: count - before.get(code, 0) for code, count in now.items()}


def traffic_data(
    arn: str, before: forwarder.Traffic, now: forwarder.Traffic, dimensions: dict[str, str]
) -> list[dict[str, Any]]:
    """The ApplicationELB request metrics of one period: differences of two readings of
    the forwarder's counters, each metric only when it is not zero."""
    stamp = _now()
    values: list[tuple[str, float]] = [("RequestCount", now.requests - before.requests)]
    target = _difference(dict(now.target_codes), dict(before.target_codes))
    elb = _difference(dict(now.elb_codes), dict(before.elb_codes))
    target_classes, elb_classes = _code_classes(target), _code_classes(elb)
    values += [(f"HTTPCode_Target_{c}XX_Count", target_classes.get(c, 0)) for c in (2, 3, 4, 5)]
    values += [(f"HTTPCode_ELB_{c}XX_Count", elb_classes.get(c, 0)) for c in (3, 4, 5)]
    values += [(f"HTTPCode_ELB_{code}_Count", elb.get(code, 0)) for code in (500, 502, 503, 504)]
    values.append(
        (
            "TargetConnectionErrorCount",
            now.target_connection_errors - before.target_connection_errors,
        )
    )
    data = [_datum(name, value, "Count", dimensions, stamp) for name, value in values if value]
    answered = sum(target.values())
    extremes = forwarder.take_response_time_extremes(arn)
    if answered > 0 and extremes is not None:
        data.append(
            {
                "MetricName": "TargetResponseTime",
                "Unit": "Seconds",
                "Timestamp": stamp,
                "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
                "StatisticValues": {
                    "SampleCount": float(answered),
                    "Sum": now.target_seconds - before.target_seconds,
                    "Minimum": extremes[0],
                    "Maximum": extremes[1],
                },
            }
        )
    return data


# ---------------------------------------------------------------------------
# the collector


class Collector:
    """The thread that runs a round every interval (see the module's docstring). Started
    by the sandbox server; stopped with the daemon."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watches: list[InstanceWatch] = []
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._forget: Any = None
        self.interval = cloudwatch_agent.DEFAULT_INTERVAL
        self._traffic: dict[str, forwarder.Traffic] = {}
        self._database_cpu: dict[str, tuple[usage.CpuMeter, float]] = {}
        self._pruned = time.monotonic()
        self._warned: set[str] = set()

    def start(self) -> None:
        """Run rounds from now on, every `collection_interval()` as it is now (idempotent)."""
        from hivemind.sandbox import runtime

        with self._lock:
            if self._thread is not None:
                return
            self.interval = cloudwatch_agent.collection_interval()
            self._stopping = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(self._stopping,), name="sandbox-telemetry", daemon=True
            )
            self._thread.start()
        self._forget = runtime.on_shutdown(self.stop)
        log.info("sandbox telemetry every %.1f s", self.interval)

    def stop(self) -> None:
        """Stop the rounds and every agent and daemon still running (idempotent)."""
        with self._lock:
            thread, self._thread = self._thread, None
            watches, self._watches = self._watches, []
            self._stopping.set()
            forget, self._forget = self._forget, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        for watch in watches:
            watch.stop()
        if forget is not None:
            forget()

    def watch(self, watch: InstanceWatch) -> None:
        with self._lock:
            self._watches.append(watch)

    def unwatch(self, watch: InstanceWatch) -> None:
        with self._lock:
            if watch in self._watches:
                self._watches.remove(watch)
        watch.stop()

    def run_round(self) -> None:
        """One round now: every instance, balancer and database."""
        with self._lock:
            watches = list(self._watches)
        for watch in watches:
            self._guarded(f"instance {watch.host.instance_id}", watch.collect)
        for balancer in forwarder.local_balancers():
            self._guarded(f"balancer {balancer.arn}", lambda b=balancer: self._balancer(b))
        for backend in _rds_backends():
            for identifier, database in list(backend.databases.items()):
                self._guarded(
                    f"database {identifier}",
                    lambda b=backend, i=identifier, d=database: self._database(b, i, d),
                )
        if time.monotonic() - self._pruned > PRUNE_EVERY:
            self._pruned = time.monotonic()
            self._guarded("pruning", self._prune)

    def _run(self, stopping: threading.Event) -> None:
        while not stopping.wait(self.interval):
            self.run_round()

    def _guarded(self, what: str, action: Any) -> None:
        try:
            action()
        except Exception:
            # A stand-in stopping mid-round fails its reads; say so once per stand-in.
            if what not in self._warned:
                self._warned.add(what)
                log.exception("sandbox telemetry: measuring %s failed", what)

    # -- load balancers

    def _balancer(self, balancer: forwarder.LocalBalancer) -> None:
        backend = balancer.backend
        described = backend.load_balancers.get(balancer.arn)
        if described is None:
            return
        name = balancer_dimension(balancer.arn)
        data = self._traffic_since(balancer.arn, {"LoadBalancer": name})
        for group_arn in _groups_of(described):
            group = backend.target_groups.get(group_arn)
            if group is None:
                continue
            dimensions = {"TargetGroup": target_group_dimension(group_arn), "LoadBalancer": name}
            data += self._traffic_since(group_arn, dimensions)
            states = [status.state for status in forwarder.HEALTH.describe(backend, group)]
            stamp = _now()
            data.append(
                _datum(
                    "HealthyHostCount", states.count(forwarder.HEALTHY), "Count", dimensions, stamp
                )
            )
            data.append(
                _datum(
                    "UnHealthyHostCount",
                    states.count(forwarder.UNHEALTHY),
                    "Count",
                    dimensions,
                    stamp,
                )
            )
        if data:
            _cloudwatch(backend.account_id, backend.region_name).put_metric_data(
                "AWS/ApplicationELB", data
            )

    def _traffic_since(self, arn: str, dimensions: dict[str, str]) -> list[dict[str, Any]]:
        now = forwarder.traffic(arn)
        before = self._traffic.get(arn, forwarder.Traffic())
        self._traffic[arn] = now
        return traffic_data(arn, before, now, dimensions)

    # -- databases

    def _database(self, backend: Any, identifier: str, database: Any) -> None:
        server = databases.server_of(identifier)
        if server is None or server.pid is None or not server.is_running():
            self._database_cpu.pop(identifier, None)
            return
        meter, since = self._database_cpu.get(identifier, (usage.CpuMeter(), time.monotonic()))
        now = time.monotonic()
        used = meter.read(usage.descendants(server.pid))
        self._database_cpu[identifier] = (meter, now)
        stamp = _now()
        dimensions = {"DBInstanceIdentifier": identifier}
        data = [
            _datum(
                "DatabaseConnections",
                usage.established_connections(server.address, server.port),
                "Count",
                dimensions,
                stamp,
            )
        ]
        if now > since:
            percent = 100.0 * used / (now - since) / usage.machine_cpus()
            data.append(_datum("CPUUtilization", min(100.0, percent), "Percent", dimensions, stamp))
        allocated = int(getattr(database, "allocated_storage", 0) or 0) * _GIB
        filesystem = usage.filesystem_usage(server.folder)
        free = filesystem.available
        if allocated:
            free = min(free, max(0, allocated - usage.bytes_under(server.data_dir)))
        data.append(_datum("FreeStorageSpace", free, "Bytes", dimensions, stamp))
        _cloudwatch(backend.account_id, backend.region_name).put_metric_data("AWS/RDS", data)

    # -- retention

    def _prune(self) -> None:
        """Drop data points older than RETENTION that the sandbox published."""
        from moto.cloudwatch.models import cloudwatch_backends

        namespaces = set(AWS_NAMESPACES)
        with self._lock:
            for watch in self._watches:
                if watch.agent is not None and watch.agent.config.metrics is not None:
                    namespaces.add(watch.agent.config.metrics.namespace)
        oldest = _now() - RETENTION
        for regions in list(cloudwatch_backends.values()):
            for backend in list(regions.values()):
                backend.metric_data = [
                    datum
                    for datum in backend.metric_data
                    if datum.namespace not in namespaces or datum.timestamp >= oldest
                ]


def _rds_backends() -> Iterator[Any]:
    from moto.rds.models import rds_backends

    for regions in list(rds_backends.values()):
        yield from list(regions.values())


COLLECTOR = Collector()
