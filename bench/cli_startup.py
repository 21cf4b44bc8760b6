"""How fast the CLI answers --help, against `python -c 'import click'` measured now."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15
LIMIT_S = 0.3
LIMIT_RATIO = 3.0


def median_seconds(command: list[str]) -> float:
    samples = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    baseline = median_seconds([sys.executable, "-c", "import click"])
    print(f"baseline  python -c 'import click'   {baseline * 1000:7.1f} ms")
    ok = True
    for args in (["--help"], ["analyze", "--help"], ["spec", "show", "--help"]):
        seconds = median_seconds([sys.executable, "-m", "hivemind", *args])
        ratio = seconds / baseline
        passed = seconds <= LIMIT_S and ratio <= LIMIT_RATIO
        ok &= passed
        label = "hivemind " + " ".join(args)
        print(
            f"{label:34} {seconds * 1000:7.1f} ms  {ratio:4.2f}x  "
            f"{'ok' if passed else f'MISSED (target {LIMIT_S}s and {LIMIT_RATIO}x)'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
