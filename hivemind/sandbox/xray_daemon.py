"""The X-Ray daemon of a sandbox host: the UDP listener an instrumented app sends its trace
segments to, which hands them to X-Ray as the daemon does with PutTraceSegments.

**Which hosts.** An EC2 instance runs the daemon when its user data installs or starts it
(`installed_by`: it names the `aws-xray-daemon` package, or starts the `xray` service).
Other instances have none, as on AWS: their apps' segments go nowhere.

**Where.** On AWS the daemon listens on 127.0.0.1:2000 of its instance. Every sandbox host
shares this machine's loopback with the others, so each host's daemon listens on the
host's own address instead (`<address>:2000`, UDP), and every process of the host gets
`AWS_XRAY_DAEMON_ADDRESS=<address>:2000`, the variable every X-Ray SDK reads before
falling back to 127.0.0.1:2000.

**What it accepts.** The daemon protocol: each datagram is a header line
`{"format": "json", "version": 1}`, a newline and one segment (or subsegment) document.
Each document goes to moto's X-Ray backend of the instance's account and region as a
PutTraceSegments call would put it, so GetTraceSummaries and BatchGetTraces show it.
A datagram without the header, or a document X-Ray refuses, is dropped (the daemon's log
says why, once per host). Not served: the daemon's TCP proxy for sampling rules (SDKs
fall back to their local sampling rules) and telemetry records.

All daemons of the process share one asyncio loop in a background thread.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from hivemind.sandbox import runtime
from hivemind.sandbox.host_tools import XRAY_DAEMON_VARIABLE

log = logging.getLogger("hivemind.sandbox")

DAEMON_PORT = 2000
ADDRESS_VARIABLE = XRAY_DAEMON_VARIABLE  # what every X-Ray SDK reads
START_TIMEOUT = 5.0
_INSTALLS = re.compile(
    r"aws-xray-daemon|\bsystemctl\s+(?:enable\s+--now|start|restart)\s+xray(?:\.service)?\b"
)
_LOOP = runtime.BackgroundLoop("sandbox-xray-daemons")


def installed_by(scripts: list[str]) -> bool:
    """Whether user data (its shell scripts) installs or starts the X-Ray daemon; comment
    lines do not count."""
    for script in scripts:
        for line in script.splitlines():
            if not line.lstrip().startswith("#") and _INSTALLS.search(line):
                return True
    return False


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, daemon: XRayDaemon) -> None:
        self._daemon = daemon

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._daemon.receive(data)


class XRayDaemon:
    """One host's daemon on `address`:2000 (UDP), forwarding to `backend` (moto's X-Ray
    backend of the instance's account and region). `start()` binds, `stop()` closes."""

    def __init__(self, instance_id: str, address: str, backend: Any) -> None:
        self.instance_id = instance_id
        self.address = address
        self._backend = backend
        self._transport: asyncio.DatagramTransport | None = None
        self._warned = False
        self.received = 0  # segments handed to X-Ray so far

    @property
    def endpoint(self) -> str:
        """What AWS_XRAY_DAEMON_ADDRESS says on the host."""
        return f"{self.address}:{DAEMON_PORT}"

    def start(self) -> None:
        """Listen; OSError when the port cannot be bound."""
        self._transport = _LOOP.run(self._listen(), START_TIMEOUT)
        log.info("%s: X-Ray daemon listening at udp://%s", self.instance_id, self.endpoint)

    async def _listen(self) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Receiver(self), local_addr=(self.address, DAEMON_PORT)
        )
        return transport

    def stop(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            _LOOP.run(_close(transport), START_TIMEOUT)

    def receive(self, datagram: bytes) -> None:
        """One datagram of the daemon protocol: header line, newline, document."""
        header, _, document = datagram.partition(b"\n")
        try:
            meta = json.loads(header)
            if not isinstance(meta, dict) or meta.get("format") != "json":
                raise ValueError(f"not the daemon protocol's header: {header[:80]!r}")
            self._backend.process_segment(document.decode("utf-8"))
        except Exception as error:  # a bad datagram must not stop the daemon
            if not self._warned:
                self._warned = True
                log.warning("%s: X-Ray daemon dropped a segment: %s", self.instance_id, error)
            return
        self.received += 1


async def _close(transport: asyncio.DatagramTransport) -> None:
    transport.close()
