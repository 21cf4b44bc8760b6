"""Where the repository comes from: a local folder, or a git URL cloned shallow into a cache."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hivemind.errors import BadInputError
from hivemind.paths import cache_dir

_GIT_URL = re.compile(r"^(https?://|ssh://|git://|file://|git@[^:]+:)|\.git/?$")
CLONE_TIMEOUT_S = 300


@dataclass(frozen=True)
class RepoCheckout:
    """A repository on disk, ready to read."""

    ref: str  # what the user gave
    path: Path
    commit: str | None  # HEAD commit when the folder is a git work tree


def is_git_url(ref: str) -> bool:
    return bool(_GIT_URL.search(ref)) and not Path(ref).is_dir()


def redact_url(url: str) -> str:
    """`url` without the user name and password a `scheme://user:secret@host/...` URL
    carries: what HiveMind prints, records and keeps in its cached clone's config. (An
    scp-like `git@host:path` names only the SSH user and stays as it is.)"""
    if "://" not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def open_repo(ref: str, progress: Callable[[str], None] | None = None) -> RepoCheckout:
    """Resolve a path or git URL to a readable folder, or fail with a clear message.
    `progress` hears what is happening while a clone or fetch runs. Credentials in a URL
    are used for the clone and nowhere else: the checkout's `ref` is the URL without
    them."""
    if is_git_url(ref):
        path = _clone(ref, progress or (lambda _message: None))
        return RepoCheckout(ref=redact_url(ref), path=path, commit=head_commit(path))
    path = Path(ref).expanduser()
    if not path.exists():
        raise BadInputError(
            f"repository not found: {ref}",
            cause="no such file or folder",
            next_step="pass the path of the app's folder, or a git URL (https://... or git@...)",
        )
    if not path.is_dir():
        raise BadInputError(
            f"not a folder: {ref}",
            cause="HiveMind reads a whole repository, not a single file",
            next_step=f"pass the folder that holds it: {path.resolve().parent}",
        )
    path = path.resolve()
    if not any(path.iterdir()):
        raise BadInputError(
            f"the repository is empty: {ref}",
            next_step="pass the folder that holds the app's source",
        )
    return RepoCheckout(ref=ref, path=path, commit=head_commit(path))


def head_commit(path: Path) -> str | None:
    if not (path / ".git").exists():
        return None
    result = _git(["rev-parse", "HEAD"], cwd=path)
    return result.stdout.strip() if result.returncode == 0 else None


def _clone(url: str, progress: Callable[[str], None]) -> Path:
    """Clone shallow into the cache; a cached clone is refreshed to the remote's HEAD.
    The clone's `origin` is the URL without credentials, and no message carries them."""
    shown = redact_url(url)
    key = hashlib.sha256(shown.encode()).hexdigest()[:16]
    name = re.sub(
        r"[^A-Za-z0-9._-]", "-", shown.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
    )
    target = cache_dir() / "repos" / f"{name or 'repo'}-{key}"
    if (target / ".git").is_dir():
        progress(f"Updating the cached clone of {shown} ...")
        fetch = _git(["fetch", "--depth", "1", "--", url, "HEAD"], cwd=target)
        if (
            fetch.returncode == 0
            and _git(["reset", "-q", "--hard", "FETCH_HEAD"], target).returncode == 0
        ):
            _git(["clean", "-qfdx"], cwd=target)
            return target
        shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    progress(f"Cloning {shown} (shallow) ...")
    staging = Path(tempfile.mkdtemp(prefix=".clone-", dir=target.parent))
    try:
        clone = _git(["clone", "--quiet", "--depth", "1", "--", url, str(staging / "repo")], None)
        if clone.returncode != 0:
            lines = [line.strip() for line in clone.stderr.splitlines() if line.strip()]
            # git's first "fatal:" line says what went wrong; the rest is boilerplate.
            fatal = next((line for line in lines if line.startswith("fatal:")), None)
            cause = fatal or (lines[-1] if lines else f"git exited with {clone.returncode}")
            raise BadInputError(
                f"could not clone {shown}",
                cause=cause.replace(url, shown),
                next_step="check the URL and your access to it (try `git clone URL` yourself), "
                "or pass a local path",
            )
        if shown != url:  # git keeps the URL it cloned from in the clone's config
            _git(["remote", "set-url", "origin", shown], cwd=staging / "repo")
        try:
            os.replace(staging / "repo", target)
        except OSError:
            if not (target / ".git").is_dir():
                raise
            # Another run cloned the same URL meanwhile: its clone is as good as ours.
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _git(args: list[str], cwd: Path | None) -> subprocess.CompletedProcess[str]:
    if shutil.which("git") is None:
        raise BadInputError(
            "git is not installed, so a git URL cannot be cloned",
            next_step="install git, or clone the repository yourself and pass its path",
        )
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "echo"}
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=CLONE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BadInputError(
            f"git {args[0]} timed out after {CLONE_TIMEOUT_S} s",
            next_step="check your network, or clone the repository yourself and pass its path",
        ) from None
