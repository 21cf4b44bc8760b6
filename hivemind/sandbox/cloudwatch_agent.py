"""The CloudWatch agent of a sandbox host: the app's real log lines to CloudWatch Logs and
the host's memory and disk to CloudWatch metrics, as the agent on an EC2 instance sends
them.

**Which configuration.** An instance on AWS gets its agent configured by its user data:
a script writes the configuration file and runs
`amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c file:<path>` (or `-c ssm:<name>`
for a configuration kept in Parameter Store). The sandbox runs no user data, so
`find_config` reads the script instead: every `amazon-cloudwatch-agent-ctl` command it
runs (`fetch-config` replaces the configuration, `append-config` adds to it, `-s` or
`-a start` starts the agent, `-a stop` stops it), and for `file:` the file the script
writes with a here-document (`cat > PATH <<'EOF' ... EOF`, `cat <<EOF >PATH`,
`tee PATH <<EOF`). An instance whose user data leaves the agent stopped, or whose
configuration cannot be found or parsed, gets no agent (the daemon's log says why).
User data may be a shell script, gzip-compressed, or a MIME multi-part archive whose
`text/x-shellscript` parts are read in order.

**Logs** (`logs.logs_collected.files.collect_list`). Each entry's `file_path` glob (`*`,
`**`) is matched inside the host: /opt, /tmp, /var/log and /etc/systemd/system are the
host's own folders (`<host dir>/root/...`); a path anywhere else is not the host's and
is not read. New lines go to `log_group_name` / `log_stream_name` (placeholders
`{instance_id}`, `{hostname}`, `{local_hostname}`, `{ip_address}` filled in; the
defaults are the agent's: the file path up to its last dot, and `{instance_id}`), one
event per line stamped with the time it was read (the agent's way without a
`timestamp_format`), in the order written. The stream is created when missing; the
log group is not (the real agent may create it, but in the sandbox a stack's deletion
removes the group before it terminates the instance, and a group recreated in between
would outlive the stack): lines wait in their file until the group exists. `filters`
(include / exclude by regular expression) apply. Files are followed by inode, so a
rotated file (renamed, then a new one created) is read to its end and never shipped
again under its new name, and a truncated one (copytruncate) is read from its start
again. A line without its newline yet is shipped once a round passes without more of it.
Not supported: `timestamp_format`, `multi_line_start_pattern`, `encoding` (UTF-8 is
assumed), Windows event logs.

**Metrics** (`metrics`): in the configuration's `namespace` (default CWAgent), with its
`append_dimensions` (`${aws:InstanceId}`, `${aws:InstanceType}`, `${aws:ImageId}`) and,
for each `aggregation_dimensions` set, a copy of each metric with those dimensions only
(so `[["InstanceId"]]` gives `disk_used_percent` by InstanceId alone, as the dashboard
reads it). Measured for real:

* `mem_*`: the host's memory is the memory of the processes running in it (their
  proportional set size, `usage.memory_in_use`), out of this machine's memory:
  `mem_used`, `mem_used_percent`, `mem_total`, `mem_available`, `mem_available_percent`.
* `disk_*`: the filesystem that holds the host's folder stands for the instance's root
  volume (`resources` "/" or "*"; another path in `resources` is the filesystem of the
  host's folder for it): `disk_used`, `disk_used_percent` (used / (used + available), as
  df), `disk_total`, `disk_free`, `disk_inodes_free`, `disk_inodes_used`,
  `disk_inodes_total`, with dimensions `path`, `fstype` (and `device`, unless
  `drop_device`).

Other sections (cpu, diskio, net, swap, processes, ...) are not collected; the daemon's
log names them once.

**When.** The agent on AWS ships logs about every 5 seconds and metrics every
`metrics_collection_interval` (60 s by default). In the sandbox both happen every
`collection_interval()` seconds, 5 by default, or what HIVEMIND_SANDBOX_AGENT_INTERVAL
says when the daemon starts, so a test or a demo sees data within seconds.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import glob
import gzip
import json
import logging
import os
import re
import shlex
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from hivemind.sandbox import usage

log = logging.getLogger("hivemind.sandbox")

INTERVAL_VARIABLE = "HIVEMIND_SANDBOX_AGENT_INTERVAL"
DEFAULT_INTERVAL = 5.0
AGENT_CTL = "amazon-cloudwatch-agent-ctl"
DEFAULT_NAMESPACE = "CWAgent"
MAX_EVENT_BYTES = 256 * 1024 - 26  # CloudWatch Logs' event size limit, less its overhead
READ_LIMIT = 4 * 1024 * 1024  # bytes read from one file per round; the rest next round
ROTATED_GRACE = 30.0  # seconds a file no longer matched is still followed (rotation)


def collection_interval() -> float:
    """Seconds between two rounds of every sandbox agent (HIVEMIND_SANDBOX_AGENT_INTERVAL,
    else 5); at least 0.1."""
    value = os.environ.get(INTERVAL_VARIABLE, "")
    try:
        seconds = float(value) if value.strip() else DEFAULT_INTERVAL
    except ValueError:
        log.warning("%s=%r is not a number of seconds", INTERVAL_VARIABLE, value)
        seconds = DEFAULT_INTERVAL
    return max(0.1, seconds)


# ---------------------------------------------------------------------------
# finding the configuration in the user data


class ConfigNotFound(Exception):
    """The user data starts the agent, but its configuration cannot be had; the message
    says why."""


def user_data_scripts(raw: bytes) -> list[str]:
    """The shell scripts in an instance's user data (decoded from base64 already): the
    data itself, or, for a MIME multi-part archive, its shell-script parts in order;
    gzip-compressed data is decompressed first."""
    if raw[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError):
            raw = gzip.decompress(raw)
    text = raw.decode("utf-8", errors="replace")
    head = text.lstrip()[:200].lower()
    if not (head.startswith("content-type: multipart") or head.startswith("mime-version")):
        return [text]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    scripts = []
    for part in message.walk():
        if part.get_content_type() in ("text/x-shellscript", "text/x-shellscript-per-boot"):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                scripts.append(payload.decode("utf-8", errors="replace"))
    return scripts


# `<<TAG`, `<<-TAG`, `<< 'TAG'`, `<<"TAG"` (not a here-string, `<<<`).
_HEREDOC = re.compile(r"(?<!<)<<(?!<)(-?)\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_REDIRECT = re.compile(r"(?:^|[\s;])(>>?)\s*(\"[^\"]+\"|'[^']+'|[^\s;&|<>]+)")
_TEE = re.compile(r"\btee\s+((?:-a\s+|--append\s+)?)(\"[^\"]+\"|'[^']+'|[^\s;&|<>-][^\s;&|<>]*)")


@dataclass(frozen=True)
class _Step:
    """One command of a user data script (here-document bodies left out), and the file it
    writes with a here-document, if it does: (path, content, appended)."""

    command: str
    writes: tuple[str, str, bool] | None = None


def _unquote(word: str) -> str:
    return word[1:-1] if len(word) > 1 and word[0] == word[-1] and word[0] in "'\"" else word


def _steps(text: str) -> list[_Step]:
    """The commands of a shell script in order, continued lines joined."""
    steps: list[_Step] = []
    lines = text.splitlines()
    pending = ""
    index = 0
    while index < len(lines):
        line = pending + lines[index]
        index += 1
        here = _HEREDOC.search(line)
        if line.endswith("\\") and here is None:
            pending = line[:-1] + " "
            continue
        pending = ""
        if here is None:
            steps.append(_Step(line))
            continue
        strip_tabs, tag = here.group(1) == "-", here.group(3)
        body = []
        while index < len(lines):
            candidate = lines[index].lstrip("\t") if strip_tabs else lines[index]
            index += 1
            if candidate == tag:
                break
            body.append(candidate)
        command = line[: here.start()] + line[here.end() :]
        content = "\n".join(body) + "\n"
        tee, redirect = _TEE.search(command), _REDIRECT.search(command)
        if tee is not None:
            steps.append(_Step(command, (_unquote(tee.group(2)), content, bool(tee.group(1)))))
        elif redirect is not None:
            path, appended = _unquote(redirect.group(2)), redirect.group(1) == ">>"
            steps.append(_Step(command, (path, content, appended)))
        else:
            steps.append(_Step(command))
    return steps


@dataclass(frozen=True)
class _CtlCall:
    action: str
    config: str | None
    start: bool


def _ctl_calls(command: str) -> Iterator[_CtlCall]:
    """The amazon-cloudwatch-agent-ctl invocations in one command line."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words = list(lexer)
    except ValueError:
        return
    index = 0
    while index < len(words):
        if os.path.basename(words[index]) != AGENT_CTL:
            index += 1
            continue
        action, config, start = "", None, False
        index += 1
        while index < len(words) and words[index] not in (";", "&&", "||", "|", "&"):
            word = words[index]
            if word in ("-a", "-c", "-m") and index + 1 < len(words):
                value = words[index + 1]
                if word == "-a":
                    action = value
                elif word == "-c":
                    config = value
                index += 2
                continue
            if word == "-s":
                start = True
            index += 1
        yield _CtlCall(action, config, start)


