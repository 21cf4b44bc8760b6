"""The release archive: the app's folder at the commit being deployed, packed once on
the operator's machine and uploaded to every instance.

A git repository gives the app's subfolder as committed at HEAD (uncommitted changes
are not deployed, and the report says so), or at the commit, tag or branch asked for;
any other folder gives its working tree with `.gitignore` applied and dependency, build
and virtualenv folders left out (the instance builds its own).

The repository is untrusted input, and so is its `.git/config`: git commands that honour
it can run programs it names (`core.fsmonitor` on `git status`, `tar.<format>.command`
and the smudge filters of `.gitattributes` on `git archive`). So the tree is read with
plumbing that runs nothing (`git ls-tree`, and `git cat-file --batch` for the blobs'
bytes as committed) and the archive is written here; `git status` runs with the
fsmonitor hook and submodules off. `export-ignore` and `export-subst` attributes are
therefore not applied: the release holds the files exactly as committed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
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
        entries = _listing(repo, _tree("HEAD", subdir))
        data = _archive(repo, entries)
        dirty = _uncommitted(repo, app_dir, entries)
        return _write(
            destination,
            data,
            _git(repo, "rev-parse", "HEAD"),
            "uncommitted changes are not deployed (the commit at HEAD is)" if dirty else "",
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
        [*_git_argv(repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
         f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=False, env=_git_env(),
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
    data = _archive(repo, _listing(repo, tree))
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
        [*_git_argv(repo), "cat-file", "-t", name], capture_output=True, text=True,
        check=False, env=_git_env(),
    )  # fmt: skip
    return done.stdout.strip()


def _is_git(repo: Path) -> bool:
    return (repo / ".git").exists()


def _recent_refs(repo: Path) -> list[str]:
    """The newest few tags, then the most recently committed branches."""
    found: list[str] = []
    for refs in ("refs/tags", "refs/heads"):
        done = subprocess.run(
            [*_git_argv(repo), "for-each-ref", "--sort=-creatordate",
             f"--count={_REFS_SHOWN}", "--format=%(refname:short)", refs],
            capture_output=True, text=True, check=False, env=_git_env(),
        )  # fmt: skip
        found += done.stdout.split()
    return found


# Configuration that would run a program named by the repository's own .git/config for
# the commands used here, turned off on the command line (which wins over every file).
_SAFE_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.untrackedCache=false",
)


def _git_argv(repo: Path) -> list[str]:
    argv = ["git", "--no-pager", "-C", str(repo)]
    for setting in _SAFE_CONFIG:
        argv += ["-c", setting]
    return argv


def _git_env() -> dict[str, str]:
    """The environment without anything that points git elsewhere or asks questions."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0"})
    return env


def _listing(repo: Path, tree: str) -> list[tuple[str, str, str]]:
    """(mode, blob id, path) of every file of `tree` (a commit, or `commit:subdir`),
    from `git ls-tree`; submodules (commits inside the tree) are left out, as `git
    archive` leaves them."""
    listing = _git_bytes(repo, "ls-tree", "-r", "-z", "--full-tree", tree)
    entries: list[tuple[str, str, str]] = []
    for record in listing.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, object_id = meta.decode().split()
        if kind == "blob":
            entries.append((mode, object_id, path.decode("utf-8", errors="surrogateescape")))
    return entries


def _archive(repo: Path, entries: list[tuple[str, str, str]]) -> bytes:
    """A gzipped tar of `entries` with each file's bytes as committed, read by `git
    cat-file --batch`, which applies no filter and runs nothing the repository
    configures. Symbolic links stay links."""
    blobs = _blobs(repo, [object_id for _m, object_id, _p in entries])
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as packed:
        for mode, object_id, path in entries:
            content = blobs[object_id]
            info = tarfile.TarInfo(path)
            info.mtime = 0
            if mode == "120000":
                info.type = tarfile.SYMTYPE
                info.linkname = content.decode("utf-8", errors="surrogateescape")
                info.mode = 0o777
                packed.addfile(info)
                continue
            info.mode = 0o755 if mode == "100755" else 0o644
            info.size = len(content)
            packed.addfile(info, io.BytesIO(content))
    return gzip.compress(buffer.getvalue(), mtime=0)


def _uncommitted(repo: Path, app_dir: Path, entries: list[tuple[str, str, str]]) -> bool:
    """Whether the app's folder differs from what is committed: a committed file changed
    or missing (its bytes hashed here as git hashes a blob: `git status` would run the
    repository's clean filters to compare), or a file git does not ignore added."""
    for mode, object_id, path in entries:
        where = app_dir / path
        try:
            if mode == "120000":
                content = os.readlink(where).encode("utf-8", errors="surrogateescape")
            else:
                content = where.read_bytes()
        except OSError:
            return True  # deleted (or unreadable): not what is committed
        if _blob_id(content, len(object_id)) != object_id:
            return True
    others = _git_bytes(
        repo, "ls-files", "-z", "--others", "--exclude-standard", "--", str(app_dir)
    )
    return bool(others.strip(b"\0"))


def _blob_id(content: bytes, length: int) -> str:
    """The id git gives a blob with these bytes (SHA-1, or SHA-256 in such repositories)."""
    header = f"blob {len(content)}\0".encode()
    digest = hashlib.sha256() if length == 64 else hashlib.sha1()
    digest.update(header + content)
    return digest.hexdigest()


def _blobs(repo: Path, object_ids: list[str]) -> dict[str, bytes]:
    """Each blob's bytes, from one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(object_ids))
    if not wanted:
        return {}
    request = "".join(f"{object_id}\n" for object_id in wanted).encode()
    done = subprocess.run(
        [*_git_argv(repo), "cat-file", "--batch"],
        input=request, capture_output=True, check=False, env=_git_env(),
    )  # fmt: skip
    if done.returncode != 0:
        raise BadInputError(
            f"`git cat-file --batch` failed in {repo}",
            cause=done.stderr.decode(errors="replace").strip() or "no output",
        )
    found: dict[str, bytes] = {}
    data, at = done.stdout, 0
    for object_id in wanted:
        end = data.index(b"\n", at)
        header = data[at:end].decode().split()
        if len(header) != 3 or header[1] != "blob":
            raise BadInputError(f"git could not read object {object_id} in {repo}")
        size = int(header[2])
        found[object_id] = data[end + 1 : end + 1 + size]
        at = end + 1 + size + 1  # the content, then a newline
    return found


def _git_bytes(repo: Path, *args: str) -> bytes:
    done = subprocess.run(
        [*_git_argv(repo), *args], capture_output=True, check=False, env=_git_env()
    )
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
