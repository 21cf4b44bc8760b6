"""What the sandbox measures of real processes, sockets and filesystems on this machine
(Linux, through /proc), for the CloudWatch metrics its stand-ins publish.

* `CpuMeter`: the CPU time a set of processes used between two readings.
* `memory_in_use`: the memory a set of processes holds (proportional set size).
* `machine_memory`, `machine_cpus`: what those are percentages of.
* `filesystem_usage`, `bytes_under`: a filesystem's size and use, a folder's size.
* `established_connections`: TCP connections to a server's address and port.
* `descendants`: a process and every process it started that still runs.
* `tcp_bytes`: the payload bytes a TCP socket has sent and received so far.

Every reader tolerates processes that end while they are read: a vanished process
simply counts no more.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
_ESTABLISHED = "01"  # the state column of /proc/net/tcp
# struct tcp_info (linux/tcp.h): tcpi_bytes_acked and tcpi_bytes_received, u64 each.
_TCP_INFO_SIZE = 256
_BYTES_ACKED_OFFSET = 120


def machine_cpus() -> int:
    """The CPUs this process (and so every stand-in's process) may run on."""
    return len(os.sched_getaffinity(0)) or 1


def machine_memory() -> int:
    """This machine's memory in bytes (MemTotal)."""
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise OSError("/proc/meminfo has no MemTotal")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split()


def cpu_seconds(pid: int) -> tuple[float, int] | None:
    """(user + system CPU seconds, start time in ticks) of a live process; the start time
    tells a process from a later one with the same pid."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    # Fields 14, 15 (utime, stime) and 22 (starttime), counted from 1 with pid and comm.
    used = (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND
    return used, int(fields[19])


class CpuMeter:
    """The CPU time of a changing set of processes between two readings.

    Each reading counts, for every process read now, what it used since the previous
    reading (all of it, for a process new since then). A process that starts and ends
    between two readings, or the last moments of one that ends, are not seen: /proc
    keeps no record of processes that are gone."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()

    def read(self, pids: Iterable[int]) -> float:
        """CPU seconds `pids` used since the previous reading."""
        with self._lock:
            now: dict[tuple[int, int], float] = {}
            used = 0.0
            for pid in pids:
                found = cpu_seconds(pid)
                if found is None:
                    continue
                seconds, started = found
                now[(pid, started)] = seconds
                used += max(0.0, seconds - self._seen.get((pid, started), 0.0))
            self._seen = now
            return used


def memory_in_use(pids: Iterable[int]) -> int:
    """Bytes of memory the processes hold: each one's proportional set size (its private
    pages plus its share of pages it shares), so shared libraries count once overall;
    the resident set size where the kernel does not tell the former."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text(encoding="ascii")
            key = "Pss:"
        except OSError:
            try:
                text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
                key = "VmRSS:"
            except OSError:
                continue
        for line in text.splitlines():
            if line.startswith(key):
                total += int(line.split()[1]) * 1024
                break
    return total


def descendants(pid: int) -> list[int]:
    """`pid` and every live process below it (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        if current not in found:
            found.append(current)
            pending.extend(children.get(current, []))
    return found


@dataclass(frozen=True)
class FilesystemUsage:
    """A filesystem as `df` reports it: bytes in all, used, and free for unprivileged
    users; inodes in all and free."""

    total: int
    used: int
    available: int
    inodes: int
    inodes_free: int

    @property
    def used_percent(self) -> float:
        """Used over what users can have (used + available), as `df` computes Use%."""
        usable = self.used + self.available
        return 100.0 * self.used / usable if usable else 0.0


def filesystem_usage(path: Path) -> FilesystemUsage:
    """The usage of the filesystem that holds `path`."""
    found = os.statvfs(path)
    total = found.f_blocks * found.f_frsize
    free = found.f_bfree * found.f_frsize
    return FilesystemUsage(
        total=total,
        used=total - free,
        available=found.f_bavail * found.f_frsize,
        inodes=found.f_files,
        inodes_free=found.f_ffree,
    )


@dataclass(frozen=True)
class Mount:
    """The mount a path lies on: its device, mount point and filesystem type."""

    device: str
    point: str
    fstype: str


def mount_of(path: Path) -> Mount:
    """The mount that holds `path` (the longest mount point above it in /proc/self/mounts)."""
    target = os.path.realpath(path)
    found = Mount("unknown", "/", "unknown")
    with contextlib.suppress(OSError), open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) < 3:
                continue
            point = parts[1].replace("\\040", " ")
            inside = target == point or target.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(found.point):
                found = Mount(parts[0], point, parts[2])
    return found


def bytes_under(folder: Path) -> int:
    """The disk space the files under `folder` take (allocated blocks, as `du`)."""
    total = 0
    for root, directories, files in os.walk(folder):
        for name in [*directories, *files]:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _hex_address(address: str, port: int) -> str:
    """How /proc/net/tcp writes an IPv4 address and port: 127.1.2.1:5432 -> 0102017F:1538."""
    packed = struct.unpack("=I", socket.inet_aton(address))[0]
    return f"{packed:08X}:{port:04X}"


def established_connections(address: str, port: int) -> int:
    """How many established TCP connections a server listening on `address:port` has."""
    local = _hex_address(address, port)
    count = 0
    with contextlib.suppress(OSError), open("/proc/net/tcp", encoding="ascii") as table:
        next(table, None)  # the header
        for line in table:
            parts = line.split()
            if len(parts) > 3 and parts[1] == local and parts[3] == _ESTABLISHED:
                count += 1
    return count


def tcp_bytes(connection: socket.socket) -> tuple[int, int]:
    """(bytes sent and acknowledged, bytes received) on a TCP socket so far, as the
    kernel counts them (TCP_INFO); (0, 0) when it cannot tell."""
    try:
        info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return 0, 0
    if len(info) < _BYTES_ACKED_OFFSET + 16:
        return 0, 0  # a kernel older than 4.1
    sent, received = struct.unpack_from("=QQ", info, _BYTES_ACKED_OFFSET)
    return int(sent), int(received)
