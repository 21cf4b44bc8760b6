"""Finding trouble in what a deployment emits: errors in real-looking logs of each runtime,
anomalies in metric series, sparklines, windows. Pure functions, no AWS."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from hivemind.errors import BadInputError, HiveMindError
from hivemind.ops.dashboard import dashboard_url
from hivemind.ops.detect import (
    ErrorGroup,
    anomalies,
    detect_log_errors,
    normalize,
    robust_z_scores,
    saturation,
    scan_log_errors,
)
from hivemind.ops.logs import LogEvent, fetch_log_events
from hivemind.ops.metrics import MetricQuery, MetricSeries
from hivemind.ops.sparkline import bucketed, sparkline
from hivemind.ops.watched import load_balancer_dimension
from hivemind.ops.window import parse_duration, window

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

FLASK = """\
[2026-12-01 10:00:00 +0000] [7] [INFO] Booting worker with pid: 7
[2026-12-01 10:00:05,123] ERROR in app: Exception on /divide [GET]
Traceback (most recent call last):
  File "/opt/shop/venv/lib/python3.12/site-packages/flask/app.py", line 1511, in wsgi_app
    response = self.full_dispatch_request()
  File "/opt/shop/releases/r1/app.py", line 42, in divide
    return str(1 / int(request.args["n"]))
               ~~^~~~~~~~~~~~~~~~~~~~~~~~~
ZeroDivisionError: division by zero
10.0.0.5 - - [01/Dec/2026:10:00:05 +0000] "GET /divide?n=0 HTTP/1.1" 500 265 "-" "curl/8.0"
10.0.0.5 - - [01/Dec/2026:10:00:06 +0000] "GET /health HTTP/1.1" 200 2 "-" "ELB-HealthChecker/2.0"
ERROR:app.db:could not connect to 10.0.1.17:5432 after 3 attempts
WARNING:root:slow request: 1200 ms
Traceback (most recent call last):
  File "/opt/shop/app.py", line 10, in load
    return cache[key]
KeyError: 'user-42'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/opt/shop/app.py", line 12, in load
    raise LookupError(f"no user {key}")
LookupError: no user user-42
INFO:werkzeug:done
"""


def events(text: str, stream: str = "i-0aaa", start: datetime = T0) -> list[LogEvent]:
    """One event per line, a second apart: how the CloudWatch agent ships a log file."""
    return [
        LogEvent(timestamp=start + timedelta(seconds=n), stream=stream, message=line)
        for n, line in enumerate(text.splitlines())
    ]


def by_signature(found: Iterable[ErrorGroup]) -> dict[str, ErrorGroup]:
    return {g.signature: g for g in found}


def test_python_tracebacks_are_one_error_each_with_the_apps_own_frame() -> None:
    groups = by_signature(detect_log_errors(events(FLASK), "python"))
    assert set(groups) == {
        "ZeroDivisionError: division by zero",
        "HTTP 500: GET /divide",
        "ERROR: could not connect to <ip> after <n> attempts",
        "LookupError: no user user-<n>",
    }
    division = groups["ZeroDivisionError: division by zero"]
    assert division.kind == "exception" and division.count == 1
    # The frame in the app, not Flask's (site-packages).
    assert division.location == "/opt/shop/releases/r1/app.py:42 in divide"
    # The logger's line and the traceback it logged are one failure.
    assert division.sample[0].endswith("ERROR in app: Exception on /divide [GET]")
    assert division.sample[-1] == "ZeroDivisionError: division by zero"
    assert division.first_seen == T0 + timedelta(seconds=1)
    chained = groups["LookupError: no user user-<n>"]
    assert chained.root_cause == "KeyError"
    assert chained.location == "/opt/shop/app.py:12 in load"


def test_the_same_failure_on_several_instances_is_one_group_with_counts() -> None:
    crash = "\n".join(FLASK.splitlines()[1:9])  # the ZeroDivisionError, with its header
    found = detect_log_errors(
        [
            *events(crash, "i-0aaa", T0),
            *events(crash, "i-0bbb", T0 + timedelta(minutes=1)),
            *events(crash, "i-0aaa", T0 + timedelta(minutes=2)),
        ],
        "python",
    )
    assert len(found) == 1
    group = found[0]
    assert (group.count, group.streams) == (3, ("i-0aaa", "i-0bbb"))
    assert group.first_seen == T0 + timedelta(seconds=0)
    assert group.last_seen == T0 + timedelta(minutes=2)


def test_a_multi_line_event_is_read_like_lines_shipped_one_by_one() -> None:
    one_event = [LogEvent(timestamp=T0, stream="i-0aaa", message=FLASK)]
    assert {g.signature for g in detect_log_errors(one_event, "python")} == {
        g.signature for g in detect_log_errors(events(FLASK), "python")
    }


def test_node_errors_with_frames_properties_json_logs_and_morgan() -> None:
    log = """\
