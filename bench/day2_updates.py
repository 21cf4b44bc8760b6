"""Day-2 updates in the sandbox: a blue-green update and a rolling update of a
two-instance production deployment of the bundled Flask + PostgreSQL example, each
timed end to end and split by stage (blue-green: synth, provision the standby colour,
deploy, verify through the standby rule, switch, verify live, retire the old colour;
rolling: per instance drain, deploy, register until healthy, then verify live).

Targets on a 2-core machine: a blue-green update within 240 s, a rolling update of two
instances within 180 s (each instance drains for the target group's deregistration
delay, 30 s: DescribeTargetHealth shows a deregistered target draining that long on
AWS, and the sandbox does the same). Baseline measured in the same run: `hivemind --help` (the
CLI's bare start-up), so the ratios show what the work itself costs.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from sandbox_cycle import run  # the same timed CLI run (bench/ is on the path)

LIMIT_BLUE_GREEN_S = 240.0
LIMIT_ROLLING_S = 180.0
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "flask-notes"
GIT = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}


def tagged_repo(root: Path) -> Path:
    """flask-notes in a git repository with the tags v1, v2 and v3, checked out at v1."""
    repo = root / "flask-notes"
    shutil.copytree(EXAMPLE, repo)
    env = {**os.environ, **GIT}
    git = lambda *args: subprocess.run(["git", *args], cwd=repo, env=env, check=True)  # noqa: E731
    git("init", "-q", "-b", "main")
    for version in ("1", "2", "3"):
        (repo / "VERSION").write_text(version + "\n")
        git("add", "-A")
        git("commit", "-q", "-m", f"version {version}")
        git("tag", f"v{version}")
    git("checkout", "-q", "v1")
    return repo


def state_of(ident: str, env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(run("status", ident, "--json", env=env)[1].stdout))


def main() -> int:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HIVEMIND_HOME": home, "HIVEMIND_SANDBOX": "1"}
        repo = tagged_repo(Path(home))
        try:
            baseline = statistics.median(run("--help", env=env)[0] for _ in range(5))
            run("sandbox", "up", env=env)
            _, deployed = run("deploy", str(repo), "--yes", env=env)
            ident = next(
                line.split()[1]
                for line in deployed.stderr.splitlines()
                if line.startswith("Deployment ")
            )
            before = len(state_of(ident, env)["stages"])
            blue_green_s, _ = run("update", ident, "--version", "v2", "--yes", env=env)
            after_blue_green = state_of(ident, env)
            middle = len(after_blue_green["stages"])
            rolling_s, _ = run("update", ident, "--version", "v3", "--rolling", "--yes", env=env)
            after_rolling = state_of(ident, env)
            run("destroy", ident, "--yes", "--skip-snapshot", env=env)
        finally:
            subprocess.run(
                [sys.executable, "-m", "hivemind", "sandbox", "down"],
                env=env,
                capture_output=True,
                check=False,
            )
    ok_bg, ok_rolling = blue_green_s <= LIMIT_BLUE_GREEN_S, rolling_s <= LIMIT_ROLLING_S
    print("flask-notes + PostgreSQL, production (two instances), in the sandbox")
    print(f"baseline  hivemind --help                 {baseline:6.2f} s")
    print(
        f"blue-green update                         {blue_green_s:6.2f} s  "
        f"{blue_green_s / baseline:6.1f}x  "
        f"{'ok' if ok_bg else f'MISSED (target {LIMIT_BLUE_GREEN_S:.0f}s)'}"
    )
    stages = after_blue_green["stages"][before:middle]
    for stage in stages:
        print(f"  {stage['name']:<39} {stage['seconds'] or 0:6.2f} s")
    rest = blue_green_s - sum(s["seconds"] or 0 for s in stages)
    print(f"  {'rest (pack, plan, start-up, record)':<39} {rest:6.2f} s")
    print(
        f"rolling update, two instances             {rolling_s:6.2f} s  "
        f"{rolling_s / baseline:6.1f}x  "
        f"{'ok' if ok_rolling else f'MISSED (target {LIMIT_ROLLING_S:.0f}s)'}"
    )
    for stage in after_rolling["stages"][middle:]:
        print(f"  {stage['name']:<39} {stage['seconds'] or 0:6.2f} s")
    for release in after_rolling["releases"]:
        seconds = release["seconds"]
        split = "  ".join(f"{k} {v:5.2f}s" for k, v in seconds.items())
        print(f"    {release['instance_id']:<21}  {split}")
    return 0 if ok_bg and ok_rolling else 1


if __name__ == "__main__":
    sys.exit(main())
