"""EC2 Instance Connect Endpoints for the sandbox: the way to instances in private subnets.

On AWS, HiveMind's production profile puts the instances in private subnets and reaches
them for SSH through an EC2 Instance Connect Endpoint, exactly as
`aws ec2-instance-connect open-tunnel` does: it presigns (SigV4 query authentication,
service `ec2-instance-connect`) the URL `wss://<endpoint DnsName>/openTunnel?...` with
`instanceConnectEndpointId`, `remotePort`, `privateIpAddress` and `maxTunnelDuration`,
opens a WebSocket over TLS on port 443, and the SSH connection's TCP bytes travel as
BINARY frames both ways (a TEXT frame from the service is an error; a CLOSE frame with a
code other than 1000 carries the reason).

The sandbox serves the same protocol, so the product's tunnel client runs unchanged:

* **`AWS::EC2::InstanceConnectEndpoint`** (and EC2's CreateInstanceConnectEndpoint,
  DescribeInstanceConnectEndpoints and DeleteInstanceConnectEndpoint, which moto lacks)
  makes an endpoint with a network interface in its subnet and a loopback address of its
  own (`runtime.allocate_address`), which is its `DnsName` (and `FipsDnsName`): a TLS
  WebSocket server listens there on port 443.
* **TLS**: every endpoint's certificate (subjectAltName: its address and an AWS-style
  DNS name) is issued by the sandbox's CA, created once per HiveMind home and kept in
  `<home>/sandbox/ca.pem` (its key in `ca.key`, mode 0600); `control.environment()`
  names it in AWS_CA_BUNDLE, the variable AWS tools take their trust from. A sandbox
  without a home (tests) keeps its CA in `runtime.state_dir()`. See `ca_bundle()`; the CA
  itself is `hivemind.sandbox.certificates`'.
* **The tunnel** accepts WebSocket upgrades on `/openTunnel` only, and checks the query
  as the service does: the endpoint id is this endpoint's; `privateIpAddress` is the
  private IP of a running instance in the endpoint's VPC; `remotePort` is a port;
  `maxTunnelDuration` is 1-3600 seconds (3600 when absent; the tunnel closes when it is
  reached); and the URL is presigned (X-Amz-Algorithm AWS4-HMAC-SHA256, a credential
  scoped to `ec2-instance-connect` in the endpoint's region, X-Amz-Date, X-Amz-Expires,
  X-Amz-SignedHeaders, X-Amz-Signature) and not expired. A request that fails a check is
  refused with HTTP 403 (400 for a malformed value) and a one-line reason as the body.
  The signature itself is not verified: the sandbox enforces no IAM, and any
  credentials are its account's. Security group rules are not enforced either.
* Then it connects to `privateIpAddress:remotePort` (a sandbox host serves SSH on
  `hosts.SSH_PORT`, which the product passes as the port) and pipes bytes: each BINARY
  frame from the client to TCP, TCP data back as BINARY frames of at most 65,000 bytes;
  the instance's EOF closes the tunnel with 1000, a refused connection with 1011 and
  "Connection refused to <ip>:<port>", a TEXT frame from the client with 1003.

Port 443 needs root, or `net.ipv4.ip_unprivileged_port_start` at most 443: without
either, creating an endpoint fails and says so. Every endpoint's server runs on one
asyncio loop in a background thread; deleting the endpoint (or stopping the daemon:
each is registered with `runtime.on_shutdown`) closes its open tunnels and its port and
releases its address.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import ipaddress
import logging
import secrets
import shutil
import ssl
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import ec2_backends
from moto.ec2.responses import EC2Response
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from hivemind.sandbox import certificates, patching, runtime
from hivemind.sandbox.provisioning import (
    Context,
    MotoBackend,
    Provisioned,
    ResourceType,
    as_bool,
    implements,
    tag_dict,
    tag_list,
)

log = logging.getLogger("hivemind.sandbox")

TUNNEL_PORT = 443  # where every endpoint serves its tunnels, as on AWS
TUNNEL_PATH = "/openTunnel"
MAX_TUNNEL_DURATION = 3600  # seconds; also the default
MAX_FRAME_BYTES = 65_000  # the largest BINARY frame the tunnel sends (the AWS CLI's size)
CONNECT_TIMEOUT = 10.0  # seconds to reach the instance's port
SIGNING_SERVICE = "ec2-instance-connect"
SIGNING_ALGORITHM = "AWS4-HMAC-SHA256"
PRESIGN_PARAMETERS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
)
STATE = "create-complete"  # every endpoint is ready once created
START_TIMEOUT = 10.0  # seconds an endpoint's server may take to listen
STOP_TIMEOUT = 15.0  # seconds an endpoint's server may take to close


class ConnectEndpointError(Exception):
    """An endpoint could not be created; the message says why and what to do."""

    code = "SandboxConnectEndpointFailed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# ---------------------------------------------------------------------------
# the sandbox's certificate authority


_ca_lock = threading.Lock()
_ca_directory: Path | None = None
_authority: certificates.Authority | None = None

_CERTIFICATE_LIFETIME = dt.timedelta(days=397)


def use_ca_directory(directory: Path) -> Path:
    """Keep the sandbox's CA in `directory` (the daemon's `<home>/sandbox/`), creating it
    there unless a usable one is already there; returns the CA certificate's file."""
    global _ca_directory, _authority
    with _ca_lock:
        _ca_directory = directory
        _authority = None
    return ca_bundle()