Server listening on 3000
TypeError: Cannot read properties of undefined (reading 'name')
    at /app/server.js:17:24
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
GET /users/17 500 3.271 ms - 148
GET /users/18 200 1.100 ms - 48
Error: connect ECONNREFUSED 127.0.0.1:5432
    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {
  errno: -111,
  code: 'ECONNREFUSED',
  port: 5432
}
{"level":50,"time":1700000000000,"pid":1,"msg":"request failed id=8812"}
{"level":30,"time":1700000000000,"pid":1,"msg":"request ok"}
Server ready"""
    scan = scan_log_errors(events(log), "node")
    groups = by_signature(list(scan.groups))
    assert set(groups) == {
        "TypeError: Cannot read properties of undefined (reading 'name')",
        "HTTP 500: GET /users/<n>",
        "Error: connect ECONNREFUSED <ip>",
        "ERROR: request failed id=<n>",
    }
    assert groups["TypeError: Cannot read properties of undefined (reading 'name')"].location == (
        "/app/server.js:17"
    )
    # The error's properties block belongs to it; the lines after it do not.
    assert len(groups["Error: connect ECONNREFUSED <ip>"].sample) == 6
    assert scan.error_events == {1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12}


def test_java_exceptions_with_their_causes() -> None:
    log = """\
2026-12-01 10:00:00.000  INFO 1 --- [main] com.shop.App : Started App in 2.1 seconds
2026-12-01 10:00:01.000 ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet] : \
Servlet.service() threw exception
java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null
\tat com.shop.UserController.show(UserController.java:25)
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)
Caused by: java.sql.SQLException: Connection refused
\tat org.postgresql.Driver.connect(Driver.java:300)
\t... 12 more
Exception in thread "main" java.lang.IllegalStateException: boom
\tat com.shop.App.main(App.java:9)"""
    groups = by_signature(detect_log_errors(events(log), "java"))
    assert set(groups) == {
        'java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null',
        "java.lang.IllegalStateException: boom",
    }
    npe = groups[
        'java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null'
    ]
    assert npe.location == "UserController.java:25 in com.shop.UserController.show"
    assert npe.root_cause == "java.sql.SQLException: Connection refused"
    assert "Servlet.service() threw exception" in npe.sample[0]


def test_go_panics_recovered_or_not_and_logfmt_errors() -> None:
    log = """\
2026/12/01 10:00:00 listening on :8080
2026/12/01 10:00:01 http: panic serving 127.0.0.1:51234: runtime error: index out of range [5] \
with length 3
goroutine 6 [running]:
net/http.(*conn).serve.func1()
\t/usr/local/go/src/net/http/server.go:1868 +0xb9
main.handler({0x7a1b28, 0xc0000e0000}, 0x0?)
\t/app/main.go:21 +0x65
time=2026-12-01T10:00:02Z level=error msg="db ping failed" err="connection refused"
panic: something bad

goroutine 1 [running]:
main.main()
\t/app/main.go:30 +0x1d
exit status 2"""
    groups = by_signature(detect_log_errors(events(log), "go"))
    assert set(groups) == {
        "panic: runtime error: index out of range [<n>] with length <n>",
        "ERROR: db ping failed",
        "panic: something bad",
    }
    assert groups["panic: runtime error: index out of range [<n>] with length <n>"].location == (
        "/app/main.go:21"
    )
    assert groups["panic: something bad"].sample[-1] == "exit status 2"


def test_ruby_uncaught_rails_and_logger_errors() -> None:
    log = """\
Puma starting in single mode...
app.rb:10:in `/': divided by 0 (ZeroDivisionError)
\tfrom app.rb:10:in `divide'
\tfrom app.rb:20:in `<main>'
NoMethodError (undefined method `name' for nil:NilClass):

