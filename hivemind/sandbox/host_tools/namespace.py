"""The process that holds a sandbox host's mount namespace, and the sweep that ends it.

The daemon starts it through `unshare` (as root `unshare --mount --propagation private`,
otherwise `unshare --user --map-root-user --mount --propagation private`):

    python -m hivemind.sandbox.host_tools.namespace HOST_DIR

Inside the new namespace it

1. binds the host's own folders over the real paths (`MOUNTS`): `<host dir>/root/opt`
   over `/opt`, and so on; the mount points must exist (the daemon sees to that);
2. keeps reachable what the host itself needs from under those paths: its own folder
   (tools, service state, journal) and this Python (its prefix and the hivemind
   source). When one of them lies under a covered path (a HiveMind home or a test's
   temporary folder under /tmp, a virtualenv under /opt), it is bound back at the same
   path inside the namespace; the folders that hold it are then created in the host's
   own folder, where the host's commands can see them;
3. as root (`--as UID:GID`, the unprivileged user the host's commands run as): makes
   every path the host needs passable for that user, and nothing else under the
   folders that were not (see `open_the_way`), then starts the host's *user namespace*
   (`start_user_namespace`): a process in a new user namespace whose root is that
   user, so a command is root inside the host and UID outside it;
4. prints `ready` (as root: `ready <pid of the user namespace's process>`), or
   `error: <why>`, and waits for its stdin to close, which the daemon does to stop the
   host, and which also happens when the daemon dies: then it kills every process in
   the namespace (`kill_namespace`) and exits.

Commands enter the namespace with `nsenter --target <this pid> --mount --user
--preserve-credentials` in the user-namespace variant (the daemon's own unprivileged
user is the host's root), and as root with `nsenter --target <user namespace's pid>
--user --mount`, which makes them root in that user namespace: `nobody` on this
machine. A repository's build or app never runs as this machine's root: it cannot write
root's files, read `/root` (the operator's AWS credentials) or the other users' homes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import FrameType

from hivemind.sandbox.host_tools import source_root

# (folder under <host dir>/root, the path it covers inside the host). /tmp is last: the
# host's folder may lie under the real /tmp.
MOUNTS: tuple[tuple[str, str], ...] = (
    ("opt", "/opt"),
    ("etc/systemd/system", "/etc/systemd/system"),
    ("var/log", "/var/log"),
    ("tmp", "/tmp"),
)
_MS_BIND = 4096
_MS_NOSUID = 2
_MS_NODEV = 4

NamespaceId = tuple[int, int]  # (st_dev, st_ino) of /proc/<pid>/ns/mnt


def host_root(host: Path) -> Path:
    """The folder whose subfolders lie over the real paths inside the host."""
    return host / "root"


def namespace_of(pid: int) -> NamespaceId | None:
    """The mount namespace of `pid`, or None when it is gone (or not ours to see)."""
    try:
        found = os.stat(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None
    return found.st_dev, found.st_ino


def in_namespace(pid: int, namespace: NamespaceId | None) -> bool:
    """Whether `pid` is a live process in `namespace` (not an unrelated process that got
    a recorded pid again)."""
    return pid > 0 and namespace is not None and namespace_of(pid) == namespace


def processes_in(namespace: NamespaceId, exclude: Iterable[int] = ()) -> list[int]:
    """The live processes whose mount namespace is `namespace`."""
    skip = {os.getpid(), *exclude}
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in skip and namespace_of(int(entry)) == namespace:
            found.append(int(entry))
    return found


def kill_namespace(namespace: NamespaceId, exclude: Iterable[int] = (), rounds: int = 50) -> int:
    """SIGKILL every process in `namespace` (but this one and `exclude`), again until none
    is left (a dying process may have forked); how many were killed."""
    excluded = list(exclude)
    killed = 0
    for _ in range(rounds):
        victims = processes_in(namespace, excluded)
        if not victims:
            break
        for pid in victims:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.01)
    return killed


def _mount(source: bytes, target: str, kind: bytes | None, flags: int, data: bytes | None) -> int:
    """mount(2); the errno on failure, else 0."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    if libc.mount(source, target.encode(), kind, flags, data) != 0:
        return ctypes.get_errno()
    return 0


