"""Analyzing a 50,000-file repository, most of it dependencies, within 2 s.

Baseline: a plain `os.walk` listing every file of the same tree, measured in the
same run, so the ratio shows how much of the tree Recon avoids reading.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOTAL_FILES = 50_000
LIMIT_S = 2.0


def generate(root: Path) -> int:
    """An Express app with a big node_modules/ and .venv/, plus some source of its own."""
    count = 0

    def write(rel: str, text: str) -> None:
        nonlocal count
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        count += 1

    write("package.json", '{"name": "big", "dependencies": {"express": "^4", "pg": "^8"}}\n')
    write(".gitignore", "dist/\n*.log\n")
    write(
        "server.js",
        "const app = require('express')();\napp.get('/health', h);\n"
        "app.listen(process.env.PORT || 3000);\n",
    )
    for i in range(400):
        write(f"src/module{i // 50}/file{i}.js", f"module.exports = process.env.FLAG_{i % 7};\n")
    for i in range(100):
        write(f"dist/bundle{i}.js", "minified();\n")
    remaining = TOTAL_FILES - count
    for i in range(remaining * 3 // 5):
        write(f"node_modules/pkg{i // 40}/lib/f{i}.js", "module.exports = 1;\n")
    for i in range(TOTAL_FILES - count):
        write(f".venv/lib/python3.11/site-packages/p{i // 40}/m{i}.py", "import os\n")
    return count


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        files = generate(root)

        start = time.perf_counter()
        walked = sum(len(names) for _, _, names in os.walk(root))
        baseline = time.perf_counter() - start

        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "hivemind", "analyze", str(root), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stderr)
            return 1

    ok = seconds <= LIMIT_S
    print(f"repo: {files} files generated, {walked} listed by os.walk")
    print(f"baseline  os.walk of every file        {baseline:6.2f} s")
    print(
        f"hivemind analyze (whole process)       {seconds:6.2f} s  {seconds / baseline:5.2f}x  "
        f"{'ok' if ok else f'MISSED (target {LIMIT_S}s)'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
