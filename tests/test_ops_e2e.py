"""`status --show-*`, `dashboard` and `--report` against a real sandbox deployment with
real traffic: the app's own log lines (shipped by the instance's log agent) with its
errors grouped, the load balancer's real request counts, traces the app sent through
the instance's X-Ray daemon, the cost fallback, the dashboard URL and the report."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import app_copy, run_cli

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# A route that fails, and a hand-written X-Ray emitter: each request continues the trace
# the load balancer started (X-Amzn-Trace-Id) and sends its segment to the daemon, as the
# X-Ray SDK does (UDP, a JSON header line, then the segment document).
INSTRUMENTED = """

import json as _json
import os as _os
import secrets as _secrets
import socket as _socket
import time as _time

from flask import g as _g


@app.get("/boom")
def boom():
    return {"ratio": 1 / 0}


@app.before_request
def _start_segment():
    _g.started = _time.time()


@app.after_request
def _send_segment(response):
    header = request.headers.get("X-Amzn-Trace-Id", "")
    fields = dict(p.split("=", 1) for p in header.split(";") if "=" in p)
    address = _os.environ.get("AWS_XRAY_DAEMON_ADDRESS")
    if "Root" in fields and address:
        host, port = address.rsplit(":", 1)
        segment = {
            "name": "flask-notes",
            "id": _secrets.token_hex(8),
            "trace_id": fields["Root"],
            "start_time": _g.started,
            "end_time": _time.time(),
            "http": {
                "request": {"method": request.method, "url": request.path},
                "response": {"status": response.status_code},
            },
            "error": 400 <= response.status_code < 500,
            "fault": response.status_code >= 500,
        }
        packet = '{"format": "json", "version": 1}\\n' + _json.dumps(segment)
        with _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM) as sock:
            sock.sendto(packet.encode(), (host, int(port)))
    return response
"""


@pytest.fixture(scope="module")
def env(fast_agent_sandbox_env: dict[str, str]) -> dict[str, str]:
    return fast_agent_sandbox_env


@pytest.fixture(scope="module")
def deployment(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    app = app_copy("flask-notes", tmp_path_factory.mktemp("app"))
    (app / "app.py").write_text((app / "app.py").read_text() + INSTRUMENTED)
    result = run_cli(
        "deploy", str(app), "--stage-1", "--xray", "--yes", "--region", "us-east-1", env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    ident = next(x for x in result.stderr.splitlines() if x.startswith("Deployment ")).split()[1]
    yield ident
    destroyed = run_cli("destroy", ident, "--yes", "--skip-snapshot", env=env)
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]


@pytest.fixture(scope="module")
def traffic(env: dict[str, str], deployment: str) -> dict[str, int]:
    """Real requests through the load balancer: notes written and read, two failures."""
    url = status(env, deployment)["url"]
    sent = {"ok": 0, "boom": 0}
    for n in range(5):
        body = json.dumps({"text": f"note {n}"}).encode()
        request = urllib.request.Request(
            url + "/notes", data=body, headers={"Content-Type": "application/json"}
        )
        with _NO_PROXY.open(request, timeout=10) as answer:
            assert answer.status == 201
        with _NO_PROXY.open(url + "/notes", timeout=10) as answer:
            assert answer.status == 200
        sent["ok"] += 2
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as failed:
            _NO_PROXY.open(url + "/boom", timeout=10)
        assert failed.value.code == 500
        sent["boom"] += 1
    return sent


def status(env: dict[str, str], ident: str, *flags: str) -> dict[str, Any]:
    result = run_cli("status", ident, "--json", *flags, env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def eventually(read: Any, done: Any, seconds: float = 30) -> Any:
    """Read until `done(value)` (the agents ship every second), or fail with the last."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            assert done(value), value
            return value
        time.sleep(1)


