"""Trouble in what a deployment emits: errors in its logs, anomalies in its metrics.

Pure functions over plain data, no AWS calls; `hivemind status` and Medic both use them.

* `detect_log_errors(events, language)` finds the errors in log lines and groups them
  by signature (the exception type and its message with the varying parts, numbers,
  ids, addresses, replaced), with counts. It knows each runtime's shape of a failure:
  Python tracebacks, Node errors with their `at` frames, Java exceptions with
  `Caused by:` chains, Go panics with their goroutine dumps, Ruby exceptions with their
  `from` lines; and, in any language, log lines at level ERROR/FATAL/CRITICAL (text,
  `level=error` or JSON) and HTTP 5xx responses in access logs. A multi-line failure
  shipped one line per event (the CloudWatch agent's default) counts once.
* `anomalies(series)` flags the points of a metric series far from the series' median,
  by the robust z-score 0.6745·(x - median)/MAD (Iglewicz and Hoaglin; |z| > 3.5).
* `saturation(series)` flags memory or disk used at 90% or more, however steady.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from hivemind.ops.logs import LogEvent
from hivemind.ops.metrics import MetricSeries

ErrorKind = Literal["exception", "panic", "log_error", "http_5xx"]
LANGUAGES: Final = ("python", "node", "java", "go", "ruby")
MAX_SAMPLE_LINES: Final = 30
MAX_SIGNATURE: Final = 200


class ErrorGroup(BaseModel):
    """Errors that are the same failure: one signature, how often, when, where."""

    model_config = ConfigDict(frozen=True)

    signature: str  # e.g. "ZeroDivisionError: division by zero"
    kind: ErrorKind
    error_type: str  # e.g. "ZeroDivisionError", "panic", "ERROR", "HTTP 500"
    count: int
    first_seen: datetime | None
    last_seen: datetime | None
    streams: tuple[str, ...]  # the log streams (instance ids) it came from
    location: str | None = None  # the app's own frame: "app.py:12 in divide"
    root_cause: str | None = None  # the innermost cause of a chained exception
    sample: tuple[str, ...]  # the lines of its most recent occurrence


class ErrorScan(BaseModel):
    """The result of one scan: the groups, most frequent first, and the indexes of the
    events that are part of an error (to highlight them)."""

    model_config = ConfigDict(frozen=True)

    groups: tuple[ErrorGroup, ...]
    error_events: frozenset[int]


class Anomaly(BaseModel):
    """A point of a metric series far from the series' median."""

    model_config = ConfigDict(frozen=True)

    series: str  # the series' label, e.g. "CPU % i-0abc"
    timestamp: datetime
    value: float
    median: float
    score: float  # the robust z-score
    direction: Literal["high", "low"]


# --- errors in logs -------------------------------------------------------------------


def detect_log_errors(
    events: Iterable[LogEvent | str], language: str | None = None
) -> list[ErrorGroup]:
    """The errors in `events` (log events, or bare lines), grouped by signature, the most
    frequent first. `language` (python, node, java, go, ruby) picks the runtime's
    failure shapes; None or another language looks for all of them."""
    return list(scan_log_errors(events, language).groups)


def scan_log_errors(events: Iterable[LogEvent | str], language: str | None = None) -> ErrorScan:
    """`detect_log_errors`, plus which events are part of an error."""
    lines = _lines([e if isinstance(e, LogEvent) else LogEvent(message=e) for e in events])
    detectors = _detectors(language)
    occurrences: list[_Occurrence] = []
    for stream_lines in _by_stream(lines):
        index = 0
        while index < len(stream_lines):
            found = _detect_at(stream_lines, index, detectors)
            if found is None:
                index += 1
                continue
            occurrence, index = found
            occurrences.append(occurrence)
    return ErrorScan(
        groups=tuple(_group(occurrences)),
        error_events=frozenset(line.event for o in occurrences for line in o.lines),
    )


@dataclass(frozen=True)
class _Line:
    event: int  # the index of its event in the input
    stream: str
    timestamp: datetime | None
    text: str


@dataclass
class _Occurrence:
    kind: ErrorKind
    error_type: str
    message: str
    lines: list[_Line]
    location: str | None = None
    root_cause: str | None = None
    signature: str = field(init=False)

    def __post_init__(self) -> None:
        message = normalize(self.message)
        text = f"{self.error_type}: {message}" if message else self.error_type
        self.signature = text if len(text) <= MAX_SIGNATURE else text[: MAX_SIGNATURE - 1] + "…"


