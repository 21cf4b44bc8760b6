"""SSH to instances in private subnets, through the stack's EC2 Instance Connect Endpoint.

The endpoint's "open tunnel" is a WebSocket over TLS to the endpoint's DNS name; the
URL is presigned (SigV4, 60 s) for one instance address and port, and the connection
then carries the SSH session's bytes as binary frames. Nothing listens on the
internet: the instances accept SSH from the endpoint's security group only, and the
operator needs `ec2-instance-connect:OpenTunnel` on the endpoint.

`open_tunnel` returns one end of a socket pair for paramiko (`sock=`); two threads
copy bytes between the other end and the WebSocket until either side closes.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from hivemind.errors import HiveMindError

MAX_TUNNEL_SECONDS = 3600
_FRAME_BYTES = 65_000


class TunnelError(HiveMindError):
    """The Instance Connect Endpoint would not open a tunnel."""


@dataclass(frozen=True)
class ConnectEndpoint:
    """The stack's EC2 Instance Connect Endpoint, as the tunnel needs it."""

    endpoint_id: str
    dns_name: str
    region: str


def describe_endpoint(ec2: Any, endpoint_id: str, region: str) -> ConnectEndpoint:
    found = ec2.describe_instance_connect_endpoints(InstanceConnectEndpointIds=[endpoint_id])
    endpoints = found.get("InstanceConnectEndpoints", [])
    if not endpoints:
        raise TunnelError(f"the stack's Instance Connect Endpoint {endpoint_id} was not found")
    endpoint = endpoints[0]
    if endpoint.get("State") != "create-complete":
        raise TunnelError(
            f"the Instance Connect Endpoint {endpoint_id} is {endpoint.get('State')}",
            cause=endpoint.get("StateMessage") or None,
        )
    return ConnectEndpoint(endpoint_id, str(endpoint["DnsName"]), region)


def presigned_url(endpoint: ConnectEndpoint, private_ip: str, port: int) -> str:
    """The tunnel's URL, signed with the operator's credentials for 60 seconds."""
    from botocore.signers import RequestSigner

    from hivemind.aws import session as aws_session

    session = aws_session()
    model = session.get_service_model("ec2-instance-connect")
    signer = RequestSigner(
        model.service_id,
        endpoint.region,
        model.signing_name,
        model.signature_version,
        session.get_credentials(),
        session.get_component("event_emitter"),
    )
    query = urlencode(
        {
            "instanceConnectEndpointId": endpoint.endpoint_id,
            "remotePort": port,
            "privateIpAddress": private_ip,
            "maxTunnelDuration": MAX_TUNNEL_SECONDS,
        }
    )
    request = {
        "url": f"wss://{endpoint.dns_name}/openTunnel?{query}",
        "body": {},
        "headers": {"host": endpoint.dns_name},
        "method": "GET",
        "query_string": "",
        "url_path": "/",
        "context": {},
    }
    return str(
        signer.generate_presigned_url(
            request_dict=request, operation_name="openTunnel", expires_in=60
        )
    )


def _tls_context() -> ssl.SSLContext:
    # AWS_CA_BUNDLE is the standard way to trust another CA (boto3 and the CLI read it).
    bundle = os.environ.get("AWS_CA_BUNDLE")
    context = ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()
    # The WebSocket client reads and writes one TLS connection from two threads; TLS 1.3's
    # post-handshake session tickets then race inside OpenSSL (measured: about 1 handshake
    # in 100 hung, once a crash). TLS 1.2 has no post-handshake messages.
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    return context


def open_tunnel(
    endpoint: ConnectEndpoint, private_ip: str, port: int, *, timeout: float = 20.0
) -> socket.socket:
    """A socket whose bytes reach `private_ip:port` through the endpoint."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    url = presigned_url(endpoint, private_ip, port)
    try:
        websocket = connect(
            url,
            ssl=_tls_context(),
            open_timeout=timeout,
            max_size=None,
            compression=None,
            user_agent_header="hivemind",
        )
    except InvalidStatus as exc:
        body = (
            exc.response.body.decode("utf-8", errors="replace").strip() if exc.response.body else ""
        )
        raise TunnelError(
            f"the Instance Connect Endpoint refused a tunnel to {private_ip}:{port}",
            where="deploy",
            cause=f"HTTP {exc.response.status_code}" + (f": {body}" if body else ""),
            next_step="check that your identity may call ec2-instance-connect:OpenTunnel "
            "on the endpoint (`hivemind iam-policy` lists it)",
        ) from None
    except (OSError, WebSocketException) as exc:
        raise TunnelError(
            f"cannot open a tunnel through the Instance Connect Endpoint {endpoint.dns_name}",
            where="deploy",
            cause=str(exc) or type(exc).__name__,
        ) from None
    ours, theirs = socket.socketpair()
    _Pump(websocket, ours).start()
    return theirs


class _Pump:
    """Copies bytes between one end of a socket pair and the WebSocket."""

    def __init__(self, websocket: Any, local: socket.socket) -> None:
        self.websocket = websocket
        self.local = local
        self.closed = threading.Event()

    def start(self) -> None:
        for target in (self._upstream, self._downstream):
            threading.Thread(target=target, daemon=True, name="hivemind-tunnel").start()

    def _upstream(self) -> None:
        try:
            while True:
                data = self.local.recv(_FRAME_BYTES)
                if not data:
                    break
                self.websocket.send(data)
        except Exception:  # either side gone: the SSH client sees the socket close
            pass
        finally:
            self._close()

    def _downstream(self) -> None:
        try:
            while True:
                message = self.websocket.recv()
                if isinstance(message, str):
                    break  # a text frame is the service reporting an error
                self.local.sendall(message)
        except Exception:
            pass
        finally:
            self._close()

    def _close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            self.websocket.close()
        finally:
            with contextlib.suppress(OSError):
                self.local.shutdown(socket.SHUT_RDWR)
            self.local.close()
