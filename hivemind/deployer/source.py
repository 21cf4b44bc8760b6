"""The release archive: the app's folder at the commit being deployed, packed once on
the operator's machine and uploaded to every instance.

A git repository gives `git archive` of the app's subfolder at HEAD (uncommitted
changes are not deployed, and the report says so); any other folder gives its
working tree with `.gitignore` applied and dependency, build and virtualenv folders
left out (the instance builds its own).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from hivemind.errors import BadInputError
from hivemind.recon.files import RepoFiles

ARCHIVE_NAME = "release.tar.gz"


@dataclass(frozen=True)
class SourcePackage:
    """A packed release: where the archive is, what it holds and how it was chosen."""

    archive: Path
    release_id: str
    commit: str | None  # None when the folder is not a git repository
    files: int
    bytes: int
    note: str = ""  # e.g. uncommitted changes left out


def package_source(repo: Path, subdir: str, destination: Path) -> SourcePackage:
    """Pack `repo/subdir` into `destination/release.tar.gz` (replacing an older one)."""
    app_dir = repo / subdir if subdir != "." else repo
    if not app_dir.is_dir():
        raise BadInputError(
            f"the app's folder {subdir} is not in {repo}",
            next_step="check app.subdir in the spec or hivemind.yaml",
        )
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / ARCHIVE_NAME
    commit = _git(repo, "rev-parse", "HEAD") if (repo / ".git").exists() else None
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    if commit:
        tree = "HEAD" if subdir == "." else f"HEAD:{subdir}"
        data = _git_bytes(repo, "archive", "--format=tar.gz", tree)
        archive.write_bytes(data)
        dirty = _git(repo, "status", "--porcelain", "--", subdir)
        with tarfile.open(archive) as packed:
            files = sum(1 for member in packed if member.isfile())
        return SourcePackage(
            archive,
            f"{stamp}-{commit[:7]}",
            commit,
            files,
            len(data),
            "uncommitted changes are not deployed (git archive of HEAD)" if dirty else "",
        )
    names = RepoFiles(app_dir).files
    if not names:
        raise BadInputError(f"no files to deploy in {app_dir}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as packed:
        for name in names:
            packed.add(app_dir / name, arcname=name, recursive=False)
    archive.write_bytes(buffer.getvalue())
    return SourcePackage(archive, f"{stamp}-worktree", None, len(names), len(buffer.getvalue()))


def _git_bytes(repo: Path, *args: str) -> bytes:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.decode(errors="replace").strip().splitlines()
        raise BadInputError(
            f"`git {' '.join(args)}` failed in {repo}",
            cause=lines[-1] if lines else "no output",
            next_step="commit the app (or deploy a folder that is not a git repository)",
        )
    return done.stdout


def _git(repo: Path, *args: str) -> str:
    return _git_bytes(repo, *args).decode().strip()
