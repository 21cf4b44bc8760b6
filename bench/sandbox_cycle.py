"""The sandbox cycle of the bundled Flask + PostgreSQL example: deploy (stack, the app on
its instance over SSH, load balancer health, QA) -> status -> destroy.

Targets: the whole cycle within 120 s on a 2-core machine, with the split between
synth, the CDK CLI (CloudFormation included), the on-box deploy (per instance: upload,
build, start, healthy), QA and destroy; `hivemind status ID` within 0.5 s. Baseline
measured in the same run: `hivemind --help` (the CLI's bare start-up), so the ratios
show what the work itself costs. `--profile production` measures the redundant profile
(two instances reached through the Instance Connect Endpoint tunnel) instead.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

LIMIT_CYCLE_S = 120.0
LIMIT_STATUS_S = 0.5


def run(*args: str, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "hivemind", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"hivemind {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - start, result


def main() -> int:
    profile = sys.argv[sys.argv.index("--profile") + 1] if "--profile" in sys.argv else "stage-1"
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HIVEMIND_HOME": home, "HIVEMIND_SANDBOX": "1"}
        try:
            baseline = statistics.median(run("--help", env=env)[0] for _ in range(5))
            up, _ = run("sandbox", "up", env=env)
            deploy_s, deployed = run(
                "deploy", "examples/flask-notes", "--profile", profile, "--yes", env=env
            )
            ident = next(
                line.split()[1]
                for line in deployed.stderr.splitlines()
                if line.startswith("Deployment ")
            )
            status_runs = [run("status", ident, env=env)[0] for _ in range(5)]
            state = json.loads(run("status", ident, "--json", env=env)[1].stdout)
            destroy_s, _ = run("destroy", ident, "--yes", "--skip-snapshot", env=env)
        finally:
            subprocess.run(
                [sys.executable, "-m", "hivemind", "sandbox", "down"],
                env=env,
                capture_output=True,
                check=False,
            )
    stages = {s["name"]: s["seconds"] for s in state["stages"]}
    cycle = deploy_s + destroy_s
    status = statistics.median(status_runs)
    ok_cycle, ok_status = cycle <= LIMIT_CYCLE_S, status <= LIMIT_STATUS_S
    print(f"profile {profile}: flask-notes + PostgreSQL in the sandbox")
    print(f"baseline  hivemind --help                 {baseline:6.2f} s")
    print(f"sandbox up (once per machine session)     {up:6.2f} s")
    print(
        f"deploy -> destroy                         {cycle:6.2f} s  "
        f"{'ok' if ok_cycle else f'MISSED (target {LIMIT_CYCLE_S:.0f}s)'}"
    )
    print(f"  synth                                   {stages.get('synth', 0):6.2f} s")
    print(f"  CDK CLI + CloudFormation (provision)    {stages.get('provision', 0):6.2f} s")
    print(f"  on-box deploy (all instances, parallel) {stages.get('deploy', 0):6.2f} s")
    for release in state["releases"]:
        steps = "  ".join(f"{k} {v:5.2f}s" for k, v in release["seconds"].items())
        print(f"    {release['instance_id']:<21}               {steps}")
    waited = stages.get("deploy", 0) - max(
        (sum(r["seconds"].values()) for r in state["releases"]), default=0
    )
    print(f"    keys, load balancer health (rest)     {waited:6.2f} s")
    print(f"  QA (verify)                             {stages.get('verify', 0):6.2f} s")
    print(f"  rest of deploy (start-up, plan, record) {deploy_s - sum(stages.values()):6.2f} s")
    print(f"  destroy                                 {destroy_s:6.2f} s")
    print(
        f"hivemind status ID                        {status:6.2f} s  {status / baseline:5.2f}x  "
        f"{'ok' if ok_status else f'MISSED (target {LIMIT_STATUS_S}s)'}"
    )
    return 0 if ok_cycle and ok_status else 1


if __name__ == "__main__":
    sys.exit(main())