def ca_bundle() -> Path:
    """The PEM file of the CA that issues every endpoint's certificate: what a client
    trusts to open a tunnel (AWS_CA_BUNDLE). Created on first use, kept afterwards."""
    return _ca().path


def _ca() -> certificates.Authority:
    global _authority
    with _ca_lock:
        if _authority is None:
            directory = _ca_directory if _ca_directory is not None else runtime.state_dir()
            _authority = certificates.load_or_create_authority(directory)
        return _authority


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def server_tls_context(address: str, dns_names: Iterable[str], directory: Path) -> ssl.SSLContext:
    """A TLS server context whose certificate the sandbox's CA issued for `address` (an
    IP address subjectAltName) and `dns_names`; its files are written to `directory`."""
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(address))]
    names += [x509.DNSName(name) for name in dns_names]
    certificate, key = certificates.sign(_ca(), address, names, _CERTIFICATE_LIFETIME)
    directory.mkdir(parents=True, exist_ok=True)
    certificate_file, key_file = directory / "certificate.pem", directory / "key.pem"
    certificates.write_atomic(key_file, certificates.key_pem(key), 0o600)
    certificates.write_atomic(
        certificate_file, certificate.public_bytes(serialization.Encoding.PEM), 0o644
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # No TLS 1.3 session tickets: they arrive after the handshake, and a client that reads
    # in one thread while it writes its request in another (websockets' sync client)
    # races on them inside OpenSSL, which hangs or crashes that client now and then.
    context.num_tickets = 0
    context.load_cert_chain(certificate_file, key_file)
    return context


# One asyncio loop serves every endpoint of this process.
_LOOP = runtime.BackgroundLoop("sandbox-connect-endpoints")


# ---------------------------------------------------------------------------
# the endpoints


class _Refused(Exception):
    """An openTunnel request the endpoint refuses: the HTTP status and the reason."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class _Tunnel:
    """Where an accepted openTunnel request goes, and for how long at most."""

    address: str
    port: int
    duration: float


@dataclass
class ConnectEndpoint:
    """One EC2 Instance Connect Endpoint: what EC2 describes, and its tunnel server on
    `address`:443 (`DnsName` is that address). Created serving by `create_endpoint`;
    `stop()` closes the server."""

    id: str
    account_id: str
    region: str
    subnet_id: str
    vpc_id: str
    availability_zone: str
    availability_zone_id: str
    security_group_ids: list[str]
    preserve_client_ip: bool
    network_interface_ids: list[str]
    address: str
    created_at: dt.datetime
    client_token: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    _server: Server | None = field(default=None, repr=False)
    # Requests that passed the checks, until their handler takes them.
    _accepted: weakref.WeakKeyDictionary[ServerConnection, _Tunnel] = field(
        default_factory=weakref.WeakKeyDictionary, repr=False
    )
    _stopped: bool = field(default=False, repr=False)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _forget_shutdown: Callable[[], None] = field(default=lambda: None, repr=False)

    # -- what EC2 says about it

    @property
    def arn(self) -> str:
        partition = "aws-cn" if self.region.startswith("cn-") else "aws"
        return (
            f"arn:{partition}:ec2:{self.region}:{self.account_id}"
            f":instance-connect-endpoint/{self.id}"
        )

    @property
    def dns_name(self) -> str:
        """Where clients open tunnels: the endpoint's loopback address."""
        return self.address

    @property
    def aws_dns_name(self) -> str:
        """The name AWS would give it (in its certificate too; it resolves nowhere)."""
        return f"{self.id}.{self.id[-8:]}.ec2-instance-connect-endpoint.{self.region}.amazonaws.com"

    @property
    def directory(self) -> Path:
        """The endpoint's certificate and key."""
        return runtime.state_dir() / "connect-endpoints" / self.id

    def description(self) -> dict[str, Any]:
        """The endpoint as EC2's API describes it (Ec2InstanceConnectEndpoint)."""
        return {
            "OwnerId": self.account_id,
            "InstanceConnectEndpointId": self.id,
            "InstanceConnectEndpointArn": self.arn,
            "State": STATE,
            "StateMessage": "",
            "DnsName": self.dns_name,
            "FipsDnsName": self.dns_name,
            "NetworkInterfaceIds": list(self.network_interface_ids),
            "VpcId": self.vpc_id,
            "AvailabilityZone": self.availability_zone,
            "AvailabilityZoneId": self.availability_zone_id,
            "CreatedAt": self.created_at,
            "SubnetId": self.subnet_id,
            "PreserveClientIp": self.preserve_client_ip,
            "SecurityGroupIds": list(self.security_group_ids),
            "Tags": tag_list(self.tags),
            "IpAddressType": "ipv4",
            "PublicDnsNames": {"Ipv4": {"DnsName": self.dns_name, "FipsDnsName": self.dns_name}},
        }

    def attributes(self) -> dict[str, Any]:
        """What `Fn::GetAtt` answers for the endpoint."""
        return {
            "Id": self.id,
            "InstanceConnectEndpointArn": self.arn,
            "OwnerId": self.account_id,
            "State": STATE,
            "StateMessage": "",
            "DnsName": self.dns_name,
            "FipsDnsName": self.dns_name,
            "PublicDnsNames.Ipv4.DnsName": self.dns_name,
            "PublicDnsNames.Ipv4.FipsDnsName": self.dns_name,
            "NetworkInterfaceIds": list(self.network_interface_ids),
            "VpcId": self.vpc_id,
            "AvailabilityZone": self.availability_zone,
            "AvailabilityZoneId": self.availability_zone_id,
            "CreatedAt": self.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }

    # -- serving

    async def _listen(self, context: ssl.SSLContext) -> None:
        self._server = await serve(
            self._handle,
            self.address,
            TUNNEL_PORT,
            ssl=context,
            process_request=self._check_request,
            compression=None,
            server_header="HiveMind sandbox EC2 Instance Connect Endpoint",
        )

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            self._accepted[connection] = self._tunnel(request.path, _now())
        except _Refused as refused:
            log.info("%s: openTunnel refused (%s): %s", self.id, refused.status, refused.reason)
            response = connection.respond(refused.status, refused.reason + "\n")
            response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
            return response
        return None

    def _tunnel(self, path: str, now: dt.datetime) -> _Tunnel:
        """Where the openTunnel request for `path` (path and query) goes; _Refused says
        why the service would not open it."""
        url = urlsplit(path)
        if url.path != TUNNEL_PATH:
            raise _Refused(
                HTTPStatus.NOT_FOUND, f"Not found: {url.path} (tunnels open at {TUNNEL_PATH})"
            )
        query = {
            name: values[-1] for name, values in parse_qs(url.query, keep_blank_values=True).items()
        }
        self._check_presigned(query, now)

        given = query.get("instanceConnectEndpointId", "")
        if given != self.id:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"The instanceConnectEndpointId {given or '(none)'} is not this endpoint "
                f"({self.id} at {self.dns_name})",
            )
        port = _integer(query, "remotePort", 1, 65535, None)
        duration = _integer(query, "maxTunnelDuration", 1, MAX_TUNNEL_DURATION, MAX_TUNNEL_DURATION)
        address = query.get("privateIpAddress", "")
        if not address:
            raise _Refused(HTTPStatus.BAD_REQUEST, "privateIpAddress is missing from the query")
        if not self._in_vpc(address):
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"{address} is not in the endpoint's VPC ({self.vpc_id}): no running "
                "instance there has this private IP address",
            )
        return _Tunnel(address, port, float(duration))

    def _check_presigned(self, query: Mapping[str, str], now: dt.datetime) -> None:
        missing = [name for name in PRESIGN_PARAMETERS if not query.get(name)]
        if missing:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"The URL is not presigned: {', '.join(missing)} missing from the query "
                f"(sign it with SigV4 for the {SIGNING_SERVICE} service)",
            )
        if query["X-Amz-Algorithm"] != SIGNING_ALGORITHM:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"X-Amz-Algorithm {query['X-Amz-Algorithm']} is not {SIGNING_ALGORITHM}",
            )
        scope = query["X-Amz-Credential"].split("/")
        if len(scope) != 5 or scope[2:] != [self.region, SIGNING_SERVICE, "aws4_request"]:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"X-Amz-Credential {query['X-Amz-Credential']} is not scoped to "
                f"<access key>/<date>/{self.region}/{SIGNING_SERVICE}/aws4_request",
            )
        try:
            signed = dt.datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=dt.UTC
            )
            expires = int(query["X-Amz-Expires"])
        except ValueError:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"X-Amz-Date {query['X-Amz-Date']} or X-Amz-Expires {query['X-Amz-Expires']} "
                "is malformed (expected 20250101T000000Z and seconds)",
            ) from None
        if signed - now > dt.timedelta(minutes=5):
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"The presigned URL is not valid yet: signed at {signed:%Y-%m-%dT%H:%M:%SZ}, "
                f"now is {now:%Y-%m-%dT%H:%M:%SZ}",
            )
        expiry = signed + dt.timedelta(seconds=expires)
        if now > expiry:
            raise _Refused(
                HTTPStatus.FORBIDDEN,
                f"The presigned URL expired at {expiry:%Y-%m-%dT%H:%M:%SZ} (signed "
                f"{signed:%Y-%m-%dT%H:%M:%SZ} for {expires} s); presign a new one",
            )

    def _in_vpc(self, address: str) -> bool:
        """Whether `address` is the private IP of a running instance in the endpoint's VPC."""
        ec2: MotoBackend = ec2_backends[self.account_id][self.region]
        for _ in range(3):  # moto's dicts may change under us while the API serves
            try:
                return any(
                    instance.private_ip_address == address
                    and instance.vpc_id == self.vpc_id
                    and instance.state == "running"
                    for instance in list(ec2.all_instances())
                )
            except RuntimeError:
                continue
        return False

    async def _handle(self, connection: ServerConnection) -> None:
        tunnel = self._accepted.pop(connection, None)
        if tunnel is None:  # accepted without a check: cannot happen, refuse anyway
            await connection.close(CloseCode.POLICY_VIOLATION, "The tunnel was not checked")
            return
        target = f"{tunnel.address}:{tunnel.port}"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(tunnel.address, tunnel.port), CONNECT_TIMEOUT
            )
        except ConnectionRefusedError:
            await connection.close(CloseCode.INTERNAL_ERROR, f"Connection refused to {target}")
            return
        except (OSError, TimeoutError) as error:
            why = getattr(error, "strerror", None) or "timed out"
            await connection.close(
                CloseCode.INTERNAL_ERROR, f"Connection to {target} failed: {why}"
            )
            return
        log.info("%s: tunnel open to %s", self.id, target)
        to_instance = asyncio.ensure_future(_client_to_instance(connection, writer))
        to_client = asyncio.ensure_future(_instance_to_client(reader, connection))
        try:
            done, _ = await asyncio.wait(
                {to_instance, to_client},
                timeout=tunnel.duration,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not done:
                await connection.close(
                    CloseCode.NORMAL_CLOSURE,
                    f"The tunnel reached its maxTunnelDuration of {tunnel.duration:.0f} s",
                )
        finally:
            for task in (to_instance, to_client):
                task.cancel()
            await asyncio.gather(to_instance, to_client, return_exceptions=True)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            await connection.close()
            log.info("%s: tunnel to %s closed", self.id, target)

    # -- stopping

    def stop(self) -> None:
        """Close every open tunnel and the server, release the address and remove the
        endpoint's files (idempotent)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._forget_shutdown()
        if self._server is not None:
            try:
                _LOOP.run(_close(self._server), STOP_TIMEOUT)
            except Exception:
                log.exception("%s: closing its tunnel server failed", self.id)
        runtime.release_address(self.address)
        shutil.rmtree(self.directory, ignore_errors=True)
        log.info("EC2 Instance Connect Endpoint %s (%s) stopped", self.id, self.address)


async def _close(server: Server) -> None:
    server.close()
    await server.wait_closed()


def _integer(query: Mapping[str, str], name: str, low: int, high: int, default: int | None) -> int:
    text = query.get(name, "")
    if not text and default is not None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _Refused(
            HTTPStatus.BAD_REQUEST, f"{name} must be a number from {low} to {high}, not {text!r}"
        )
    return value


async def _client_to_instance(connection: ServerConnection, writer: asyncio.StreamWriter) -> None:
    """Each BINARY frame the client sends, to the instance; the client's close is the
    instance's EOF. A TEXT frame ends the tunnel (the protocol carries bytes only)."""
    try:
        async for message in connection:
            if isinstance(message, str):
                await connection.close(
                    CloseCode.UNSUPPORTED_DATA, "The tunnel carries BINARY frames only"
                )
                return
            writer.write(message)
            await writer.drain()
    except (ConnectionClosed, OSError):
        pass
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _instance_to_client(reader: asyncio.StreamReader, connection: ServerConnection) -> None:
    """What the instance sends, to the client as BINARY frames; its EOF closes the tunnel
    normally."""
    try:
        while chunk := await reader.read(MAX_FRAME_BYTES):
            await connection.send(chunk)
    except (ConnectionClosed, OSError):
        return
    await connection.close(CloseCode.NORMAL_CLOSURE)


_endpoints: dict[str, ConnectEndpoint] = {}
_endpoints_lock = threading.Lock()


def endpoint_of(endpoint_id: str) -> ConnectEndpoint | None:
    """The endpoint with this id, if it exists."""
    with _endpoints_lock:
        return _endpoints.get(endpoint_id)


def endpoints(account_id: str, region: str) -> list[ConnectEndpoint]:
    """The endpoints of an account and region, oldest first."""
    with _endpoints_lock:
        return [e for e in _endpoints.values() if (e.account_id, e.region) == (account_id, region)]


def create_endpoint(
    account_id: str,
    region: str,
    subnet_id: str,
    *,
    security_group_ids: Iterable[str] = (),
    preserve_client_ip: bool = False,
    client_token: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> ConnectEndpoint:
    """Create an endpoint in `subnet_id` and return it serving tunnels on its address's
    port 443. EC2ClientError for a subnet or security group that does not exist;
    ConnectEndpointError when the port cannot be served (nothing is left behind then)."""
    ec2: MotoBackend = ec2_backends[account_id][region]
    if client_token:
        for existing in endpoints(account_id, region):
            if existing.client_token == client_token:
                return existing  # idempotent, as EC2's ClientToken promises
    subnet = ec2.get_subnet(subnet_id)  # InvalidSubnetID.NotFound
    group_ids = list(dict.fromkeys(security_group_ids))
    for group_id in group_ids:
        ec2.get_security_group_by_name_or_id(group_id)  # InvalidGroup.NotFound
    endpoint_id = "eice-" + secrets.token_hex(9)[:17]
    interface = ec2.create_network_interface(
        subnet,
        None,
        group_ids=group_ids or None,
        description=f"EC2 Instance Connect Endpoint {endpoint_id}",
    )
    interface.interface_type = "ec2_instance_connect_endpoint"
    interface.requester_managed = True
    address = runtime.allocate_address([TUNNEL_PORT])
    endpoint = ConnectEndpoint(
        id=endpoint_id,
        account_id=account_id,
        region=region,
        subnet_id=subnet.id,
        vpc_id=subnet.vpc_id,
        availability_zone=subnet.availability_zone,
        availability_zone_id=subnet.availability_zone_id,
        security_group_ids=group_ids,
        preserve_client_ip=preserve_client_ip,
        network_interface_ids=[interface.id],
        address=address,
        created_at=_now(),
        client_token=client_token,
        tags=dict(tags or {}),
    )
    try:
        context = server_tls_context(address, [endpoint.aws_dns_name], endpoint.directory)
        _LOOP.run(endpoint._listen(context), START_TIMEOUT)
    except OSError as error:
        endpoint.stop()
        interface.delete()
        if error.errno in (errno.EACCES, errno.EPERM):
            raise ConnectEndpointError(
                f"the sandbox serves EC2 Instance Connect Endpoint tunnels on port "
                f"{TUNNEL_PORT} (here {address}:{TUNNEL_PORT}), which only root may bind on "
                "this machine: run the sandbox as root, or allow it with "
                f"`sudo sysctl net.ipv4.ip_unprivileged_port_start={TUNNEL_PORT}`"
            ) from None
        raise ConnectEndpointError(
            f"the sandbox could not serve EC2 Instance Connect Endpoint tunnels on "
            f"{address}:{TUNNEL_PORT}: {error.strerror or error}"
        ) from None
    except BaseException:
        endpoint.stop()
        interface.delete()
        raise
    with _endpoints_lock:
        _endpoints[endpoint_id] = endpoint
    endpoint._forget_shutdown = runtime.on_shutdown(endpoint.stop)
    log.info(
        "EC2 Instance Connect Endpoint %s serving tunnels at %s:%s",
        endpoint_id,
        address,
        TUNNEL_PORT,
    )
    return endpoint


def forget_all() -> None:
    """Forget every endpoint (the sandbox's reset, once their servers have stopped)."""
    with _endpoints_lock:
        stopping = list(_endpoints.values())
        _endpoints.clear()
    for endpoint in stopping:
        endpoint.stop()


def delete_endpoint(endpoint_id: str) -> ConnectEndpoint:
    """Delete an endpoint: its tunnels and server stop, its network interface goes.
    EC2ClientError when there is no such endpoint."""
    with _endpoints_lock:
        endpoint = _endpoints.pop(endpoint_id, None)
    if endpoint is None:
        raise _not_found(endpoint_id)
    endpoint.stop()
    ec2: MotoBackend = ec2_backends[endpoint.account_id][endpoint.region]
    for interface_id in endpoint.network_interface_ids:
        interface = ec2.enis.get(interface_id)
        if interface is not None:
            interface.delete()
    return endpoint


def _not_found(endpoint_id: str) -> EC2ClientError:
    return EC2ClientError(
        "InvalidInstanceConnectEndpointId.NotFound",
        f"The instance connect endpoint ID '{endpoint_id}' does not exist",
    )


# ---------------------------------------------------------------------------
# EC2's API for endpoints


def _matches(endpoint: ConnectEndpoint, filters: list[dict[str, Any]]) -> bool:
    values_of: dict[str, Callable[[ConnectEndpoint], list[str]]] = {
        "instance-connect-endpoint-id": lambda e: [e.id],
        "vpc-id": lambda e: [e.vpc_id],
        "state": lambda e: [STATE],
        "subnet-id": lambda e: [e.subnet_id],
        "tag-key": lambda e: list(e.tags),
        "tag-value": lambda e: list(e.tags.values()),
    }
    for item in filters:
        name, wanted = str(item.get("Name", "")), set(item.get("Values") or [])
        if name.startswith("tag:"):
            have = [e for e in [endpoint.tags.get(name[4:])] if e is not None]
        elif name in values_of:
            have = values_of[name](endpoint)
        else:
            raise EC2ClientError("InvalidParameterValue", f"The filter '{name}' is invalid")
        if not wanted & set(have):
            return False
    return True


def _describe_instance_connect_endpoints(self: EC2Response) -> ActionResult:
    ids = list(self._get_param("InstanceConnectEndpointIds") or [])
    found = endpoints(self.current_account, self.region)
    for endpoint_id in ids:
        if endpoint_id not in {e.id for e in found}:
            raise _not_found(endpoint_id)
    filters = list(self._get_param("Filters") or [])
    selected = [e for e in found if (not ids or e.id in ids) and _matches(e, filters)]
    return ActionResult({"InstanceConnectEndpoints": [e.description() for e in selected]})


def _create_instance_connect_endpoint(self: EC2Response) -> ActionResult:
    tags: dict[str, str] = {}
    for spec in self._get_param("TagSpecifications") or []:
        if spec.get("ResourceType") in (None, "instance-connect-endpoint"):
            tags.update(tag_dict(spec.get("Tags")))
    token = self._get_param("ClientToken")
    endpoint = create_endpoint(
        self.current_account,
        self.region,
        self._get_param("SubnetId"),
        security_group_ids=self._get_param("SecurityGroupIds") or [],
        preserve_client_ip=as_bool(self._get_param("PreserveClientIp"), default=False),
        client_token=token,
        tags=tags,
    )
    result: dict[str, Any] = {"InstanceConnectEndpoint": endpoint.description()}
    if token:
        result["ClientToken"] = token
    return ActionResult(result)


def _delete_instance_connect_endpoint(self: EC2Response) -> ActionResult:
    endpoint_id = str(self._get_param("InstanceConnectEndpointId") or "")
    known = endpoint_of(endpoint_id)
    if known is None or (known.account_id, known.region) != (self.current_account, self.region):
        raise _not_found(endpoint_id)
    endpoint = delete_endpoint(endpoint_id)
    description = {**endpoint.description(), "State": "delete-in-progress"}
    return ActionResult({"InstanceConnectEndpoint": description})


def install_api() -> None:
    """Serve CreateInstanceConnectEndpoint, DescribeInstanceConnectEndpoints and
    DeleteInstanceConnectEndpoint on moto's EC2 endpoint (idempotent): moto dispatches
    an EC2 Action to the response method of its snake_case name."""
    for operation, handler in (
        ("DescribeInstanceConnectEndpoints", _describe_instance_connect_endpoints),
        ("CreateInstanceConnectEndpoint", _create_instance_connect_endpoint),
        ("DeleteInstanceConnectEndpoint", _delete_instance_connect_endpoint),
    ):
        patching.serve(EC2Response, "ec2", operation, handler)


# ---------------------------------------------------------------------------
# the CloudFormation resource type


@implements
class InstanceConnectEndpoint(ResourceType):
    """`AWS::EC2::InstanceConnectEndpoint`: an endpoint serving tunnels (see the module
    docstring). Every property but Tags forces a replacement."""

    type_name = "AWS::EC2::InstanceConnectEndpoint"
    attributes = frozenset(
        {"Id", "InstanceConnectEndpointArn", "OwnerId", "State", "StateMessage"}
        | {"DnsName", "FipsDnsName", "PublicDnsNames.Ipv4.DnsName"}
        | {"PublicDnsNames.Ipv4.FipsDnsName", "NetworkInterfaceIds", "VpcId"}
        | {"AvailabilityZone", "AvailabilityZoneId", "CreatedAt"}
    )

    def create(self, properties: dict[str, Any], ctx: Context) -> Provisioned:
        endpoint = create_endpoint(
            ctx.account_id,
            ctx.region,
            properties["SubnetId"],
            security_group_ids=properties.get("SecurityGroupIds") or [],
            preserve_client_ip=as_bool(properties.get("PreserveClientIp")),
            client_token=properties.get("ClientToken"),
            tags=ctx.tags(properties),
        )

        def delete() -> None:
            # Already gone (DeleteInstanceConnectEndpoint): deleted, as CloudFormation sees it.
            if endpoint_of(endpoint.id) is not None:
                delete_endpoint(endpoint.id)

        return Provisioned(
            endpoint.id,
            delete=delete,
            native=endpoint,
            attributes=endpoint.attributes(),
        )

    def update(self, old: Provisioned, properties: dict[str, Any], ctx: Context) -> Provisioned:
        # Only its tags change in place (`provisioning.replacement_rules`).
        endpoint: ConnectEndpoint = old.native
        endpoint.tags = ctx.tags(properties)
        return old