# A detector looks at line `i` of one stream's lines and returns the failure that starts
# there with the index of the first line after it, or None.
_Found = tuple[_Occurrence, int]
_Detector = Callable[[Sequence[_Line], int], "_Found | None"]


def _lines(events: Sequence[LogEvent]) -> list[_Line]:
    return [
        _Line(index, event.stream, event.timestamp, text.rstrip("\r"))
        for index, event in enumerate(events)
        for text in event.message.split("\n")
    ]


def _by_stream(lines: list[_Line]) -> list[list[_Line]]:
    streams: dict[str, list[_Line]] = {}
    for line in lines:
        streams.setdefault(line.stream, []).append(line)
    return list(streams.values())


def _detect_at(lines: Sequence[_Line], i: int, detectors: Sequence[_Detector]) -> _Found | None:
    for detect in detectors:
        found = detect(lines, i)
        if found is not None:
            return found
    leveled = _level_line(lines[i].text)
    if leveled is not None:
        # A logger's error line and the traceback it logged with it ("ERROR Exception on
        # /boom [GET]", Java's `log.error("...", e)`) are one failure.
        if i + 1 < len(lines) and _together(lines[i], lines[i + 1]):
            for detect in detectors:
                following = detect(lines, i + 1) if detect in _LOGGED_WITH_A_MESSAGE else None
                if following is not None:
                    occurrence, after = following
                    occurrence.lines.insert(0, lines[i])
                    return occurrence, after
        level, message = leveled
        return _Occurrence("log_error", level, message, [lines[i]]), i + 1
    request = _http_5xx(lines[i].text)
    if request is not None:
        status, method, path = request
        return _Occurrence("http_5xx", f"HTTP {status}", f"{method} {path}", [lines[i]]), i + 1
    return None


def _together(first: _Line, second: _Line) -> bool:
    """Written together: no timestamps to tell, or at most a second apart."""
    if first.timestamp is None or second.timestamp is None:
        return True
    return abs((second.timestamp - first.timestamp).total_seconds()) <= 1.0


def _detectors(language: str | None) -> list[_Detector]:
    by_language: dict[str, list[_Detector]] = {
        "python": [_python_traceback],
        "node": [_node_error],
        "java": [_java_exception],
        "go": [_go_panic],
        "ruby": [_ruby_exception],
    }
    if language in by_language:
        return by_language[language]
    return [d for detectors in by_language.values() for d in detectors]


def _indented(text: str) -> bool:
    return text[:1] in (" ", "\t")


# Python ----------------------------------------------------------------------------------

_PY_TRACEBACK = re.compile(r"^\s*Traceback \(most recent call last\):\s*$")
_PY_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)(?:, in (.+))?$')
_PY_EXCEPTION = re.compile(r"^([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?::\s?(.*))?$")
_PY_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_PY_LIBRARY = ("site-packages", "dist-packages", "/lib/python", "<frozen")


def _python_traceback(lines: Sequence[_Line], i: int) -> _Found | None:
    if not _PY_TRACEBACK.match(lines[i].text):
        return None
    frames: list[tuple[str, str, str]] = []
    causes: list[str] = []
    error_type, message = "Traceback", "(cut off before the exception line)"
    j = i + 1
    while j < len(lines):
        text = lines[j].text
        frame = _PY_FRAME.match(text)
        if frame:
            frames.append((frame.group(1), frame.group(2), frame.group(3) or ""))
            j += 1
            continue
        if _indented(text) or not text.strip():
            j += 1
            continue
        exception = _PY_EXCEPTION.match(text)
        if exception is None:
            break
        error_type, message = exception.group(1), exception.group(2) or ""
        j += 1
        while j < len(lines) and _indented(lines[j].text) and lines[j].text.strip():
            j += 1  # the message's continuation lines
        chained = _python_chain(lines, j)
        if chained is None:
            break
        causes.append(error_type)
        j = chained
    own = [f for f in frames if not any(part in f[0] for part in _PY_LIBRARY)] or frames
    location = None
    if own:
        path, number, function = own[-1]
        location = f"{path}:{number}" + (f" in {function}" if function else "")
    return (
        _Occurrence(
            "exception",
            error_type,
            message,
            list(lines[i:j]),
            location=location,
            root_cause=causes[0] if causes else None,
        ),
        j,
    )


