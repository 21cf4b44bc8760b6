"""Python's start-up hook on a sandbox host: a service that binds the wildcard address
takes its port on the host's own address only (why: `hivemind.sandbox.hosts`, "One
address per host").

A host's systemctl puts this folder first on every service's PYTHONPATH
(`units.service_environment`), so `site` imports this module at the start of every Python
program the service runs, whatever script launched it. When the program runs on a host
(HIVEMIND_SANDBOX_HOST_ADDRESS is set), `socket.socket.bind` to 0.0.0.0 or "" on an IPv4
socket binds the host's address instead, and to :: on a dual-stack IPv6 socket its
IPv4-mapped form (::ffff:<address>), on the same port. Any other bind is left alone,
port 0 too: it cannot take another host's port, and it is how a client picks its source
address, which must stay free to reach beyond this machine's loopback. Then
the next `sitecustomize` along sys.path (a distribution's own, say) runs, as it would
without this one, and becomes the process's `sitecustomize`.

Standard library only, and cheap: it runs before every Python program of every service.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import ModuleSpec, PathFinder

# mypy reads the imports below; at run time they would cost more than this whole module.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Sequence
    from types import ModuleType

# `host_tools.ADDRESS_VARIABLE`: this module runs where hivemind cannot be imported.
ADDRESS_VARIABLE = "HIVEMIND_SANDBOX_HOST_ADDRESS"


def bind_own_address(sockets: ModuleType, address: str) -> None:
    """Make every wildcard bind of the `socket` module `sockets` bind `address`."""
    if "bind" in vars(sockets.socket):
        return  # already wrapped: another copy of this hook ran first
    inherited = sockets.socket.bind
    wildcards = {sockets.AF_INET: ("0.0.0.0", ""), sockets.AF_INET6: ("::", "::0", "")}

    def bind(self: socket.socket, where: object, /) -> None:
        if (
            isinstance(where, tuple)
            and len(where) >= 2
            and where[0] in wildcards.get(self.family, ())
            and where[1] not in (0, "0")
        ):
            if self.family == sockets.AF_INET:
                where = (address, *where[1:])
            elif not self.getsockopt(sockets.IPPROTO_IPV6, sockets.IPV6_V6ONLY):
                # A dual-stack socket takes the port on every IPv4 address too. An
                # IPv6-only one takes no IPv4 port, and there is no host IPv6 address.
                where = (f"::ffff:{address}", *where[1:])
        inherited(self, where)

    bind.__doc__ = inherited.__doc__
    sockets.socket.bind = bind


class BindOwnAddressOnImport:
    """A meta path finder that wraps `socket.socket.bind` as soon as the program has
    imported `socket`: a program that never does pays nothing for this hook."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.done = False  # it stays on sys.meta_path: removing it races other imports

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "socket" or self.done:
            return None
        self.done = True
        spec: ModuleSpec | None = None
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)  # a legacy finder has none
            if finder is not self and find_spec is not None:
                spec = find_spec(name, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None:
            return spec
        loader, address = spec.loader, self.address
        execute = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            del loader.exec_module  # the loader's own again, for any later module
            execute(module)
            bind_own_address(module, address)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def run_next_sitecustomize() -> None:
    """Run the `sitecustomize` that follows this one on sys.path, if there is one."""
    here = os.path.dirname(os.path.abspath(__file__))
    places = [os.path.abspath(entry or os.curdir) for entry in sys.path]
    start = places.index(here) + 1 if here in places else 0
    later = [
        entry
        for entry, place in zip(sys.path[start:], places[start:], strict=True)
        if place != here  # this folder again, further on
    ]
    spec = PathFinder.find_spec(__name__, later)
    if spec is None or spec.loader is None:
        return
    import importlib.util  # only now: it costs more than the rest of this module

    module = importlib.util.module_from_spec(spec)
    this = sys.modules[__name__]
    sys.modules[__name__] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules[__name__] = this
        raise


if __name__ == "sitecustomize":  # not when imported as part of hivemind (mypy, tests)
    _address = os.environ.get(ADDRESS_VARIABLE, "")
    if _address and "socket" in sys.modules:  # a .pth file imported it already
        bind_own_address(sys.modules["socket"], _address)
    elif _address:
        sys.meta_path.insert(0, BindOwnAddressOnImport(_address))
    run_next_sitecustomize()