def find_config(
    user_data: bytes, read_parameter: Callable[[str], str | None]
) -> AgentConfig | None:
    """The agent configuration an instance's user data leaves its agent running with, or
    None when the user data does not start the agent. ConfigNotFound when it does but the
    configuration cannot be found or is not valid JSON. `read_parameter` answers an SSM
    parameter's value (for `-c ssm:<name>`), or None."""
    documents: list[tuple[str, str]] = []
    files: dict[str, str] = {}
    running = False
    for text in user_data_scripts(user_data):
        for step in _steps(text):
            if step.writes is not None:
                path, content, appended = step.writes
                files[path] = (files.get(path, "") if appended else "") + content
            for call in _ctl_calls(step.command):
                if call.action in ("fetch-config", "append-config") and call.config:
                    source = _config_text(call.config, files, read_parameter)
                    if call.action == "fetch-config":
                        documents = []
                    documents.append((call.config, source))
                    running = running or call.start
                elif call.action == "start":
                    running = True
                elif call.action == "stop":
                    running = False
    if not running or not documents:
        return None
    parsed = []
    for where, text in documents:
        try:
            document = json.loads(text)
        except ValueError as error:
            raise ConfigNotFound(f"the agent configuration {where} is not JSON: {error}") from error
        if not isinstance(document, dict):
            raise ConfigNotFound(f"the agent configuration {where} is not a JSON object")
        parsed.append(document)
    return AgentConfig.parse(parsed, sources=tuple(where for where, _ in documents))


