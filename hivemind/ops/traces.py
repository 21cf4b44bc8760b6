"""Recent requests of a deployment as X-Ray traced them.

With `--xray` the instances run the X-Ray daemon and the stack has an X-Ray group whose
filter is `service("<app>")`. GetTraceSummaries lists the traces of a window (in
slices of at most 6 hours, newest first); BatchGetTraces gives their segments, and the
traces with a segment of the app's service are the deployment's (the group's filter,
applied here). A summary that names its services and not the app's is skipped without
being fetched.
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from hivemind.ops.api import explained
from hivemind.ops.window import Window

MAX_TRACES: Final = 100
_SLICE: Final = timedelta(hours=6)  # the longest time range GetTraceSummaries takes
_BATCH: Final = 5  # trace ids per BatchGetTraces call
_MAX_PAGES: Final = 20  # of summaries per slice
_NAMES_SHOWN: Final = 5

TRACING_OFF: Final = (
    "tracing is off for this deployment: deploy it with --xray (or `xray: true` in "
    "hivemind.yaml) to run the X-Ray daemon on the instances and trace requests"
)


class TracedRequest(BaseModel):
    """One traced request, from the app's segment of the trace."""

    model_config = ConfigDict(frozen=True)

    trace_id: str
    start: datetime
    duration: float  # seconds
    method: str | None
    url: str | None
    status: int | None
    fault: bool  # a 5xx: the app failed
    error: bool  # a 4xx: the client's request failed
    throttle: bool  # a 429
    cause: str | None  # the recorded exception: "ZeroDivisionError: division by zero"


class TracesReport(BaseModel):
    """The traced requests of a window, newest first, or why there are none."""

    model_config = ConfigDict(frozen=True)

    enabled: bool
    group: str | None
    service: str
    requests: tuple[TracedRequest, ...] = ()
    limited: bool = False  # more traces than MAX_TRACES: the newest were read
    note: str = ""

    @property
    def faults(self) -> int:
        return sum(r.fault for r in self.requests)

    @property
    def errors(self) -> int:
        return sum(r.error for r in self.requests)

    def percentile(self, share: float) -> float | None:
        durations = sorted(r.duration for r in self.requests)
        if not durations:
            return None
        if len(durations) == 1:
            return durations[0]
        return statistics.quantiles(durations, n=100, method="inclusive")[int(share * 100) - 1]


def tracing_off(service: str) -> TracesReport:
    return TracesReport(enabled=False, group=None, service=service, note=TRACING_OFF)


def recent_traces(
    xray: Any, service: str, group: str | None, window: Window, *, limit: int = MAX_TRACES
) -> TracesReport:
    """The requests to `service` traced in `window`, newest first (at most `limit`)."""
    where = f"X-Ray group {group}" if group else f"X-Ray service {service}"
    with explained(
        what="could not read the deployment's traces",
        action="xray:GetTraceSummaries",
        where=where,
    ):
        candidates, limited, others = _candidate_ids(xray, service, window, limit)
    requests: list[TracedRequest] = []
    with explained(
        what="could not read the deployment's traces", action="xray:BatchGetTraces", where=where
    ):
        for first in range(0, len(candidates), _BATCH):
            page = xray.batch_get_traces(TraceIds=candidates[first : first + _BATCH])
            for trace in page.get("Traces", []):
                documents = _documents(trace)
                request = _request(trace, documents, service)
                if request is not None:
                    requests.append(request)
                else:
                    others |= {str(d["name"]) for d in documents if d.get("name")}
    requests.sort(key=lambda r: r.start, reverse=True)
    note = ""
    if not requests:
        note = f"no traced requests to {service} in the last {window.since}"
        if others:
            # The group selects service("<app>"): an app that names its segments otherwise
            # is traced, but not as this deployment.
            named = ", ".join(sorted(others)[:_NAMES_SHOWN])
            note += (
                f"; the window has traces of {named}: the app's X-Ray SDK must name its "
                f"segments {service} (AWS_XRAY_TRACING_NAME={service})"
            )
    return TracesReport(
        enabled=True,
        group=group,
        service=service,
        requests=tuple(requests),
        limited=limited,
        note=note,
    )


