"""Reaching a deployment's instances over SSH, safely.

* One ed25519 key pair per deployment, generated here: the private key stays in the
  deployment record (`ssh/id_ed25519`, mode 0600) and is removed on destroy; the public
  key goes into the stack as a parameter and CloudFormation imports it.
* Host keys are pinned, never accepted blindly: each instance's key is read from its
  console output (cloud-init prints it there at first boot, through EC2's API, a channel
  we already trust), written to the record's `ssh/known_hosts`, and any other key is
  refused. Waiting for the key also waits for the instance's start-up script:
  cloud-init's `keys-to-console` runs after `scripts-user` (the user data that installs
  the runtime), so a printed key means the runtime is there.
* The path: an instance in a public subnet (stage-1) is reached at its public IP (the
  stack allows SSH from the operator's address only); one in a private subnet
  (production) through the stack's EC2 Instance Connect Endpoint (`tunnel.py`), with no
  SSH port open to the internet. `HIVEMIND_SSH_PORT` names another port than 22 (the
  sandbox serves its hosts on 2222).
* The standby token (`ssh/standby_token`, 0600) opens the load balancer's standby rule:
  the header that reaches the new instances of a blue-green update before the switch.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind.deployer.tunnel import ConnectEndpoint, TunnelError, open_tunnel
from hivemind.errors import HiveMindError

SSH_USER = "ec2-user"  # Amazon Linux 2023's login user
SSH_PORT_VARIABLE = "HIVEMIND_SSH_PORT"
KEY_FILE = "id_ed25519"
KNOWN_HOSTS_FILE = "known_hosts"
STANDBY_TOKEN_FILE = "standby_token"
_KEYS_BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
_KEYS_END = "-----END SSH HOST KEY KEYS-----"
# Strongest first: the key type we pin when the instance offers several.
_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")


class AccessError(HiveMindError):
    """An instance cannot be reached, or did not prove who it is."""


def ssh_port() -> int:
    value = os.environ.get(SSH_PORT_VARIABLE, "22")
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise AccessError(f"{SSH_PORT_VARIABLE}={value!r} is not a port number")
    return int(value)


def ssh_folder(record_folder: Path) -> Path:
    return record_folder / "ssh"


def ensure_standby_token(record_folder: Path) -> str:
    """The deployment's standby token (the value of the standby rule's header), made on
    first use and kept beside the SSH key, readable by the operator only."""
    folder = ssh_folder(record_folder)
    path = folder / STANDBY_TOKEN_FILE
    if path.is_file():
        return path.read_text("utf-8").strip()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


def ensure_key_pair(record_folder: Path) -> str:
    """The deployment's public key (OpenSSH format), generating the pair on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = ssh_folder(record_folder)
    private_file = folder / KEY_FILE
    public_file = folder / f"{KEY_FILE}.pub"
    if private_file.is_file() and public_file.is_file():
        return public_file.read_text("utf-8").strip()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    descriptor = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private)
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    public_file.write_text(f"{public} hivemind-{record_folder.name}\n", "utf-8")
    return public_file.read_text("utf-8").strip()


def remove_keys(record_folder: Path) -> None:
    """Forget the deployment's private key and pinned host keys (after destroy)."""
    folder = ssh_folder(record_folder)
    for name in (KEY_FILE, f"{KEY_FILE}.pub", KNOWN_HOSTS_FILE, STANDBY_TOKEN_FILE):
        (folder / name).unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


@dataclass(frozen=True)
class HostKey:
    key_type: str
    key_base64: str


def host_keys_from_console(text: str) -> list[HostKey]:
    """The host keys cloud-init printed to the console, strongest type first."""
    keys: list[HostKey] = []
    inside = False
    for line in text.splitlines():
        line = line.strip()
        if line.endswith(_KEYS_BEGIN):
            inside, keys = True, []  # the latest block wins (a re-imaged instance)
        elif line.endswith(_KEYS_END):
            inside = False
        elif inside:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in _KEY_TYPES:
                keys.append(HostKey(parts[0], parts[1]))
    return sorted(keys, key=lambda k: _KEY_TYPES.index(k.key_type))


@dataclass(frozen=True)
class Instance:
    """One instance as the Deployer reaches it."""

    instance_id: str
    address: str  # its public IP, else its private one (the name its host key is pinned to)
    private_ip: str
    endpoint: ConnectEndpoint | None = None  # the tunnel to take, for a private instance


def describe_instances(
    ec2: Any, instance_ids: list[str], endpoint: ConnectEndpoint | None = None
) -> list[Instance]:
    """The instances, each with its path: direct when it has a public IP, else through
    `endpoint` (an AccessError when there is none)."""
    found: dict[str, Instance] = {}
    response = ec2.describe_instances(InstanceIds=instance_ids)
    for reservation in response.get("Reservations", []):
        for item in reservation.get("Instances", []):
            private = item.get("PrivateIpAddress", "")
            public = item.get("PublicIpAddress")
            if not public and endpoint is None:
                raise AccessError(
                    f"{item['InstanceId']} has no public address and the stack has no "
                    "EC2 Instance Connect Endpoint to reach it through",
                    where="deploy",
                    next_step="redeploy with the current HiveMind (it adds the endpoint)",
                )
            found[item["InstanceId"]] = Instance(
                item["InstanceId"], public or private, private, None if public else endpoint
            )
    missing = [i for i in instance_ids if i not in found]
    if missing:
        raise AccessError(f"instances not found: {', '.join(missing)}", where="deploy")
    return [found[i] for i in instance_ids]