def _config_text(
    config: str, files: Mapping[str, str], read_parameter: Callable[[str], str | None]
) -> str:
    kind, _, name = config.partition(":")
    if kind == "file":
        if name not in files:
            raise ConfigNotFound(
                f"the user data runs {AGENT_CTL} with -c {config}, but does not write {name} "
                "with a here-document the sandbox can read"
            )
        return files[name]
    if kind == "ssm":
        value = read_parameter(name)
        if value is None:
            raise ConfigNotFound(f"the SSM parameter {name} (-c {config}) does not exist")
        return value
    raise ConfigNotFound(f"the sandbox's agent reads -c file:... or ssm:... only, not {config}")


# ---------------------------------------------------------------------------
# the configuration


@dataclass(frozen=True)
class LogFileConfig:
    """One `collect_list` entry."""

    file_path: str
    log_group_name: str
    log_stream_name: str
    filters: tuple[tuple[str, re.Pattern[str]], ...] = ()

    def accepts(self, line: str) -> bool:
        """Whether `line` passes every filter (an include must match, an exclude must not)."""
        for kind, expression in self.filters:
            if (expression.search(line) is not None) != (kind == "include"):
                return False
        return True


@dataclass(frozen=True)
class Measurement:
    """One metric the agent collects: its section (mem, disk), what it measures there
    (used_percent) and the name it is published under (mem_used_percent, or a rename)."""

    section: str
    measure: str
    name: str
    unit: str | None


@dataclass(frozen=True)
class MetricsConfig:
    namespace: str
    append_dimensions: Mapping[str, str]
    aggregation_dimensions: tuple[tuple[str, ...], ...]
    measurements: tuple[Measurement, ...]
    disk_resources: tuple[str, ...]
    drop_device: bool
    ignored_sections: tuple[str, ...]


_MEASURES: dict[str, dict[str, str]] = {
    "mem": {
        "used": "Bytes",
        "used_percent": "Percent",
        "total": "Bytes",
        "available": "Bytes",
        "available_percent": "Percent",
    },
    "disk": {
        "used": "Bytes",
        "used_percent": "Percent",
        "total": "Bytes",
        "free": "Bytes",
        "inodes_free": "Count",
        "inodes_used": "Count",
        "inodes_total": "Count",
    },
}