def _bind(source_descriptor: int, target: str) -> None:
    error = _mount(f"/proc/self/fd/{source_descriptor}".encode(), target, None, _MS_BIND, None)
    if error:
        raise OSError(error, f"cannot bind-mount over {target}: {os.strerror(error)}")


def _covered(path: str) -> bool:
    return any(path.startswith(target.rstrip("/") + "/") for _, target in MOUNTS)


def needed(host: Path) -> list[str]:
    """What the host itself needs from this machine: its own folder and this Python (its
    prefixes and the hivemind source), shortest first."""
    wanted = {
        str(host.resolve()),
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        source_root(),
    }
    return sorted(wanted, key=len)


def keep_reachable(host: Path, extra: Iterable[str] = ()) -> list[str]:
    """The paths the host needs (`extra` too) that lie under one of the covered paths,
    parents first."""
    return [path for path in sorted({*needed(host), *extra}, key=len) if _covered(path)]


def reachable(path: str | Path, uid: int, gids: Iterable[int]) -> bool:
    """Whether the user `uid` (in the groups `gids`) may pass through every directory
    down to `path`, and through `path` itself (ACLs aside)."""
    target = Path(path)
    return _first_closed([*reversed(target.parents), target], uid, gids) is None


def _first_closed(directories: Iterable[Path], uid: int, gids: Iterable[int]) -> str | None:
    """The first of `directories` (each the parent of the next) the user cannot pass; None
    when it passes them all, or when one does not exist (created below what was checked,
    by whoever needs it)."""
    groups = set(gids)
    for directory in directories:
        try:
            status = directory.stat()
        except FileNotFoundError:
            return None
        if status.st_uid == uid:
            allowed = bool(status.st_mode & stat.S_IXUSR)
        elif status.st_gid in groups:
            allowed = bool(status.st_mode & stat.S_IXGRP)
        else:
            allowed = bool(status.st_mode & stat.S_IXOTH)
        if not allowed:
            return str(directory)
    return None


def open_the_way(paths: Iterable[str], uid: int, gid: int) -> None:
    """Make each of `paths` reachable for `uid`: a folder on the way it cannot pass (say
    /root, mode 0700, above a pyenv Python) is covered in this namespace with an empty
    tmpfs that grants passage only (0711), in which the needed paths alone are bound
    back. Whatever else that folder held stays out of the host's sight. A path whose
    own mode refuses the user is left as it is (`check_reachable` names it)."""
    closed: dict[str, list[str]] = {}
    for path in sorted({os.path.normpath(p) for p in paths}, key=len):
        # The highest closed folder above it: two paths' are the same folder, or apart.
        blocker = _first_closed(reversed(Path(path).parents), uid, [gid])
        if blocker is not None:
            closed.setdefault(blocker, []).append(path)
    for blocker, paths_below in sorted(closed.items(), key=lambda item: len(item[0])):
        # Opened before the folder is covered: afterwards they are out of reach.
        kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in paths_below]
        try:
            _mount_tmpfs(blocker)
            for path, descriptor in kept:
                with contextlib.suppress(OSError):
                    if os.path.samestat(os.stat(path), os.fstat(descriptor)):
                        continue  # reachable again through a path bound back before it
                _make_passage(blocker, path)
                _bind(descriptor, path)
        finally:
            for _, descriptor in kept:
                os.close(descriptor)


def _make_passage(top: str, path: str) -> None:
    """Create the folders from `top` down to `path` (in a tmpfs), each passable only."""
    current = top
    for part in Path(path).relative_to(top).parts:
        current = os.path.join(current, part)
        with contextlib.suppress(FileExistsError):
            os.mkdir(current)
            os.chmod(current, 0o711)  # whatever the umask


def _mount_tmpfs(target: str) -> None:
    error = _mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0711,size=1m")
    if error:
        raise OSError(error, f"cannot cover {target} with a tmpfs: {os.strerror(error)}")


def check_reachable(paths: Iterable[str], uid: int, gid: int) -> None:
    """OSError naming the first of `paths` the user still cannot reach."""
    for path in paths:
        if not reachable(path, uid, [gid]):
            raise OSError(
                f"{path} is out of reach of the user (uid {uid}) the sandbox runs its "
                "instances' commands as: make it readable by every user (chmod o+rx)"
            )