def _python_chain(lines: Sequence[_Line], j: int) -> int | None:
    """The index after "During handling ... / Traceback ..." at `j` (blank lines
    allowed between), or None when the traceback does not go on."""
    k = j
    while k < len(lines) and not lines[k].text.strip():
        k += 1
    if k >= len(lines) or lines[k].text.strip() not in _PY_CHAINED:
        return None
    k += 1
    while k < len(lines) and not lines[k].text.strip():
        k += 1
    if k < len(lines) and _PY_TRACEBACK.match(lines[k].text):
        return k + 1
    return None


# Node ------------------------------------------------------------------------------------

_NODE_ERROR = re.compile(
    r"^(?:Uncaught )?((?:[A-Z][A-Za-z]*)?Error|[A-Z]\w*Exception)(?: \[([A-Z0-9_]+)\])?: (.*)$"
)
_NODE_UNHANDLED = re.compile(
    r"^(?:\(node:\d+\) UnhandledPromiseRejectionWarning: |\[UnhandledPromiseRejection: )(.*?)\]?$"
)
_NODE_FRAME = re.compile(r"^\s+at (?:(.+?) \()?(.+?):(\d+):\d+\)?\s*\{?$")
_NODE_LIBRARY = ("node_modules", "node:", "internal/")


def _node_error(lines: Sequence[_Line], i: int) -> _Found | None:
    text = lines[i].text
    header = _NODE_ERROR.match(text)
    if header is not None:
        error_type = header.group(1) + (f" [{header.group(2)}]" if header.group(2) else "")
        message = header.group(3)
    else:
        unhandled = _NODE_UNHANDLED.match(text)
        if unhandled is None:
            return None
        error_type, message = "UnhandledPromiseRejection", unhandled.group(1)
    frames: list[tuple[str, str, str]] = []
    j = i + 1
    while j < len(lines):
        frame = _NODE_FRAME.match(lines[j].text)
        if frame is None:
            break
        frames.append((frame.group(2), frame.group(3), frame.group(1) or ""))
        j += 1
    if frames and lines[j - 1].text.rstrip().endswith("{"):
        # The error's own properties: `{ errno: -111, code: 'ECONNREFUSED', ... }`.
        while j < len(lines) and lines[j].text.strip() != "}":
            j += 1
        j = min(j + 1, len(lines))
    own = [f for f in frames if not any(part in f[0] for part in _NODE_LIBRARY)] or frames
    location = None
    if own:
        path, number, function = own[0]
        location = f"{path}:{number}" + (f" in {function}" if function else "")
    return _Occurrence("exception", error_type, message, list(lines[i:j]), location=location), j


# Java ------------------------------------------------------------------------------------

_JAVA_EXCEPTION = re.compile(
    r'^(?:Exception in thread "[^"]*" )?'
    r"((?:[a-zA-Z_$][\w$]*\.)+[A-Za-z_$][\w$]*(?:Exception|Error|Throwable))(?::\s?(.*))?$"
)
_JAVA_FRAME = re.compile(r"^\s+at ([\w$.<>/]+)\((?:([^:)]+):(\d+)|[^)]*)\)")
_JAVA_CAUSED = re.compile(r"^\s*(?:Caused by|Suppressed): ([\w$.]+)(?::\s?(.*))?$")
_JAVA_MORE = re.compile(r"^\s+\.\.\. \d+ (?:more|common frames omitted)")
_JAVA_LIBRARY = (
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "org.springframework.",
    "org.apache.",
)


def _java_exception(lines: Sequence[_Line], i: int) -> _Found | None:
    header = _JAVA_EXCEPTION.match(lines[i].text)
    if header is None:
        return None
    frames: list[tuple[str, str, str]] = []
    causes: list[str] = []
    j = i + 1
    while j < len(lines):
        text = lines[j].text
        frame = _JAVA_FRAME.match(text)
        if frame:
            if not causes:  # where the reported exception was thrown
                frames.append((frame.group(1), frame.group(2) or "", frame.group(3) or ""))
        elif (caused := _JAVA_CAUSED.match(text)) is not None:
            causes.append(caused.group(1) + (f": {caused.group(2)}" if caused.group(2) else ""))
        elif not _JAVA_MORE.match(text):
            break
        j += 1
    own = [f for f in frames if not f[0].startswith(_JAVA_LIBRARY)] or frames
    location = None
    if own:
        method, path, number = own[0]
        location = f"{path}:{number} in {method}" if path else method
    return (
        _Occurrence(
            "exception",
            header.group(1),
            header.group(2) or "",
            list(lines[i:j]),
            location=location,
            root_cause=causes[-1] if causes else None,
        ),
        j,
    )


