"""Day-2 operations end to end in the sandbox, as an operator lives them: a stage-1
deployment of flask-notes (one instance, PostgreSQL) upgraded to production (two
private instances, Multi-AZ, a read replica), updated blue-green to a tag, updated
rolling to the next, switched back to a release its instances still keep, then
destroyed. A request loop through the load balancer runs across every update and must
see no failed request; the release that answers changes when (and only when) the
update says it does, and the report records each step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import app_copy, run_cli
from request_loop import RequestLoop
from sandbox_harness import Clients

from hivemind.sandbox import control

pytestmark = [pytest.mark.sandbox, pytest.mark.e2e]

REGION = "us-east-1"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
UPDATE_TIMEOUT = 900.0
VERSION_ROUTE = """

@app.get("/version")
def version():
    with open(os.path.join(os.path.dirname(__file__), "VERSION")) as handle:
        return {"version": handle.read().strip()}
"""
GIT = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **GIT},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """flask-notes with a /version route, tagged v1, v2 and v3; checked out at v1."""
    repo = app_copy("flask-notes", tmp_path_factory.mktemp("day2"))
    (repo / "app.py").write_text((repo / "app.py").read_text() + VERSION_ROUTE)
    git(repo, "init", "-q", "-b", "main")
    for version in ("1", "2", "3"):
        (repo / "VERSION").write_text(version + "\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"version {version}")
        git(repo, "tag", f"v{version}")
    # A release whose build fails: a requirement no index has.
    (repo / "requirements.txt").write_text(
        (repo / "requirements.txt").read_text() + "no-such-package-hivemind==0.0.1\n"
    )
    git(repo, "commit", "-q", "-am", "a requirement that does not exist")
    git(repo, "tag", "broken")
    git(repo, "checkout", "-q", "v1")
    return repo


@pytest.fixture
def home(sandbox_home: Path) -> Path:
    return sandbox_home


@pytest.fixture
def env(sandbox_env: dict[str, str]) -> dict[str, str]:
    return sandbox_env


def status(env: dict[str, str], ident: str) -> dict[str, Any]:
    result = run_cli("status", ident, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def urlopen(url: str, data: bytes | None = None) -> Any:
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    return _NO_PROXY.open(request, timeout=10)


def post(url: str, body: bytes) -> int:
    with urlopen(url, body) as answer:
        return int(answer.status)


def update(
    env: dict[str, str],
    ident: str,
    url: str,
    *args: str,
    command: str = "update",
    exit_code: int = 0,
) -> Any:
    """`hivemind update ID ARGS --yes` (or `upgrade`) with the request loop running
    throughout."""
    with RequestLoop(url + "/version") as loop:
        result = run_cli(command, ident, *args, "--yes", env=env, timeout=UPDATE_TIMEOUT)
    served = loop.result
    assert result.returncode == exit_code, result.stdout[-3000:] + result.stderr[-5000:]
    assert served.failures == [], served.failures[:20]
    assert served.served > 50, served
    return served


def target_health(env: dict[str, str], group: str) -> dict[str, str]:
    """Each registered target's state, as the sandbox's DescribeTargetHealth says."""
    info = control.status(Path(env["HIVEMIND_HOME"]))
    assert info is not None
    elbv2 = Clients.of(info, REGION).elbv2
    described = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in described}


def versions(bodies: list[str]) -> list[str]:
    return [json.loads(body)["version"] for body in bodies]


def test_upgrade_blue_green_rolling_and_switch_back_drop_no_request(
    env: dict[str, str], repo: Path, home: Path
) -> None:
    deployed = run_cli("deploy", str(repo), "--stage-1", "--region", REGION, "--yes", env=env)
    assert deployed.returncode == 0, deployed.stderr[-5000:]
    ident = next(x for x in deployed.stderr.splitlines() if x.startswith("Deployment ")).split()[1]
    state = status(env, ident)
    url = state["url"]
    first = state["history"][-1]["release_id"]
    assert state["profile"] == "stage-1"
    (stage1,) = state["outputs"]["BlueInstanceIds"].split(",")
    notes = json.dumps({"text": "kept across the upgrade"}).encode()
    assert post(url + "/notes", notes) == 201

    # Stage-1 to production: the change set is shown, the database modified in place;
    # production instances come up in green (private subnets) while the stage-1
    # instance serves, then the listener switches and the stage-1 instance goes.
    served = update(env, ident, url, "--to-production", command="upgrade")
    assert versions(served.bodies) == ["1"]
    state = status(env, ident)
    assert (state["status"], state["profile"]) == ("deployed", "production")
    assert state["outputs"]["ActiveColor"] == "green"
    assert state["outputs"]["BlueInstanceIds"] == "-"
    green = state["outputs"]["GreenInstanceIds"].split(",")
    assert len(green) == 2 and stage1 not in green
    assert "DatabaseReplicaEndpoint" in state["outputs"]
    assert "ConnectEndpointId" in state["outputs"]
    assert state["history"][-1]["how"] == "upgrade"
    spec = json.loads((home / "deployments" / ident / "spec.json").read_text())
    assert spec["profile"] == "production" and spec["compute"]["public_color"] is None
    with urlopen(url + "/notes") as answer:  # the database kept its data
        assert "kept across the upgrade" in answer.read().decode()

    # Blue-green to the tag v2: blue is created, deployed, checked through the standby
    # rule, switched to; green is removed. v1 answers until the switch, then v2.
    served = update(env, ident, url, "--version", "v2")
    assert versions(served.bodies) == ["1", "2"]
    state = status(env, ident)
    assert state["status"] == "deployed" and state["update"] is None
    assert state["outputs"]["ActiveColor"] == "blue"
    assert state["outputs"]["GreenInstanceIds"] == "-"
    blue = state["outputs"]["BlueInstanceIds"].split(",")
    assert len(blue) == 2
    assert {r["instance_id"] for r in state["releases"]} == set(blue)
    second = state["history"][-1]
    assert (second["how"], second["version"]) == ("blue-green", "v2")
    assert second["commit"] == git(repo, "rev-parse", "v2")
    stages = [s["name"] for s in state["stages"]]
    assert stages[-9:] == [
        "synth", "provision blue", "deploy blue", "verify blue",
        "synth", "switch", "verify live", "synth", "retire green",
    ]  # fmt: skip
    assert all(c["status"] != "failed" for c in state["checks"])

    # Rolling to v3 on the same (blue) instances: one at a time, v2 and v3 both
    # answer while it runs, v3 at the end.
    served = update(env, ident, url, "--version", "v3", "--rolling")
    assert versions(served.bodies)[0] == "2" and versions(served.bodies)[-1] == "3"
    state = status(env, ident)
    assert state["outputs"]["BlueInstanceIds"].split(",") == blue  # no stack change
    third = state["history"][-1]
    assert (third["how"], third["version"]) == ("rolling", "v3")
    assert all(second["release_id"] in r["kept_releases"] for r in state["releases"])

    # Back to v2, the release still kept on the instances: no build, one at a time.
    served = update(env, ident, url, "--version", second["release_id"])
    assert versions(served.bodies)[0] == "3" and versions(served.bodies)[-1] == "2"
    state = status(env, ident)
    assert [e["how"] for e in state["history"]] == [
        "deploy", "upgrade", "blue-green", "rolling", "switch",
    ]  # fmt: skip
    assert state["history"][-1]["release_id"] == second["release_id"]
    assert {r["release_id"] for r in state["releases"]} == {second["release_id"]}
    assert "build" not in state["releases"][0]["seconds"]
    assert first not in {r["release_id"] for r in state["releases"]}

    # A release that fails to build: blue-green stops before the switch and removes
    # the new instances; rolling stops at the first instance and switches it back.
    # Either way v2 goes on answering, and no request fails.
    served = update(env, ident, url, "--version", "broken", exit_code=1)
    assert versions(served.bodies) == ["2"]
    state = status(env, ident)
    assert (state["status"], state["update"]) == ("deployed", None)
    assert state["outputs"]["GreenInstanceIds"] == "-"
    assert state["outputs"]["BlueInstanceIds"].split(",") == blue
    assert "no-such-package-hivemind" in state["note"]
    assert state["history"][-1]["release_id"] == second["release_id"]
    served = update(env, ident, url, "--version", "broken", "--rolling", exit_code=1)
    assert versions(served.bodies) == ["2"]
    state = status(env, ident)
    assert (state["status"], state["update"]) == ("deployed", None)
    assert {r["release_id"] for r in state["releases"]} == {second["release_id"]}
    health = target_health(env, state["outputs"]["BlueTargetGroupArn"])
    assert sorted(health) == sorted(blue) and set(health.values()) == {"healthy"}

    # A failure after the new instances passed their checks (CloudFormation fails the
    # listener's switch): the listener goes back to blue, green is removed, v2 serves.
    armed = run_cli(
        "sandbox", "fault", "--resource-type", "AWS::ElasticLoadBalancingV2::Listener",
        "--on", "update", "--code", "Throttling", "--message", "Rate exceeded", env=env,
    )  # fmt: skip
    assert armed.returncode == 0, armed.stderr
    served = update(env, ident, url, "--version", "v3", exit_code=1)
    assert versions(served.bodies) == ["2"]
    state = status(env, ident)
    assert (state["status"], state["update"]) == ("deployed", None)
    assert state["outputs"]["ActiveColor"] == "blue"
    assert state["outputs"]["GreenInstanceIds"] == "-"
    assert "Rate exceeded" in state["note"]
    ran = [(s["name"], s["status"]) for s in state["stages"]]
    assert ran[-7:] == [
        ("verify green", "ok"), ("synth", "ok"), ("switch", "failed"),
        ("synth", "ok"), ("switch back", "ok"), ("synth", "ok"),
        ("remove new instances", "ok"),
    ]  # fmt: skip

    # An update killed half-way (the new instances built, the release going on them):
    # `status` finds it interrupted, and `retry` undoes it, v2 serving throughout.
    events = home / "deployments" / ident / "events.log"
    seen = len(events.read_text())
    with RequestLoop(url + "/version") as loop:
        killed = subprocess.Popen(
            [sys.executable, "-m", "hivemind", "update", ident, "--version", "v3", "--yes"],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + UPDATE_TIMEOUT
        while "stage deploy green: started" not in events.read_text()[seen:]:
            assert killed.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        killed.kill()
        killed.wait()
        state = status(env, ident)
        assert (state["status"], state["failed_stage"]) == ("failed", "update")
        assert state["update"]["how"] == "blue-green"
        retried = run_cli("retry", ident, "--yes", env=env, timeout=UPDATE_TIMEOUT)
    assert retried.returncode == 0, retried.stderr[-5000:]
    assert "puts release" in retried.stdout + retried.stderr
    assert loop.result.failures == [] and versions(loop.result.bodies) == ["2"]
    state = status(env, ident)
    assert (state["status"], state["update"]) == ("deployed", None)
    assert state["outputs"]["GreenInstanceIds"] == "-"
    assert state["outputs"]["BlueInstanceIds"].split(",") == blue
    assert {r["release_id"] for r in state["releases"]} == {second["release_id"]}

    # The same version again is nothing to do.
    again = run_cli("update", ident, "--version", second["release_id"], "--yes", env=env)
    assert again.returncode == 0 and "already serves" in again.stdout + again.stderr

    report = (home / "deployments" / ident / "report.md").read_text()
    sections = (
        "Summary", "Timeline", "Architecture", "Resources", "Configuration", "Verification",
        "Access", "Costs", "Next steps and troubleshooting",
    )  # fmt: skip
    for section in sections:
        assert f"## {section}" in report, section
    for stage in ("provision blue", "rolling deploy", "switch release", "retire green"):
        assert stage in report, stage  # the timeline has every stage of every update
    assert "Releases in service" in report
    assert all(how in report for how in ("upgrade", "blue-green", "rolling", "switch"))
    assert "```mermaid" in report

    destroyed = run_cli("destroy", ident, "--yes", "--skip-snapshot", env=env)
    assert destroyed.returncode == 0, destroyed.stderr[-3000:]
    assert "destroyed" in (home / "deployments" / ident / "report.md").read_text()