def start_user_namespace(uid: int, gid: int) -> subprocess.Popen[bytes]:
    """A process (`cat`, waiting on its stdin) in a new user namespace, in this mount
    namespace, whose root is `uid`:`gid` of this machine and which maps no other user.
    Run as root: only root may map another user (util-linux's `--map-users` needs
    newuidmap, which a machine may lack). setgroups is denied in it, so a process inside
    cannot take groups beyond its own."""
    anchor = subprocess.Popen(
        ["unshare", "--user", "--", "cat"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    own = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + 5.0
    while True:
        try:
            if os.readlink(f"/proc/{anchor.pid}/ns/user") != own:
                break
        except OSError:
            pass
        if anchor.poll() is not None or time.monotonic() > deadline:
            anchor.kill()
            raise OSError("unshare --user could not create the host's user namespace")
        time.sleep(0.001)
    for name, text in (
        ("setgroups", "deny"),
        ("uid_map", f"0 {uid} 1\n"),
        ("gid_map", f"0 {gid} 1\n"),
    ):
        with open(f"/proc/{anchor.pid}/{name}", "w", encoding="ascii") as handle:
            handle.write(text)
    return anchor


def set_up(host: Path, extra: Iterable[str] = ()) -> None:
    """Lay the host's folders over the real paths, in this (new) mount namespace; what
    the host needs from under them (`extra` too) stays reachable."""
    root = host_root(host)
    # Opened before anything is covered: the sources may lie under a covered path.
    sources = [(os.open(root / folder, os.O_PATH | os.O_DIRECTORY), t) for folder, t in MOUNTS]
    kept = [
        (path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in keep_reachable(host, extra)
    ]
    for descriptor, target in sources:
        _bind(descriptor, target)
    for path, descriptor in kept:
        with contextlib.suppress(OSError):
            if os.path.samestat(os.stat(path), os.fstat(descriptor)):
                continue  # still reachable (through a path bound back before it)
        os.makedirs(path, exist_ok=True)
        _bind(descriptor, path)
    for descriptor, _ in sources:
        os.close(descriptor)
    for _, descriptor in kept:
        os.close(descriptor)


def hold(host: Path, user: tuple[int, int] | None = None, extra: Iterable[str] = ()) -> int:
    """Set the namespace up, report, and hold it until stdin closes or SIGTERM. `user`
    (uid, gid): run as root, give the host's commands that user (see the docstring);
    `extra`: more folders they need (the package mirror, npm's cache)."""
    anchor: subprocess.Popen[bytes] | None = None
    try:
        present = [os.path.realpath(path) for path in extra if os.path.isdir(path)]
        set_up(host, present)
        if user is not None:
            wanted = [*needed(host), *present]
            open_the_way([p for p in wanted if not _covered(p)], *user)
            check_reachable(wanted, *user)
            anchor = start_user_namespace(*user)
    except OSError as error:
        print(f"error: {error}", flush=True)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    namespace = namespace_of(os.getpid())
    if namespace is None or namespace == namespace_of(os.getppid()):
        # Not a namespace of its own: the sweep below would kill the daemon's processes.
        print("error: unshare gave this process no mount namespace of its own", flush=True)
        return 1
    try:
        print("ready" if anchor is None else f"ready {anchor.pid}", flush=True)
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        kill_namespace(namespace)
    return 0


_USAGE = "usage: python -m hivemind.sandbox.host_tools.namespace HOST_DIR [--as UID:GID] [PATH...]"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(_USAGE, file=sys.stderr)
        return 2
    host, rest = Path(args[0]), args[1:]
    user = None
    if rest[:1] == ["--as"]:
        uid, _, gid = (rest[1] if len(rest) > 1 else "").partition(":")
        if not (uid.isdigit() and gid.isdigit()):
            print(_USAGE, file=sys.stderr)
            return 2
        user, rest = (int(uid), int(gid)), rest[2:]
    return hold(host, user, rest)


if __name__ == "__main__":
    sys.exit(main())
