"""`hivemind synth` against a bare CDK app that synthesizes the same constructs.

Baseline, measured in the same run: a fresh Python process that builds HiveMind's
DeploymentStack for the same spec in a plain `cdk.App()` and synthesizes it, with
none of synth's extras (cdk-nag, cfn-lint, cost, critical path, cache).
Targets: a fresh `hivemind synth` within 1.15x the baseline; a repeat synth of the
unchanged spec (served by the cache) within 0.5 s.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 3
REPEATS = 5
LIMIT_RATIO = 1.15
LIMIT_REPEAT_S = 0.5

BARE_APP = """
import sys
from pathlib import Path
from hivemind.toolchain import prepare_jsii
prepare_jsii()
import aws_cdk as cdk
from hivemind.compiler import render_user_data
from hivemind.spec import DeploymentSpec
from hivemind_constructs.stack import DeploymentStack
spec = DeploymentSpec.from_json(Path(sys.argv[1]).read_text())
app = cdk.App(outdir=sys.argv[2])
DeploymentStack(app, spec=spec, deployment_id="bench-abcdefghij",
                user_data=render_user_data(spec, "bench-abcdefghij"),
                synthesizer=cdk.BootstraplessSynthesizer())
app.synth()
"""


def seconds(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spec = work / "spec.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "hivemind",
                "spec",
                "show",
                "examples/flask-notes",
                "--xray",
                "-o",
                str(spec),
            ],
            check=True,
            capture_output=True,
        )
        cache = {"HIVEMIND_CACHE_DIR": str(work / "cache")}
        synth = [
            sys.executable,
            "-m",
            "hivemind",
            "synth",
            "--spec",
            str(spec),
            "--out",
            str(work / "out"),
        ]
        bare, fresh = [], []
        for run in range(RUNS):  # interleaved, so drift hits both alike
            bare.append(seconds([sys.executable, "-c", BARE_APP, str(spec), str(work / f"b{run}")]))
            fresh.append(seconds([*synth, "--no-cache"], cache))
        seconds(synth, cache)  # fill the cache
        repeat = [seconds(synth, cache) for _ in range(REPEATS)]

    baseline, ours, again = (statistics.median(x) for x in (bare, fresh, repeat))
    ratio = ours / baseline
    ok_fresh, ok_repeat = ratio <= LIMIT_RATIO, again <= LIMIT_REPEAT_S
    print(f"baseline  bare CDK app, same constructs   {baseline:6.2f} s")
    print(
        f"hivemind synth (fresh: gates, cost, path) {ours:6.2f} s  {ratio:5.2f}x  "
        f"{'ok' if ok_fresh else f'MISSED (target {LIMIT_RATIO}x)'}"
    )
    print(
        f"hivemind synth (repeat, cached)           {again:6.2f} s  {again / baseline:5.2f}x  "
        f"{'ok' if ok_repeat else f'MISSED (target {LIMIT_REPEAT_S}s)'}"
    )
    return 0 if ok_fresh and ok_repeat else 1


if __name__ == "__main__":
    sys.exit(main())