app/controllers/users_controller.rb:5:in `show'
/usr/local/bundle/gems/actionpack-7.1.0/lib/action_controller/metal/implicit_render.rb:6:in `x'
E, [2026-12-01T10:00:00.000000 #1] ERROR -- : Redis::CannotConnectError: connection refused
I, [2026-12-01T10:00:00.000000 #1]  INFO -- : Completed 200 OK"""
    groups = by_signature(detect_log_errors(events(log), "ruby"))
    assert set(groups) == {
        "ZeroDivisionError: divided by <n>",
        "NoMethodError: undefined method `name' for nil:NilClass",
        "ERROR: Redis::CannotConnectError: connection refused",
    }
    assert groups["NoMethodError: undefined method `name' for nil:NilClass"].location == (
        "app/controllers/users_controller.rb:5 in show"
    )


def test_ordinary_lines_are_not_errors() -> None:
    log = """\
INFO processed 120 requests, 0 errors
DEBUG error_count=0 retries=0
Configured error handler for /api
Everything is fine: no ERRORS today
GET /health 200 0.812 ms - 2
10.0.0.5 - - [01/Dec/2026:10:00:06 +0000] "GET / HTTP/1.1" 404 9 "-" "curl/8.0"
{"level":"info","msg":"error budget healthy"}
Error handling middleware installed"""
    for language in (None, "python", "node", "java", "go", "ruby"):
        assert detect_log_errors(events(log), language) == [], language


def test_an_unknown_language_looks_for_every_runtimes_failures() -> None:
    mixed = FLASK + "panic: boom\n\ngoroutine 1 [running]:\nmain.main()\n\t/app/main.go:3 +0x1\n"
    signatures = {g.signature for g in detect_log_errors(events(mixed), None)}
    assert {"ZeroDivisionError: division by zero", "panic: boom"} <= signatures
    assert "panic: boom" not in {g.signature for g in detect_log_errors(events(mixed), "python")}


def test_bare_lines_work_as_medic_gives_them() -> None:
    found = detect_log_errors(FLASK.splitlines()[1:9], "python")
    assert [(g.signature, g.first_seen, g.streams) for g in found] == [
        ("ZeroDivisionError: division by zero", None, ())
    ]


def test_normalize_keeps_words_and_replaces_what_varies() -> None:
    assert normalize("user 42 at 10.0.0.3:5432 id 3f2c1a9e-1b2c-4d5e-8f90-1234567890ab") == (
        "user <n> at <ip> id <id>"
    )
    assert normalize("psycopg2 failed after 12ms at 0x7f3a2c") == (
        "psycopg2 failed after <n>ms at <hex>"
    )
    assert normalize("at 2026-12-01T10:00:05.123Z   took\t1.5 s") == "at <time> took <n> s"


# --- anomalies ----------------------------------------------------------------------------


def series(
    values: list[float],
    label: str = "CPU %",
    min_delta: float = 0.0,
    metric: str = "CPUUtilization",
) -> MetricSeries:
    query = MetricQuery(
        resource="i-0aaa",
        resource_kind="instance",
        namespace="AWS/EC2" if metric == "CPUUtilization" else "CWAgent",
        metric=metric,
        dimension="InstanceId",
        statistic="Average",
        label=label,
        unit="percent",
        empty_note="none",
        min_delta=min_delta,
    )
    stamps = tuple(T0 + timedelta(minutes=5 * n) for n in range(len(values)))
    return MetricSeries(
        query=query,
        period=300,
        start=T0,
        end=T0 + timedelta(minutes=5 * len(values)),
        timestamps=stamps,
        values=tuple(values),
    )


def test_robust_z_scores_by_median_and_mad() -> None:
    values = [10.0, 12.0, 11.0, 13.0, 9.0, 50.0]
    median = statistics.median(values)  # 11.5
    mad = statistics.median(abs(v - median) for v in values)  # 1.5
    assert robust_z_scores(values) == pytest.approx([0.6745 * (v - median) / mad for v in values])
    assert robust_z_scores(values)[-1] == pytest.approx(17.3122, abs=1e-4)
    # MAD 0 (most points equal): the mean absolute deviation stands in.
    flat = [5.0] * 9 + [45.0]
    mean_ad = 40.0 / 10
    assert robust_z_scores(flat)[-1] == pytest.approx(40.0 / (1.253314 * mean_ad))
    assert robust_z_scores([3.0] * 6) == [0.0] * 6
    assert robust_z_scores([]) == []


def test_a_spike_is_an_anomaly_and_noise_is_not() -> None:
    cpu = [11.0, 12.5, 10.2, 11.8, 12.1, 10.9, 11.4, 95.0, 12.3, 11.1, 10.7, 12.0]
    found = anomalies(series(cpu))
    assert [(a.value, a.direction, a.timestamp) for a in found] == [
        (95.0, "high", T0 + timedelta(minutes=35))
    ]
    assert found[0].median == pytest.approx(11.6)
    assert found[0].score > 3.5 and found[0].series == "CPU % i-0aaa"
    assert anomalies(series([v if v < 90 else 13.0 for v in cpu])) == []


def test_a_drop_is_a_low_anomaly() -> None:
    free = [20.0, 20.1, 19.9, 20.0, 20.2, 19.8, 20.0, 20.1, 2.0, 20.0]
    found = anomalies(series(free, "free storage"))
    assert [(a.value, a.direction) for a in found] == [(2.0, "low")]


def test_anomalies_need_enough_points_and_a_change_worth_telling() -> None:
    assert anomalies(series([1.0, 1.0, 1.0, 90.0])) == []  # 4 points say nothing
    tiny = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.5]
    assert len(anomalies(series(tiny))) == 1  # an outlier by the numbers...
    assert anomalies(series(tiny, min_delta=5.0)) == []  # ...but half a point of CPU
    assert anomalies(series(tiny), min_delta=0.2) != []


# --- sparklines, windows, names ----------------------------------------------------------


def test_sparkline_scales_bars_and_shows_gaps() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.0, None, 100.0], low=0, high=100) == "▁ █"
    assert sparkline([50.0, 50.0], low=0, high=100) == "▅▅"
    assert sparkline([0.0, 0.0, 0.0]) == "▁▁▁"  # nothing
    assert sparkline([7.0, 7.0]) == "▄▄"  # steady, not nothing
    assert sparkline([None, None]) == "  "
    assert sparkline([]) == ""