# Go --------------------------------------------------------------------------------------

_GO_PANIC = re.compile(r"^(?:.*\bhttp: )?panic(?: serving \S+)?: (.*?)(?: \[recovered\])?$")
_GO_FATAL = re.compile(r"^fatal error: (.*)$")
_GO_DUMP = re.compile(
    r"^(?:goroutine \d+ \[[^\]]*\]:|\[signal .*\]|created by .*|exit status \d+|"
    r"\S+\(.*\)|\s+\S+\.go:\d+.*|\s*)$"
)
_GO_FILE = re.compile(r"^\s+(\S+\.go):(\d+)")
_GO_LIBRARY = ("/usr/local/go/", "/go/src/", "/pkg/mod/", "runtime/")


def _go_panic(lines: Sequence[_Line], i: int) -> _Found | None:
    text = lines[i].text
    panic = _GO_PANIC.match(text)
    fatal = None if panic else _GO_FATAL.match(text)
    if panic is None and fatal is None:
        return None
    j = i + 1
    files: list[tuple[str, str]] = []
    while j < len(lines) and _GO_DUMP.match(lines[j].text):
        found = _GO_FILE.match(lines[j].text)
        if found:
            files.append((found.group(1), found.group(2)))
        j += 1
    while j > i + 1 and not lines[j - 1].text.strip():
        j -= 1  # blank lines after the dump belong to what follows
    own = [f for f in files if not any(part in f[0] for part in _GO_LIBRARY)] or files
    location = f"{own[0][0]}:{own[0][1]}" if own else None
    message = (panic or fatal).group(1)  # type: ignore[union-attr]
    kind_name = "panic" if panic else "fatal error"
    return _Occurrence("panic", kind_name, message, list(lines[i:j]), location=location), j


# Ruby ------------------------------------------------------------------------------------

_RUBY_UNCAUGHT = re.compile(
    r"^(\S+?):(\d+):in [`'](.*?)': (.*) \(([A-Z]\w*(?:::[A-Z]\w*)*)\)$"
)  # app.rb:10:in `divide': divided by 0 (ZeroDivisionError)
_RUBY_RAILS = re.compile(r"^([A-Z]\w*(?:::[A-Z]\w*)*) \((.*)\):$")  # NoMethodError (...):
_RUBY_RACK = re.compile(r"^([A-Z]\w*(?:::[A-Z]\w*)*(?:Error|Exception)) - (.*?):?$")
_RUBY_FRAME = re.compile(r"^\s*(?:from )?(\S+?\.rb):(\d+):in [`'](.*?)'$")
_RUBY_LIBRARY = ("/gems/", "/ruby/", "<internal:")


def _ruby_exception(lines: Sequence[_Line], i: int) -> _Found | None:
    text = lines[i].text
    frames: list[tuple[str, str, str]] = []
    uncaught = _RUBY_UNCAUGHT.match(text)
    if uncaught is not None:
        error_type, message = uncaught.group(5), uncaught.group(4)
        frames.append((uncaught.group(1), uncaught.group(2), uncaught.group(3)))
    else:
        header = _RUBY_RAILS.match(text) or _RUBY_RACK.match(text)
        if header is None:
            return None
        error_type, message = header.group(1), header.group(2)
    j = i + 1
    while j < len(lines):
        frame = _RUBY_FRAME.match(lines[j].text)
        if frame is None and lines[j].text.strip():
            break
        if frame is not None:
            frames.append((frame.group(1), frame.group(2), frame.group(3)))
        j += 1
    while j > i + 1 and not lines[j - 1].text.strip():
        j -= 1
    if uncaught is None and len(frames) == 0 and _RUBY_RACK.match(text) is None:
        return None  # "Word (words):" alone is too common to be a Rails error
    own = [f for f in frames if not any(part in f[0] for part in _RUBY_LIBRARY)] or frames
    location = None
    if own:
        path, number, function = own[0]
        location = f"{path}:{number} in {function}"
    return _Occurrence("exception", error_type, message, list(lines[i:j]), location=location), j


