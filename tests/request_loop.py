"""A bounded request loop through a URL: what proves an update drops no request.

`RequestLoop` GETs the URL from a background thread, one fresh connection per request
(a keep-alive client would hide a listener that stops accepting), until it is stopped
or `limit` seconds pass. Every answer below 500 counts as served; an answer of 500 or
more, a refused or reset connection or a timeout is a failure, kept with when it
happened. The bodies served are kept in order, so a test can see which release
answered before and after a switch.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class LoopResult:
    served: int = 0
    failures: list[str] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)  # each change of body, in order
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return self.served + len(self.failures)


class RequestLoop:
    def __init__(
        self, url: str, *, pause: float = 0.02, timeout: float = 10.0, limit: float = 1200.0
    ) -> None:
        self.url = url
        self.pause = pause
        self.timeout = timeout
        self.limit = limit
        self.result = LoopResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-loop", daemon=True)
        self._started = 0.0

    def __enter__(self) -> RequestLoop:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> LoopResult:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        self.result.seconds = time.monotonic() - self._started
        return self.result

    def _run(self) -> None:
        deadline = self._started + self.limit
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._once()
            self._stop.wait(self.pause)

    def _once(self) -> None:
        at = time.monotonic() - self._started
        try:
            with _NO_PROXY.open(self.url, timeout=self.timeout) as answer:
                body = answer.read().decode("utf-8", "replace").strip()
        except urllib.error.HTTPError as error:
            if error.code >= 500:
                self.result.failures.append(f"{at:.1f}s: HTTP {error.code}")
            else:
                self.result.served += 1
            return
        except OSError as error:
            self.result.failures.append(f"{at:.1f}s: {type(error).__name__}: {error}")
            return
        self.result.served += 1
        if not self.result.bodies or self.result.bodies[-1] != body:
            self.result.bodies.append(body)
