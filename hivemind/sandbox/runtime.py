"""What the sandbox daemon's local stand-ins share: where they keep their files, which
loopback addresses they hold, and how they are all stopped when the daemon stops.

Sandbox hosts (EC2 instances), database servers (RDS) and load-balancer forwarders
(ELBv2 listeners) each take their own loopback address, so every one of them can use
the port AWS would (2222 for SSH, 5432 for PostgreSQL, 80 for HTTP) side by side.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import tempfile
import threading
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_lock = threading.Lock()
_state_dir: Path | None = None
_taken: set[str] = set()
_next = 0
_shutdown: list[Callable[[], None]] = []
# Second octets 1-254; the daemon's pid picks where it starts, so the sandboxes of two
# HiveMind homes on one machine rarely probe the same addresses.
_OCTETS = 254 * 254


_credentials = ("testing", "testing")  # what a test's in-process server takes (any key)


def set_credentials(access_key_id: str, secret_access_key: str) -> None:
    """The access key the daemon serves (see `hivemind.sandbox.credentials`); the hosts'
    processes call the sandbox with it."""
    global _credentials
    _credentials = (access_key_id, secret_access_key)


def credentials() -> tuple[str, str]:
    return _credentials


def set_state_dir(path: Path) -> None:
    global _state_dir
    path.mkdir(parents=True, exist_ok=True)
    _state_dir = path


def state_dir() -> Path:
    """The daemon's folder for hosts, databases and forwarders (a temporary folder when
    the sandbox runs inside a test process without a HiveMind home)."""
    global _state_dir
    with _lock:
        if _state_dir is None:
            _state_dir = Path(tempfile.mkdtemp(prefix="hivemind-sandbox-"))
        return _state_dir


def allocate_address(ports: Iterable[int] = ()) -> str:
    """A loopback address (127.x.y.z, never 127.0.0.x) that no other stand-in of this
    daemon holds and on which every port in `ports` is free right now."""
    global _next
    wanted = tuple(ports)
    with _lock:
        start = (os.getpid() * 7919) % _OCTETS
        for step in range(_OCTETS):
            index = (start + _next + step) % _OCTETS
            address = f"127.{1 + index // 254}.{1 + index % 254}.1"
            if address in _taken or not all(_free(address, port) for port in wanted):
                continue
            _next += step + 1
            _taken.add(address)
            return address
    raise OSError(errno.EADDRNOTAVAIL, "no free loopback address left for the sandbox")


def release_address(address: str) -> None:
    with _lock:
        _taken.discard(address)


def _free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except PermissionError:
            return True  # a privileged port: free, but binding it is the owner's problem
        except OSError:
            return False
    return True


def on_shutdown(stop: Callable[[], None]) -> Callable[[], None]:
    """Run `stop` when the daemon stops (last registered, first run); returns a function
    that unregisters it (for a stand-in deleted before then)."""
    with _lock:
        _shutdown.append(stop)

    def forget() -> None:
        with _lock:
            if stop in _shutdown:
                _shutdown.remove(stop)

    return forget


def shutdown() -> None:
    """Stop every stand-in that is still running."""
    with _lock:
        stops = list(reversed(_shutdown))
        _shutdown.clear()
    for stop in stops:
        try:
            stop()
        except Exception:  # one stand-in failing to stop must not keep the others running
            log.exception("stopping a sandbox stand-in failed")


class BackgroundLoop:
    """One asyncio loop in a daemon thread, started on first use, that stand-ins of one
    kind share (every SSH host on one, every Instance Connect Endpoint on another)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name=self._name, daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coroutine` on the loop and wait for its result (from any other thread)."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running())
        return future.result(timeout)