# Any language ----------------------------------------------------------------------------

_LEVEL = re.compile(
    r"(?:^|[\s\[(|<,])(ERROR|FATAL|CRITICAL|CRIT|SEVERE|PANIC|EMERG|EMERGENCY)(?=[\]):|>,\s]|$)"
)
_LEVEL_PAIR = re.compile(
    r"\b(?:level|severity|lvl)=\"?(error|err|fatal|panic|critical|crit|emerg)\b", re.I
)
_MESSAGE_PAIR = re.compile(r"\b(?:msg|message|error|err)=(\"(?:[^\"\\]|\\.)*\"|\S+)")
_JSON_LEVELS = ("error", "err", "fatal", "panic", "critical", "crit", "alert", "emerg")
_PY_LOGGER = re.compile(r"^:[\w.]+:")
_LEAD = re.compile(r"^(?:\s|\[[^\]]*\]|-{2,3}|\d+(?=\s)|[:\-|>\])])+")


def _level_line(text: str) -> tuple[str, str] | None:
    """(level, message) of a log line at error level or worse, or None."""
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        return _json_level(stripped)
    pair = _LEVEL_PAIR.search(text)
    if pair is not None:
        message = _MESSAGE_PAIR.search(text)
        value = message.group(1).strip('"') if message else text
        return pair.group(1).upper(), value
    level = _LEVEL.search(text)
    if level is None:
        return None
    rest = text[level.end() :]
    logger = _PY_LOGGER.match(rest)  # Python logging's default: "ERROR:app.db:the message"
    rest = _LEAD.sub("", rest[logger.end() :] if logger else rest)
    if " : " in rest:  # Spring Boot: "ERROR 1 --- [main] c.e.App : the message"
        rest = rest.split(" : ", 1)[1]
    elif " -- " in rest[:60]:  # Ruby's Logger: "ERROR -- progname: the message"
        rest = rest.split(" -- ", 1)[1].split(": ", 1)[-1]
    return level.group(1), rest.strip()


def _json_level(text: str) -> tuple[str, str] | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    level = next(
        (record[k] for k in ("level", "severity", "levelname", "log.level") if k in record), None
    )
    if isinstance(level, str) and level.lower() in _JSON_LEVELS:
        name = level.upper()
    elif isinstance(level, int | float) and not isinstance(level, bool) and level >= 50:
        name = "FATAL" if level >= 60 else "ERROR"  # pino and bunyan: 50 error, 60 fatal
    else:
        return None
    message = next(
        (str(record[k]) for k in ("msg", "message", "error", "err") if record.get(k)), ""
    )
    return name, message


_HTTP_5XX = re.compile(
    r'"(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+?)(?:\?\S*)? HTTP/[\d.]+" (5\d\d)\b'
)  # common/combined log format (gunicorn, nginx, puma)
_HTTP_5XX_DEV = re.compile(
    r"^(?:\S+ )?(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+?)(?:\?\S*)? (5\d\d) [\d.]+ ?ms"
)  # morgan "dev"/"tiny"


def _http_5xx(text: str) -> tuple[str, str, str] | None:
    found = _HTTP_5XX.search(text)
    if found is not None:
        return found.group(3), found.group(1), found.group(2)
    dev = _HTTP_5XX_DEV.match(text)
    if dev is not None:
        return dev.group(3), dev.group(1), dev.group(2)
    return None


# The failures a logger writes after its own message line (Python's logging.exception,
# a Java logger given the exception); a Go panic or a Node error stands alone.
_LOGGED_WITH_A_MESSAGE: Final[tuple[_Detector, ...]] = (_python_traceback, _java_exception)


# Grouping --------------------------------------------------------------------------------

_VARYING: Final = (
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), "<id>"),
    (
        re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
        "<time>",
    ),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.I), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b", re.I), "<hex>"),
    (re.compile(r"(?<![A-Za-z_<])\d+(?:\.\d+)?"), "<n>"),
)


def normalize(message: str) -> str:
    """A message with what varies between occurrences of one failure (numbers, ids,
    hex addresses, IP addresses, timestamps) replaced by placeholders."""
    text = " ".join(message.split())
    for pattern, placeholder in _VARYING:
        text = pattern.sub(placeholder, text)
    return text