def test_bucketed_places_points_on_the_periods_grid() -> None:
    stamps = [T0, T0 + timedelta(seconds=30), T0 + timedelta(minutes=2), T0 + timedelta(hours=1)]
    assert bucketed(stamps, [1.0, 3.0, 5.0, 9.0], start=T0, period=60, count=4) == [
        2.0,
        None,
        5.0,
        None,
    ]


def test_since_durations_and_metric_periods() -> None:
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    for bad in ("", "5x", "h", "-1h", "0m", "31d", "1h 2"):
        with pytest.raises(BadInputError):
            parse_duration(bad)
    hour = window("1h", now=T0 + timedelta(seconds=20))
    assert hour.period() == 60 and hour.period(300) == 300
    start, end, count = hour.aligned(60)
    assert (start, end, count) == (T0 - timedelta(hours=1), T0 + timedelta(minutes=1), 61)
    assert window("1d", now=T0).period() == 1440  # 60 points a day
    assert window("30d", now=T0).period() == 43200


def test_load_balancer_dimension_from_the_arn() -> None:
    arn = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/app/hm-shop/50dc6c49"
    assert load_balancer_dimension(arn) == "app/hm-shop/50dc6c49"
    assert (
        load_balancer_dimension("arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/x/y") is None
    )


def test_dashboard_url_names_region_and_dashboard() -> None:
    assert dashboard_url("eu-west-1", "HiveMind-shop-abcdefghij") == (
        "https://console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#dashboards:name=HiveMind-shop-abcdefghij"
    )


class DeniedLogs:
    """CloudWatch Logs answering as it does to an identity without the permission."""

    def filter_log_events(self, **_: object) -> dict[str, object]:
        import botocore.exceptions

        raise botocore.exceptions.ClientError(
            {
                "Error": {
                    "Code": "AccessDeniedException",
                    "Message": "User: arn:aws:iam::123456789012:user/dev is not authorized to "
                    "perform: logs:FilterLogEvents",
                }
            },
            "FilterLogEvents",
        )


