"""The sandbox's package mirror: what its hosts install from instead of the internet.

An EC2 instance builds the app with the registries' packages (`pip install`,
`npm ci`). The sandbox is offline, so its hosts install from local copies, the way an
instance in a VPC without internet access installs from a mirror:

* Python: a wheelhouse, `<cache>/wheelhouse/`, filled by `scripts/bootstrap` with
  `pip download` of the bundled examples' requirements at uv.lock's versions; pip gets
  `PIP_NO_INDEX=1` and `PIP_FIND_LINKS` to it.
* Node: npm's own cache of this user (filled by any `npm ci` on this machine), with
  `npm_config_offline=true`.

A package missing from the mirror fails the build the way a missing package on PyPI or
npm would (pip: "No matching distribution found"), which is what the operator would see
on AWS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from hivemind.paths import cache_dir


def wheelhouse() -> Path:
    return cache_dir() / "wheelhouse"


def npm_cache() -> Path:
    # npm reads its settings from lowercase npm_config_* variables.
    configured = os.environ.get("npm_config_cache") or os.environ.get("NPM_CONFIG_CACHE")  # noqa: SIM112
    return Path(configured) if configured else Path.home() / ".npm"


def open_wheelhouse() -> Path:
    """The wheelhouse, readable by every user (it holds public packages only): a host's
    commands run as `nobody` when the sandbox is root. One filled before that was made
    0700; it is opened up here."""
    house = wheelhouse()
    with contextlib.suppress(OSError):
        if house.is_dir() and house.stat().st_uid == os.geteuid():
            house.chmod(0o755)
    return house


def host_environment(npm_cache_folder: Path | None = None) -> dict[str, str]:
    """The variables a sandbox host's commands get, so their builds use the mirror
    (npm's cache: `npm_cache_folder`, else this user's)."""
    return {
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse()),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "npm_config_cache": str(npm_cache_folder or npm_cache()),
        "npm_config_offline": "true",
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


def fill_wheelhouse(requirements: list[Path], constraints: Path | None = None) -> None:
    """Fill the wheelhouse with the wheels these requirements files need, at the versions
    `constraints` pins (`scripts/bootstrap` passes uv.lock's, exported), replacing what it
    held: pip takes the newest version it finds, so an older fill's newer wheels must go.
    Online; run at set-up."""
    target = wheelhouse()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=target.parent))
    staging.chmod(0o755)  # read by the sandbox's hosts, whose commands may be `nobody`
    pinned = ["-c", str(constraints)] if constraints is not None else []
    try:
        for path in requirements:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-qq",
                 "--disable-pip-version-check", "-r", str(path), *pinned, "-d", str(staging)],
                check=True,
            )  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