def test_show_logs_has_the_apps_lines_with_its_errors_grouped(
    env: dict[str, str], deployment: str, traffic: dict[str, int]
) -> None:
    def read() -> dict[str, Any]:
        return dict(status(env, deployment, "--show-logs", "--since", "15m")["ops"]["logs"])

    logs = eventually(read, lambda v: any(e["count"] >= 2 for e in v["errors"]))
    (error,) = [e for e in logs["errors"] if "ZeroDivisionError" in e["signature"]]
    assert error["count"] == traffic["boom"]
    assert error["location"] and "app.py" in error["location"]
    assert any(line["error"] and "ZeroDivisionError" in line["message"] for line in logs["lines"])
    state = status(env, deployment)
    instance = state["releases"][0]["instance_id"]
    assert all(line["stream"] == instance for line in logs["lines"])

    text = run_cli("status", deployment, "--show-logs", "--since", "15m", env=env)
    assert text.returncode == 0, text.stderr
    assert "ZeroDivisionError" in text.stdout
    assert "Health:" in text.stdout  # the Ops agent's reading of what was found


def test_show_metrics_counts_the_requests_the_load_balancer_served(
    env: dict[str, str], deployment: str, traffic: dict[str, int]
) -> None:
    # Ours, and QA's own requests through the URL when it verified the deployment.
    qa = [c for c in status(env, deployment)["checks"] if c["name"].startswith("http ")]
    expected = traffic["ok"] + traffic["boom"] + len(qa)

    def requests_served(view: dict[str, Any]) -> float:
        series = [s for s in view["series"] if s["query"]["metric"] == "RequestCount"]
        return sum(sum(s["values"]) for s in series)

    def read() -> dict[str, Any]:
        return dict(status(env, deployment, "--show-metrics", "--since", "15m")["ops"]["metrics"])

    metrics = eventually(read, lambda v: requests_served(v) >= expected)
    assert requests_served(metrics) == expected
    names = {s["query"]["metric"] for s in metrics["series"]}
    assert {"CPUUtilization", "mem_used_percent", "disk_used_percent", "RequestCount"} <= names
    assert "DatabaseConnections" in names
    fives = [s for s in metrics["series"] if s["query"]["metric"] == "HTTPCode_Target_5XX_Count"]
    assert sum(sum(s["values"]) for s in fives) == traffic["boom"]

    text = run_cli("status", deployment, "--show-metrics", "--since", "15m", env=env)
    assert text.returncode == 0, text.stderr
    assert any(mark in text.stdout for mark in "▁▂▃▄▅▆▇█")  # sparklines


def test_show_traces_lists_the_requests_the_app_traced(
    env: dict[str, str], deployment: str, traffic: dict[str, int]
) -> None:
    def read() -> dict[str, Any]:
        return dict(status(env, deployment, "--show-traces", "--since", "15m")["ops"]["traces"])

    traces = eventually(read, lambda v: len(v["requests"]) >= sum(traffic.values()))
    assert traces["enabled"] and traces["service"] == "flask-notes"
    faults = [t for t in traces["requests"] if t["fault"]]
    assert len(faults) == traffic["boom"]
    assert {t["url"] for t in faults} == {"/boom"}


def test_show_costs_falls_back_to_the_estimate_with_a_note(
    env: dict[str, str], deployment: str
) -> None:
    costs = status(env, deployment, "--show-costs")["ops"]["costs"]
    assert costs["source"] == "estimate" and costs["total_usd"] is None
    assert costs["note"]  # why there are no real costs yet
    assert costs["estimate_monthly_usd"] == pytest.approx(status(env, deployment)["monthly_usd"])


def test_dashboard_and_report(env: dict[str, str], deployment: str) -> None:
    state = status(env, deployment, "--show-dashboard")
    url = state["ops"]["dashboard"]["link"]["url"]
    assert url == (
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1"
        f"#dashboards:name={state['outputs']['DashboardName']}"
    )
    printed = run_cli("dashboard", deployment, "--print", env=env)
    assert printed.returncode == 0 and url in printed.stdout

    reported = status(env, deployment, "--report")
    report = Path(reported["report"]).read_text()
    for section in ("## Timeline", "## Architecture", "## Resources", "## Verification"):
        assert section in report
    assert state["url"] in report
