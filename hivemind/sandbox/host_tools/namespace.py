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
3. prints `ready` (or `error: <why>`) and waits for its stdin to close, which the daemon
   does to stop the host, and which also happens when the daemon dies: then it kills
   every process in the namespace (`kill_namespace`) and exits.

Commands enter the namespace with `nsenter --target <this pid> --mount` (plus `--user`
in the user-namespace variant), so every command and service of a host shares it.
"""

from __future__ import annotations

import contextlib
import os
import signal
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


def _bind(source_descriptor: int, target: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_void_p,
    ]
    source = f"/proc/self/fd/{source_descriptor}".encode()
    if libc.mount(source, target.encode(), None, _MS_BIND, None) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot bind-mount over {target}: {os.strerror(error)}")


def _covered(path: str) -> bool:
    return any(path.startswith(target.rstrip("/") + "/") for _, target in MOUNTS)


def keep_reachable(host: Path) -> list[str]:
    """The paths the host needs that lie under one of the covered paths, parents first."""
    wanted = {
        str(host.resolve()),
        sys.prefix,
        sys.exec_prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        source_root(),
    }
    return sorted((path for path in wanted if _covered(path)), key=len)


def set_up(host: Path) -> None:
    """Lay the host's folders over the real paths, in this (new) mount namespace."""
    root = host_root(host)
    # Opened before anything is covered: the sources may lie under a covered path.
    sources = [(os.open(root / folder, os.O_PATH | os.O_DIRECTORY), t) for folder, t in MOUNTS]
    kept = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in keep_reachable(host)]
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


def hold(host: Path) -> int:
    """Set the namespace up, report, and hold it until stdin closes or SIGTERM."""
    try:
        set_up(host)
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
        print("ready", flush=True)
        while sys.stdin.buffer.read(65536):
            pass
    finally:
        kill_namespace(namespace)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m hivemind.sandbox.host_tools.namespace HOST_DIR", file=sys.stderr)
        return 2
    return hold(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
