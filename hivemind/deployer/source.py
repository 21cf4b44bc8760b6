"""The release archive: the app's folder at the commit being deployed, packed once on
the operator's machine and uploaded to every instance.

A git repository gives `git archive` of the app's subfolder at HEAD (uncommitted
changes are not deployed, and the report says so), or at the commit, tag or branch
asked for; any other folder gives its working tree with `.gitignore` applied and
dependency, build and virtualenv folders left out (the instance builds its own).
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
_REFS_SHOWN = 5  # recent tags and branches an unknown ref's error lists


@dataclass(frozen=True)
class SourcePackage:
    """A packed release: where the archive is, what it holds and how it was chosen."""

    archive: Path
    release_id: str
    commit: str | None  # None when the folder is not a git repository
    files: int
    bytes: int
    note: str = ""  # e.g. uncommitted changes left out


def package_source(
    repo: Path, subdir: str, destination: Path, ref: str | None = None
) -> SourcePackage:
    """Pack `repo/subdir` into `destination/release.tar.gz` (replacing an older one):
    at HEAD, or at `ref` (a commit, tag or branch) when given. The release id is
    `<UTC stamp>-<short commit>`. A ref needs a git repository and must name a commit
    whose tree has the app's folder (else BadInputError)."""
    if ref is not None:
        return _package_ref(repo, subdir, destination, ref)
    app_dir = repo / subdir if subdir != "." else repo
    if not app_dir.is_dir():
        raise BadInputError(
            f"the app's folder {subdir} is not in {repo}",
            next_step="check app.subdir in the spec or hivemind.yaml",
        )
    if _is_git(repo):
        data = _git_bytes(repo, "archive", "--format=tar.gz", _tree("HEAD", subdir))
        dirty = _git(repo, "status", "--porcelain", "--", subdir)
        return _write(
            destination,
            data,
            _git(repo, "rev-parse", "HEAD"),
            "uncommitted changes are not deployed (git archive of HEAD)" if dirty else "",
        )
    names = RepoFiles(app_dir).files
    if not names:
        raise BadInputError(f"no files to deploy in {app_dir}")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as packed:
        for name in names:
            packed.add(app_dir / name, arcname=name, recursive=False)
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / ARCHIVE_NAME
    archive.write_bytes(buffer.getvalue())
    return SourcePackage(archive, f"{_stamp()}-worktree", None, len(names), len(buffer.getvalue()))


def resolve_ref(repo: Path, ref: str) -> str:
    """The full commit `ref` (a commit, tag or branch) names in the git repository
    `repo`; BadInputError naming the ref, with recent tags and branches, when it names
    none (or `repo` is not a git repository)."""
    if not _is_git(repo):
        raise BadInputError(
            f"cannot deploy version {ref!r}: {repo} is not a git repository",
            cause="a version (commit, tag or branch) is looked up with git",
            next_step="leave out the version to deploy the folder as it is, or point at "
            "the app's git repository",
        )
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
         f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not done.stdout.strip():
        known = _recent_refs(repo)
        raise BadInputError(
            f"version {ref!r} is not a commit, tag or branch of {repo}",
            cause="recent tags and branches: " + (", ".join(known) if known else "none"),
            next_step=f"give a commit, tag or branch that exists (`git -C {repo} tag`, "
            f"`git -C {repo} branch -a`); one that is only on a remote needs a "
            "`git fetch` first",
        )
    return done.stdout.strip()


def _package_ref(repo: Path, subdir: str, destination: Path, ref: str) -> SourcePackage:
    commit = resolve_ref(repo, ref)
    tree = _tree(commit, subdir)
    if subdir != "." and _object_type(repo, tree) != "tree":
        raise BadInputError(
            f"version {ref!r} ({commit[:7]}) has no folder {subdir}",
            cause=f"the app's folder {subdir} is not in that commit of {repo}",
            next_step="give a version that has the app's folder, or check app.subdir in "
            "the spec or hivemind.yaml",
        )
    data = _git_bytes(repo, "archive", "--format=tar.gz", tree)
    return _write(destination, data, commit, "")


def _write(destination: Path, data: bytes, commit: str, note: str) -> SourcePackage:
    destination.mkdir(parents=True, exist_ok=True)
    archive = destination / ARCHIVE_NAME
    archive.write_bytes(data)
    with tarfile.open(archive) as packed:
        files = sum(1 for member in packed if member.isfile())
    return SourcePackage(archive, f"{_stamp()}-{commit[:7]}", commit, files, len(data), note)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S")


def _tree(commit: str, subdir: str) -> str:
    return commit if subdir == "." else f"{commit}:{subdir}"


def _object_type(repo: Path, name: str) -> str:
    """`tree`, `blob`, `commit`, ... or "" when `name` names no object."""
    done = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "-t", name], capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    return done.stdout.strip()


def _is_git(repo: Path) -> bool:
    return (repo / ".git").exists()


def _recent_refs(repo: Path) -> list[str]:
    """The newest few tags, then the most recently committed branches."""
    found: list[str] = []
    for refs in ("refs/tags", "refs/heads"):
        done = subprocess.run(
            ["git", "-C", str(repo), "for-each-ref", "--sort=-creatordate",
             f"--count={_REFS_SHOWN}", "--format=%(refname:short)", refs],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        found += done.stdout.split()
    return found


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