@dataclass(frozen=True)
class AgentConfig:
    """What the agent collects, merged from the configurations it was given in order."""

    sources: tuple[str, ...]
    log_files: tuple[LogFileConfig, ...]
    metrics: MetricsConfig | None

    @classmethod
    def parse(cls, documents: Sequence[Mapping[str, Any]], sources: tuple[str, ...]) -> AgentConfig:
        log_files: list[LogFileConfig] = []
        metrics: dict[str, Any] = {}
        for document in documents:
            logs = document.get("logs") or {}
            default_stream = str(logs.get("log_stream_name") or "{instance_id}")
            files = (logs.get("logs_collected") or {}).get("files") or {}
            for entry in files.get("collect_list") or []:
                log_files.append(_log_file(entry, default_stream))
            section = document.get("metrics")
            if isinstance(section, dict):
                collected = {**metrics.get("metrics_collected", {})}
                collected.update(section.get("metrics_collected") or {})
                metrics = {**metrics, **section, "metrics_collected": collected}
        return cls(sources, tuple(log_files), _metrics(metrics) if metrics else None)


def _log_file(entry: Mapping[str, Any], default_stream: str) -> LogFileConfig:
    path = str(entry["file_path"])
    group = entry.get("log_group_name") or path.rsplit(".", 1)[0]
    filters = tuple(
        (str(f.get("type", "include")), re.compile(str(f.get("expression", ""))))
        for f in entry.get("filters") or []
    )
    return LogFileConfig(
        path, str(group), str(entry.get("log_stream_name") or default_stream), filters
    )


def _metrics(section: Mapping[str, Any]) -> MetricsConfig:
    measurements: list[Measurement] = []
    ignored: list[str] = []
    disk: Mapping[str, Any] = {}
    for name, settings in (section.get("metrics_collected") or {}).items():
        if name not in _MEASURES:
            ignored.append(name)
            continue
        if name == "disk":
            disk = settings
        for item in settings.get("measurement") or []:
            entry = item if isinstance(item, dict) else {"name": item}
            measure = str(entry["name"]).removeprefix(f"{name}_")
            if measure not in _MEASURES[name]:
                ignored.append(f"{name}_{measure}")
                continue
            published = str(entry.get("rename") or f"{name}_{measure}")
            unit = entry.get("unit") or _MEASURES[name][measure]
            measurements.append(Measurement(name, measure, published, unit))
    return MetricsConfig(
        namespace=str(section.get("namespace") or DEFAULT_NAMESPACE),
        append_dimensions=dict(section.get("append_dimensions") or {}),
        aggregation_dimensions=tuple(
            tuple(str(d) for d in names) for names in section.get("aggregation_dimensions") or []
        ),
        measurements=tuple(measurements),
        disk_resources=tuple(str(r) for r in disk.get("resources") or ["*"]),
        drop_device=bool(disk.get("drop_device", False)),
        ignored_sections=tuple(ignored),
    )


# ---------------------------------------------------------------------------
# following files


@dataclass(eq=False)
class _Followed:
    handle: BinaryIO
    offset: int
    partial: bytes = b""
    partial_round: int = -1  # the round the partial line last grew
    last_matched: float = 0.0