def _group(occurrences: list[_Occurrence]) -> list[ErrorGroup]:
    by_signature: dict[tuple[ErrorKind, str], list[_Occurrence]] = {}
    for occurrence in occurrences:
        by_signature.setdefault((occurrence.kind, occurrence.signature), []).append(occurrence)
    groups = []
    for (kind, signature), found in by_signature.items():
        moments = [o.lines[0].timestamp for o in found if o.lines[0].timestamp is not None]
        latest = found[-1]
        groups.append(
            ErrorGroup(
                signature=signature,
                kind=kind,
                error_type=latest.error_type,
                count=len(found),
                first_seen=min(moments) if moments else None,
                last_seen=max(moments) if moments else None,
                streams=tuple(sorted({o.lines[0].stream for o in found if o.lines[0].stream})),
                location=latest.location,
                root_cause=latest.root_cause,
                sample=tuple(line.text for line in latest.lines[:MAX_SAMPLE_LINES]),
            )
        )
    groups.sort(key=lambda g: (-g.count, -(g.last_seen.timestamp() if g.last_seen else 0)))
    return groups


# --- anomalies in metrics -------------------------------------------------------------

# 0.6745 is the 0.75 quantile of the standard normal: MAD/0.6745 estimates sigma.
_MAD_SCALE: Final = 0.6745
# When more than half the points are equal the MAD is 0; the mean absolute deviation
# times √(π/2) ≈ 1.2533 then estimates sigma (the fallback IBM's SPSS documents).
_MEAN_AD_SCALE: Final = 1.253314
THRESHOLD: Final = 3.5
MIN_POINTS: Final = 8


def robust_z_scores(values: Sequence[float]) -> list[float]:
    """Each value's robust z-score: 0.6745·(x - median)/MAD, or, when the MAD is 0,
    (x - median)/(1.2533·mean absolute deviation); all 0 when every value is equal."""
    if not values:
        return []
    median = statistics.median(values)
    deviations = [abs(v - median) for v in values]
    mad = statistics.median(deviations)
    if mad > 0:
        return [_MAD_SCALE * (v - median) / mad for v in values]
    mean_ad = math.fsum(deviations) / len(values)
    if mean_ad == 0:
        return [0.0] * len(values)
    return [(v - median) / (_MEAN_AD_SCALE * mean_ad) for v in values]


def anomalies(
    series: MetricSeries,
    *,
    threshold: float = THRESHOLD,
    min_points: int = MIN_POINTS,
    min_delta: float | None = None,
) -> list[Anomaly]:
    """The points of `series` whose robust z-score is beyond ±`threshold` and that
    differ from the median by at least `min_delta` (default: the series' own, e.g. 5
    points of CPU %, so a flat 1% with one 1.5% is not news). Fewer than `min_points`
    points say nothing. Oldest first."""
    values = list(series.values)
    if len(values) < min_points:
        return []
    floor = series.min_delta if min_delta is None else min_delta
    median = statistics.median(values)
    found = []
    for moment, value, score in zip(
        series.timestamps, values, robust_z_scores(values), strict=True
    ):
        if abs(score) > threshold and abs(value - median) >= floor:
            found.append(
                Anomaly(
                    series=series.label,
                    timestamp=moment,
                    value=value,
                    median=median,
                    score=round(score, 2),
                    direction="high" if score > 0 else "low",
                )
            )
    return found


# --- capacity running out -------------------------------------------------------------

# A share of a fixed capacity (memory, the root volume) at or above this is running out,
# whatever the series' history: a flat 97% has no anomaly but is the trouble.
FULL_PERCENT: Final = 90.0
CAPACITY_METRICS: Final = ("mem_used_percent", "disk_used_percent")


class Saturation(BaseModel):
    """A capacity metric's highest point in the window, at or above `limit` percent."""

    model_config = ConfigDict(frozen=True)

    series: str  # the series' label, e.g. "memory % i-0abc"
    timestamp: datetime
    value: float
    limit: float


def saturation(series: MetricSeries, *, limit: float = FULL_PERCENT) -> Saturation | None:
    """The series' peak when it is a capacity metric (memory or disk used %) that reached
    `limit`; None otherwise."""
    if series.query.metric not in CAPACITY_METRICS or not series.values:
        return None
    peak = max(range(len(series.values)), key=lambda index: series.values[index])
    if series.values[peak] < limit:
        return None
    return Saturation(
        series=series.label,
        timestamp=series.timestamps[peak],
        value=series.values[peak],
        limit=limit,
    )