def pin_host_keys(
    ec2: Any,
    instances: list[Instance],
    record_folder: Path,
    *,
    timeout: float = 600.0,
    poll: float = 2.0,
    wait: Callable[[float], None] = time.sleep,
) -> Path:
    """Learn each instance's host key from its console output (waiting for first boot to
    print it) and write the record's known_hosts; returns its path. GetConsoleOutput is
    a non-mutating EC2 action; EC2 throttles each API on its own, per account and Region,
    a non-mutating one such as DescribeHosts with a bucket of 100 requests refilled at 20
    a second (EC2 developer guide, "Request throttling for the Amazon EC2 API"). Asking
    every 2 s while a few instances boot stays far inside that, and a deploy learns the
    key up to 3 s sooner than at the former 5 s."""
    port = ssh_port()
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    for instance in instances:
        while True:
            # botocore decodes the console output's base64 for us.
            output = ec2.get_console_output(InstanceId=instance.instance_id, Latest=True)
            keys = host_keys_from_console(output.get("Output") or "")
            if keys:
                break
            if time.monotonic() > deadline:
                raise AccessError(
                    f"{instance.instance_id} has not printed its SSH host key",
                    where="deploy",
                    cause=f"no host key in its console output after {timeout:.0f} s",
                    next_step="look at the instance's system log in the EC2 console; "
                    "a host key HiveMind cannot verify is never accepted",
                )
            wait(poll)
        host = instance.address if port == 22 else f"[{instance.address}]:{port}"
        lines.append(f"{host} {keys[0].key_type} {keys[0].key_base64}")
    folder = ssh_folder(record_folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    known_hosts = folder / KNOWN_HOSTS_FILE
    known_hosts.write_text("\n".join(lines) + "\n", "utf-8")
    return known_hosts


def connect(instance: Instance, record_folder: Path, *, timeout: float = 20.0) -> Any:
    """An open Fabric connection to `instance` that accepts only its pinned host key."""
    import paramiko
    from fabric import Connection

    folder = ssh_folder(record_folder)
    options: dict[str, Any] = {
        "key_filename": str(folder / KEY_FILE),
        "look_for_keys": False,
        "allow_agent": False,
    }
    if instance.endpoint is not None:
        try:
            options["sock"] = open_tunnel(
                instance.endpoint, instance.private_ip, ssh_port(), timeout=timeout
            )
        except TunnelError as exc:
            raise AccessError(
                f"cannot reach {instance.instance_id} through the Instance Connect Endpoint",
                where="deploy",
                cause=f"{exc.what}" + (f": {exc.cause}" if exc.cause else ""),
                next_step=exc.next_step or f"retry; the endpoint is {instance.endpoint.dns_name}",
            ) from None
    connection = Connection(
        instance.address,
        user=SSH_USER,
        port=ssh_port(),
        connect_timeout=timeout,
        connect_kwargs=options,
    )
    # Fabric accepts unknown host keys unless told otherwise (FIELD-NOTES).
    connection.client.load_host_keys(str(folder / KNOWN_HOSTS_FILE))
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        connection.open()
    except paramiko.BadHostKeyException as exc:
        raise AccessError(
            f"{instance.instance_id} ({instance.address}) presented a host key that does not "
            "match the one it printed at boot; the connection was refused",
            where="deploy",
            cause=f"expected {_fingerprint(exc.expected_key)}, got {_fingerprint(exc.key)}",
            next_step="someone may be intercepting the connection, or the instance was "
            "replaced: check it in the EC2 console before retrying",
        ) from None
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc):
            raise AccessError(
                f"{instance.instance_id} ({instance.address}) has no pinned host key",
                where="deploy",
                cause=str(exc),
                next_step="retry; HiveMind pins host keys from the instance's console output",
            ) from None
        raise _unreachable(instance, exc) from None
    except (OSError, EOFError) as exc:
        raise _unreachable(instance, exc) from None
    # paramiko leaves Nagle on: each short command would wait for a delayed ACK (~40 ms).
    # (A tunnel's socket is a local socket pair, which has no Nagle to turn off.)
    sock = connection.client.get_transport().sock
    if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def _unreachable(instance: Instance, exc: BaseException) -> AccessError:
    return AccessError(
        f"cannot reach {instance.instance_id} over SSH at {instance.address}:{ssh_port()}",
        where="deploy",
        cause=str(exc) or type(exc).__name__,
        next_step="check that the stack's SSH rule allows your address (--ssh-cidr) and "
        "that the instance is running; then `hivemind retry`",
    )


def _fingerprint(key: Any) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