class FileFollower:
    """The new lines of the files one glob matches, across rotation and truncation (see
    the module's docstring). Files are told apart by (device, inode)."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._files: dict[tuple[int, int], _Followed] = {}
        self._round = 0

    def read(self, now: float) -> list[str]:
        """The complete lines written since the last call, oldest file content first."""
        self._round += 1
        for path in sorted(glob.glob(self.pattern, recursive=True)):
            self._take_in(path, now)
        lines: list[str] = []
        for key, followed in list(self._files.items()):
            lines += self._read(followed)
            gone = now - followed.last_matched > ROTATED_GRACE
            with contextlib.suppress(OSError):
                gone = gone or os.fstat(followed.handle.fileno()).st_nlink == 0
            if gone and not self._unread(followed):
                followed.handle.close()
                del self._files[key]
        return lines

    def close(self) -> None:
        for followed in self._files.values():
            followed.handle.close()
        self._files.clear()

    def _take_in(self, path: str, now: float) -> None:
        try:
            found = os.stat(path)
        except OSError:
            return
        if not os.path.isfile(path):
            return
        key = (found.st_dev, found.st_ino)
        followed = self._files.get(key)
        if followed is None:
            try:
                handle = open(path, "rb")  # noqa: SIM115  (kept open while followed)
            except OSError:
                return
            if os.fstat(handle.fileno()).st_ino != found.st_ino:
                handle.close()  # replaced between the two looks: next round
                return
            followed = self._files[key] = _Followed(handle, 0)
        followed.last_matched = now

    @staticmethod
    def _unread(followed: _Followed) -> bool:
        try:
            return os.fstat(followed.handle.fileno()).st_size > followed.offset
        except OSError:
            return False

    def _read(self, followed: _Followed) -> list[str]:
        try:
            size = os.fstat(followed.handle.fileno()).st_size
            if size < followed.offset:  # truncated in place: it starts over
                followed.offset, followed.partial = 0, b""
            followed.handle.seek(followed.offset)
            data = followed.handle.read(READ_LIMIT) if size > followed.offset else b""
        except OSError:
            return []
        followed.offset += len(data)
        if data:
            followed.partial_round = self._round
        text = followed.partial + data
        *complete, followed.partial = text.split(b"\n")
        if followed.partial and followed.partial_round < self._round - 1:
            # A line without its newline for a whole round: it is what was written.
            complete.append(followed.partial)
            followed.partial = b""
        return [line.rstrip(b"\r").decode("utf-8", errors="replace") for line in complete]


# ---------------------------------------------------------------------------
# the agent


@dataclass(frozen=True)
class InstanceIdentity:
    """What the agent knows of its instance (from the metadata service, on AWS)."""

    instance_id: str
    hostname: str
    address: str
    instance_type: str
    image_id: str

    def fill(self, name: str) -> str:
        """A log group or stream name with the agent's placeholders filled in."""
        for placeholder, value in (
            ("{instance_id}", self.instance_id),
            ("{hostname}", self.hostname),
            ("{local_hostname}", self.hostname),
            ("{ip_address}", self.address),
        ):
            name = name.replace(placeholder, value)
        return name

    def dimension(self, value: str) -> str | None:
        """An append_dimensions value: `${aws:InstanceId}` and its siblings filled in (None
        for one the sandbox cannot fill, such as an Auto Scaling group)."""
        known = {
            "${aws:InstanceId}": self.instance_id,
            "${aws:InstanceType}": self.instance_type,
            "${aws:ImageId}": self.image_id,
        }
        if value.startswith("${aws:"):
            return known.get(value)
        return value


@dataclass(frozen=True)
class HostView:
    """The parts of a sandbox host the agent reads: where a path inside it lies here (None
    outside its own folders), its folder, and its processes now."""

    local_path: Callable[[str], Path | None]
    directory: Path
    processes: Callable[[], list[int]]