def _candidate_ids(
    xray: Any, service: str, window: Window, limit: int
) -> tuple[list[str], bool, set[str]]:
    """Trace ids of the window, newest slice first; whether there were more; and the
    services named by the summaries skipped as not the app's."""
    ids: list[str] = []
    others: set[str] = set()
    limited = False
    end = window.end
    while end > window.start:
        start = max(window.start, end - _SLICE)
        request: dict[str, Any] = {"StartTime": start, "EndTime": end, "Sampling": False}
        found: list[dict[str, Any]] = []
        for _ in range(_MAX_PAGES):
            page = xray.get_trace_summaries(**request)
            found += page.get("TraceSummaries", [])
            token = page.get("NextToken")
            if not token:
                break
            request["NextToken"] = token
        else:
            limited = True  # a busy account: the newest of what was read
        found.sort(key=_summary_start, reverse=True)
        for summary in found:
            names = {
                name
                for s in summary.get("ServiceIds", [])
                for name in [s.get("Name"), *s.get("Names", [])]
                if name
            }
            if names and service not in names:
                others |= names  # the summary says whose it is, and it is not ours
                continue
            if len(ids) == limit:
                return ids, True, others
            ids.append(summary["Id"])
        end = start
    return ids, limited, others


def _summary_start(summary: dict[str, Any]) -> float:
    start = summary.get("StartTime")
    if isinstance(start, datetime):
        return start.timestamp()
    # A trace id is 1-<start time, hex seconds>-<random>.
    try:
        return float(int(summary["Id"].split("-")[1], 16))
    except (IndexError, ValueError):
        return 0.0


def _documents(trace: dict[str, Any]) -> list[dict[str, Any]]:
    documents = []
    for segment in trace.get("Segments", []):
        try:
            document = json.loads(segment["Document"])
        except (KeyError, ValueError):
            continue
        if isinstance(document, dict):
            documents.append(document)
    return documents


def _request(
    trace: dict[str, Any], documents: list[dict[str, Any]], service: str
) -> TracedRequest | None:
    """The app's segment of `trace` as a request, or None when the app is not in it."""
    ours = [d for d in documents if d.get("name") == service]
    if not ours:
        return None
    # The entry segment: the one the others hang under (no parent, or the earliest).
    segment = min(ours, key=lambda d: (d.get("parent_id") is not None, d.get("start_time", 0)))
    http = segment.get("http") or {}
    status = (http.get("response") or {}).get("status")
    start, end = segment.get("start_time", 0.0), segment.get("end_time")
    return TracedRequest(
        trace_id=str(trace.get("Id") or segment.get("trace_id")),
        start=datetime.fromtimestamp(float(start), UTC),
        duration=max(0.0, float(end) - float(start)) if end is not None else 0.0,
        method=(http.get("request") or {}).get("method"),
        url=(http.get("request") or {}).get("url"),
        status=int(status) if isinstance(status, int | str) and str(status).isdigit() else None,
        fault=bool(segment.get("fault")),
        error=bool(segment.get("error")),
        throttle=bool(segment.get("throttle")),
        cause=_cause(segment),
    )


def _cause(segment: dict[str, Any]) -> str | None:
    """The first exception recorded in the segment or, depth first, its subsegments."""
    cause = segment.get("cause")
    if isinstance(cause, dict):
        for exception in cause.get("exceptions") or []:
            if isinstance(exception, dict):
                text = ": ".join(
                    str(p) for p in (exception.get("type"), exception.get("message")) if p
                )
                if text:
                    return text
    for subsegment in segment.get("subsegments") or []:
        if isinstance(subsegment, dict):
            found = _cause(subsegment)
            if found:
                return found
    return None
