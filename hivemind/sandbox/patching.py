"""Every change the sandbox makes to moto goes through here, and is checked as it is made.

The sandbox extends moto in two ways: it replaces attributes of moto's classes and
modules (a backend method, a parser function), and it serves AWS API operations moto
lacks or answers wrongly. A moto release can rename what is replaced, or change how a
request reaches a handler (moto 5.2.6 began routing X-Ray requests by operation name,
`GetGroups` -> `get_groups`, where 5.2.5 routed by URL path, `/Groups` -> `groups`), and
the sandbox would then quietly behave as plain moto or answer 500. So:

* `replace(owner, name, new)` refuses, naming moto's version, when `owner` has no
  attribute `name`: a replacement must replace something.
* `serve(response_class, service, operation, handler)` answers an operation under every
  name moto may dispatch it by: its name in snake case (moto takes the operation from
  botocore's service model) and, for a REST service, the last segment of its request
  URI (how older moto releases picked the method), routing that path to moto's
  response class where moto's URL table does not. It refuses an operation botocore's
  model does not have, and counts each call in `CALLS`, so that
  `tests/test_upstream.py` can call every operation in `SERVED` through boto3 and see
  the sandbox's handler answer on the installed moto.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SandboxPatchError(RuntimeError):
    """moto (or botocore) is not what the sandbox was written against."""


@dataclass(frozen=True)
class Served:
    """An AWS API operation the sandbox answers itself."""

    service: str  # boto3's name for the service
    operation: str  # the API's name for the operation, e.g. "GetGroups"
    method_names: tuple[str, ...]  # the response-class methods it is served under


SERVED: dict[tuple[str, str], Served] = {}
REPLACED: list[tuple[Any, str, Any]] = []  # (owner, attribute name, what it is now)
CALLS: Counter[tuple[str, str]] = Counter()
_CALLS_LOCK = threading.Lock()


def moto_version() -> str:
    return importlib.metadata.version("moto")


def replace(owner: Any, name: str, new: Any) -> None:
    """Set `owner.name` to `new`; `owner` (a moto class or module) must have `name`."""
    if not hasattr(owner, name):
        where = getattr(owner, "__qualname__", getattr(owner, "__name__", repr(owner)))
        raise SandboxPatchError(
            f"moto {moto_version()}: {where}.{name} does not exist, so the sandbox's "
            f"replacement for it would never run (moto changed; see "
            f"hivemind/sandbox/patching.py)"
        )
    setattr(owner, name, new)
    REPLACED.append((owner, name, new))


@functools.cache
def _service_model(service: str) -> Any:
    """botocore's model of `service`, parsed once per process: a new botocore session
    parses the service's JSON again (EC2's is megabytes), and the sandbox asks for each
    operation it serves, a few hundred times at each start."""
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def _request_path(service: str, operation: str) -> str | None:
    """A REST operation's request path without its query (None for other protocols)."""
    model = _service_model(service)
    if not model.protocol.startswith("rest"):
        return None
    return str(model.operation_model(operation).http["requestUri"].split("?")[0])


def _route(response_class: type, service: str, path: str) -> None:
    """Make moto's server hand requests for `path` to `response_class` (moto 5.2.5 lists
    X-Ray's paths one by one; 5.2.6 takes any path): needed before the server starts."""
    urls = importlib.import_module(f"moto.{service}.urls")
    if any(re.match(pattern.format(""), path) for pattern in urls.url_paths):
        return
    urls.url_paths[f"{{0}}{re.escape(path)}$"] = response_class.dispatch  # type: ignore[attr-defined]


def method_names(service: str, operation: str) -> tuple[str, ...]:
    """The response-class methods moto may dispatch `operation` to: by operation name,
    and for a REST protocol by its request URI's last segment."""
    model = _service_model(service)
    if operation not in model.operation_names:
        import botocore

        raise SandboxPatchError(
            f"botocore {botocore.__version__}: {service} has no operation {operation}, "
            f"which the sandbox serves (boto3 changed; see hivemind/sandbox/patching.py)"
        )
    from moto.core.utils import camelcase_to_underscores

    names = [camelcase_to_underscores(operation)]
    path = _request_path(service, operation)
    if path is not None:
        segment = path.rstrip("/").rsplit("/", 1)[-1]
        if segment and not segment.startswith("{"):
            names.append(camelcase_to_underscores(segment))
    return tuple(dict.fromkeys(names))


def serve(
    response_class: type, service: str, operation: str, handler: Callable[[Any], Any]
) -> None:
    """Answer `service`'s `operation` with `handler(response)` on moto's endpoint."""

    @functools.wraps(handler)
    def counted(response: Any) -> Any:
        with _CALLS_LOCK:
            CALLS[(service, operation)] += 1
        return handler(response)

    names = method_names(service, operation)
    path = _request_path(service, operation)
    if path is not None:
        _route(response_class, service, path)
    for name in names:
        setattr(response_class, name, counted)
    SERVED[(service, operation)] = Served(service, operation, names)