class CloudWatchAgent:
    """One host's agent (see the module's docstring). `collect()` runs one round;
    `close()` lets go of the files it follows."""

    def __init__(
        self,
        config: AgentConfig,
        identity: InstanceIdentity,
        host: HostView,
        logs_backend: Any,
        cloudwatch_backend: Any,
    ) -> None:
        self.config = config
        self.identity = identity
        self._host = host
        self._logs = logs_backend
        self._cloudwatch = cloudwatch_backend
        self._followers: list[tuple[LogFileConfig, FileFollower, str, str]] = []
        self._warned: set[str] = set()
        self._last_stamp: dict[tuple[str, str], int] = {}
        for entry in config.log_files:
            local = host.local_path(entry.file_path)
            if local is None:
                self._warn_once(
                    entry.file_path,
                    "%s: the sandbox's CloudWatch agent does not read %s: a sandbox host has "
                    "only /opt, /tmp, /var/log and /etc/systemd/system of its own",
                    identity.instance_id,
                    entry.file_path,
                )
                continue
            group, stream = (
                identity.fill(entry.log_group_name),
                identity.fill(entry.log_stream_name),
            )
            self._followers.append((entry, FileFollower(str(local)), group, stream))
        if config.metrics is not None and config.metrics.ignored_sections:
            log.info(
                "%s: the sandbox's CloudWatch agent does not collect %s",
                identity.instance_id,
                ", ".join(config.metrics.ignored_sections),
            )

    def collect(self) -> None:
        """Ship what the followed files gained, and publish one value of each metric."""
        self.ship_logs()
        self.publish_metrics()

    def close(self) -> None:
        for _, follower, _, _ in self._followers:
            follower.close()

    # -- logs

    def ship_logs(self) -> None:
        batches: dict[tuple[str, str], list[dict[str, Any]]] = {}
        now = time.time()
        for entry, follower, group, stream in self._followers:
            if group not in self._logs.groups:
                self._warn_once(
                    f"group {group}",
                    "%s: log group %s does not exist: the lines of %s wait in their file",
                    self.identity.instance_id,
                    group,
                    entry.file_path,
                )
                continue
            stamp = max(int(now * 1000), self._last_stamp.get((group, stream), 0))
            self._last_stamp[(group, stream)] = stamp
            events = batches.setdefault((group, stream), [])
            for line in follower.read(now):
                if line and entry.accepts(line):
                    events.append({"timestamp": stamp, "message": _clip(line)})
        for (group, stream), events in batches.items():
            if not events:
                continue
            try:
                self._logs.ensure_log_stream(group, stream)
                _, rejected = self._logs.put_log_events(group, stream, events)
            except Exception as error:  # the group deleted meanwhile: these lines are lost
                log.warning(
                    "%s: shipping to %s failed: %s", self.identity.instance_id, group, error
                )
                continue
            if rejected:
                log.warning(
                    "%s: CloudWatch Logs rejected events: %s", self.identity.instance_id, rejected
                )

    # -- metrics

    def publish_metrics(self) -> None:
        metrics = self.config.metrics
        if metrics is None or not metrics.measurements:
            return
        base = {}
        for name, value in metrics.append_dimensions.items():
            filled = self.identity.dimension(str(value))
            if filled is not None:
                base[str(name)] = filled
        stamp = datetime.now(UTC).replace(tzinfo=None)  # moto keeps naive UTC times
        data: list[dict[str, Any]] = []
        wanted = {m.section for m in metrics.measurements}
        if "mem" in wanted:
            values = self._memory()
            for m in metrics.measurements:
                if m.section == "mem":
                    data += self._datum(metrics, m, values[m.measure], base, stamp)
        if "disk" in wanted:
            for path, local in self._disks(metrics):
                try:
                    values = self._disk(local)
                except OSError:
                    continue
                mount = usage.mount_of(local)
                dimensions = {**base, "path": path, "fstype": mount.fstype}
                if not metrics.drop_device:
                    dimensions["device"] = os.path.basename(mount.device)
                for m in metrics.measurements:
                    if m.section == "disk":
                        data += self._datum(metrics, m, values[m.measure], dimensions, stamp)
        if data:
            self._cloudwatch.put_metric_data(metrics.namespace, data)

    def _memory(self) -> dict[str, float]:
        total = usage.machine_memory()
        used = usage.memory_in_use(self._host.processes())
        return {
            "used": float(used),
            "used_percent": 100.0 * used / total,
            "total": float(total),
            "available": float(total - used),
            "available_percent": 100.0 * (total - used) / total,
        }

    def _disks(self, metrics: MetricsConfig) -> list[tuple[str, Path]]:
        disks = []
        for resource in metrics.disk_resources:
            if resource in ("/", "*"):
                disks.append(("/", self._host.directory))
            elif (local := self._host.local_path(resource)) is not None:
                disks.append((resource, local))
        return list(dict.fromkeys(disks))

    @staticmethod
    def _disk(local: Path) -> dict[str, float]:
        fs = usage.filesystem_usage(local)
        return {
            "used": float(fs.used),
            "used_percent": fs.used_percent,
            "total": float(fs.total),
            "free": float(fs.available),
            "inodes_free": float(fs.inodes_free),
            "inodes_used": float(fs.inodes - fs.inodes_free),
            "inodes_total": float(fs.inodes),
        }

    @staticmethod
    def _datum(
        metrics: MetricsConfig,
        measurement: Measurement,
        value: float,
        dimensions: Mapping[str, str],
        stamp: datetime,
    ) -> list[dict[str, Any]]:
        """The metric with all its dimensions, and a copy for each aggregation set it has
        (the agent publishes both)."""
        sets = [tuple(sorted(dimensions))]
        for names in metrics.aggregation_dimensions:
            if all(name in dimensions for name in names):
                sets.append(tuple(sorted(names)))
        data = []
        for names in dict.fromkeys(sets):
            datum: dict[str, Any] = {
                "MetricName": measurement.name,
                "Value": value,
                "Timestamp": stamp,
                "Dimensions": [{"Name": n, "Value": dimensions[n]} for n in names],
            }
            if measurement.unit:
                datum["Unit"] = measurement.unit
            data.append(datum)
        return data

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)


def _clip(line: str) -> str:
    encoded = line.encode("utf-8")
    if len(encoded) <= MAX_EVENT_BYTES:
        return line
    return encoded[:MAX_EVENT_BYTES].decode("utf-8", errors="ignore")
