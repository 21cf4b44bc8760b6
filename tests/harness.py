"""What the tests share: where things are, and running the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hivemind.spec import DeploymentSpec

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "repos"
EXAMPLES = REPO_ROOT / "examples"


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m hivemind ARGS` as a user would, in a fresh process."""
    import time as _t

    _s = _t.time()
    _r = subprocess.run(
        [sys.executable, "-m", "hivemind", *args],
        cwd=cwd or REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    with open("/work/cli-timeline.log", "a") as _f:
        _f.write(f"{_s:.0f} {_t.time() - _s:7.1f}s {' '.join(args)[:80]}\n")
        _f.write(_r.stderr[-6000:] + "\n----\n")
    return _r
    return subprocess.run(
        [sys.executable, "-m", "hivemind", *args],
        cwd=cwd or REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """Create files (relative path -> text) under root; returns root."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def make_spec(profile: str, engine: str, xray: bool, **changes: Any) -> DeploymentSpec:
    spec: dict[str, Any] = {
        "app": {
            "name": "shop",
            "language": "python",
            "framework": "flask",
            "runtime_version": "3.12",
            "start_command": "gunicorn app:app",
            "port": 8000,
            "health_path": "/health",
        },
        "database": {"engine": "none"}
        if engine == "none"
        else {
            "engine": engine,
            "engine_version": "16" if engine == "postgres" else "8.0",
            "instance_class": "db.t3.micro",
            "storage_gb": 20,
        },
        "compute": {"instance_type": "t3.small", "count": 2 if profile == "production" else 1},
        "profile": profile,
        "region": "eu-west-1",
        "xray": xray,
        "tags": {"team": "shop"},
    }
    for path, value in changes.items():
        section, _, leaf = path.partition("__")
        if leaf:
            spec.setdefault(section, {})[leaf] = value
        else:
            spec[section] = value
    return DeploymentSpec.model_validate(spec)