def test_an_aws_error_is_explained_with_the_next_step() -> None:
    with pytest.raises(HiveMindError) as raised:
        fetch_log_events(DeniedLogs(), "/hivemind/shop-abcdefghij/app", window("1h"))
    error = raised.value
    assert error.what == "could not read the app's logs: logs:FilterLogEvents failed"
    assert error.where == "log group /hivemind/shop-abcdefghij/app"
    assert error.cause is not None and error.cause.startswith("AccessDeniedException: User:")
    assert error.next_step is not None and "hivemind iam-policy" in error.next_step


def test_the_iam_policy_grants_every_call_the_ops_views_make() -> None:
    from hivemind.iam_policy import OPS_ACTIONS, policy_document

    granted: dict[str, list[str]] = {}
    for statement in policy_document()["Statement"]:
        actions, resources = statement["Action"], statement["Resource"]
        for action in [actions] if isinstance(actions, str) else actions:
            granted[action] = [resources] if isinstance(resources, str) else resources
    assert set(OPS_ACTIONS) == {
        "logs:FilterLogEvents",
        "cloudwatch:GetMetricData",
        "ce:GetCostAndUsage",
        "xray:GetTraceSummaries",
        "xray:BatchGetTraces",
    }
    assert set(OPS_ACTIONS) <= set(granted)
    # The app's logs only: HiveMind's own log groups.
    assert "arn:aws:logs:*:*:log-group:/hivemind/*:*" in granted["logs:FilterLogEvents"]
    assert "*" not in granted["logs:FilterLogEvents"]
    assert granted["ce:GetCostAndUsage"] == ["*"]


# --- capacity running out -------------------------------------------------------------------


def test_memory_or_disk_at_90_percent_or_more_is_running_out_however_steady() -> None:
    steady = series([97.0] * 12, "memory %", metric="mem_used_percent")
    assert anomalies(steady) == []  # no anomaly in a flat line...
    full = saturation(steady)  # ...but it is full
    assert full is not None
    assert (full.series, full.value, full.limit) == ("memory % i-0aaa", 97.0, 90.0)
    rising = series([40.0, 60.0, 91.5, 80.0], "disk %", metric="disk_used_percent")
    peak = saturation(rising)
    assert peak is not None and peak.value == 91.5 and peak.timestamp == T0 + timedelta(minutes=10)
    assert saturation(series([89.9] * 3, "memory %", metric="mem_used_percent")) is None
    assert saturation(series([100.0] * 3)) is None  # CPU at 100% is busy, not out of room
    assert saturation(series([], "memory %", metric="mem_used_percent")) is None


def test_medic_and_the_ops_agent_are_told_of_memory_running_out() -> None:
    from hivemind.ops.health import medic_evidence, ops_input
    from hivemind.ops.overview import MetricsView, OpsReport
    from hivemind_agents.ops import Ops

    memory = series([97.0] * 12, "memory %", metric="mem_used_percent")
    cpu = series([2.0] * 11 + [99.0], min_delta=5.0)
    view = MetricsView(
        series=(memory, cpu),
        anomalies=tuple(anomalies(cpu)),
        saturated=tuple(s for s in (saturation(memory), saturation(cpu)) if s is not None),
    )
    assert medic_evidence(view) == [
        "memory % i-0aaa reached 97.0% at 10:00:00 UTC (90% and over is running out)",
        "CPU % i-0aaa was 99 at 10:55:00 UTC, high against its median 2 (robust z +9.6)",
    ]
    report = OpsReport(start=T0, end=T0 + timedelta(hours=1), since="1h", metrics=view)
    verdict = Ops().fallback(ops_input(report, "shop-k2j4m6p7q3"))
    assert verdict.health == "failing"
    assert verdict.findings[0].subject == "mem_used_percent on i-0aaa"
    assert verdict.findings[0].severity == "critical"


def test_a_bracketed_level_leaves_no_bracket_in_the_signature() -> None:
    lines = [
        "[2026-12-01 10:15:31 +0000] [2311] [ERROR] Connection in use: ('0.0.0.0', 5000)",
        "[2026-12-01 10:15:32 +0000] [2290] [CRITICAL] WORKER TIMEOUT (pid:2301)",
        "(ERROR) y failed",
    ]
    assert [g.signature for g in detect_log_errors(lines, "python")] == [
        "ERROR: Connection in use: ('<ip>', <n>)",
        "CRITICAL: WORKER TIMEOUT (pid:<n>)",
        "ERROR: y failed",
    ]
