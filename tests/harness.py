"""What the tests share: where things are, and running the CLI as a user would."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

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


# Health checks every 5 s and a 5 s drain (the shortest ELB allows, and one AWS accepts)
# instead of HiveMind's defaults of 15 s and 30 s: an app is in service and out of it
# sooner, and the end-to-end tests wait less, with the same semantics.
FAST_LOAD_BALANCER = {
    "health_check_interval": 5,
    "healthy_threshold": 2,
    "unhealthy_threshold": 2,
    "deregistration_delay": 5,
}


def app_copy(example: str, destination: Path) -> Path:
    """A copy of a bundled example whose hivemind.yaml asks for FAST_LOAD_BALANCER."""
    app = destination / example
    # node_modules stays behind: what a deploy packs leaves it out, as git would.
    shutil.copytree(EXAMPLES / example, app, symlinks=True, ignore=_NODE_MODULES)
    config = app / "hivemind.yaml"
    settings = yaml.safe_load(config.read_text()) if config.is_file() else {}
    settings = settings or {}
    settings["load_balancer"] = {**FAST_LOAD_BALANCER, **settings.get("load_balancer", {})}
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    return app


def _NODE_MODULES(folder: str, names: list[str]) -> list[str]:
    return ["node_modules"] if "node_modules" in names else []


@functools.cache
def fast_example(example: str) -> Path:
    """`app_copy` of a bundled example, made once per test process, for the tests that
    deploy an example as it is."""
    folder = Path(tempfile.mkdtemp(prefix="hivemind-examples-"))
    atexit.register(shutil.rmtree, folder, True)
    return app_copy(example, folder)
