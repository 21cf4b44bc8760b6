"""The sandbox daemon's credentials: only whoever can read its HiveMind home may call it.
(Standard library only at import: `control`, which imports neither moto nor boto3,
reads them.)

A sandbox daemon serves on a loopback port that every user of the machine can reach.
Each daemon start makes an access key of its own (an `AKIA` id and a 40-character
secret, in AWS's formats) and writes it to `<home>/sandbox/credentials.json`, mode 0600,
before its pid file: `control.status` reads it, and `control.environment` gives it to
boto3, the AWS CLI and the CDK CLI as their credentials. The daemon then refuses:

* an AWS API request signed with another access key id (the SigV4 `Authorization`
  header's, or a presigned URL's `X-Amz-Credential`) than the daemon's or one the
  sandbox issued to its holder (STS temporary credentials, as from the AssumeRole the
  CDK CLI makes for its deploy role; an IAM user's key), or not signed: HTTP 403 with the
  error AWS answers for an unknown key, `InvalidClientTokenId` / "The security token
  included in the request is invalid." (`UnrecognizedClientException` for the JSON
  protocols), as in the IAM, STS and CloudFormation API references' common errors;
* a control request (`/moto-api/...`: faults, reset, moto's own) without the secret in
  `SECRET_HEADER`; only `/moto-api/hivemind/ping` answers anyone (it says whose daemon
  it is: its pid).

What it does not check: the signature itself (the id is what only the home's owner can
read; the SigV4 signature would prove the secret too). A sandbox server a test starts in
its own process (`server.start_server()` without `credentials`) takes any key, as moto
does.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

FILE = "credentials.json"
SECRET_HEADER = "X-HiveMind-Sandbox-Secret"
PING_PATH = "/moto-api/hivemind/ping"
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/")
_INVALID = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str


def new() -> Credentials:
    upper = string.ascii_uppercase + string.digits
    return Credentials(
        "AKIA" + "".join(secrets.choice(upper) for _ in range(16)),
        "".join(secrets.choice(string.ascii_letters + string.digits + "+/") for _ in range(40)),
    )


def write(directory: Path, credentials: Credentials) -> None:
    """Write the daemon's credentials, readable by the home's owner only."""
    path = directory / FILE
    temporary = path.with_name(f".{FILE}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(credentials.__dict__, handle)
    os.replace(temporary, path)


def read(directory: Path) -> Credentials | None:
    try:
        data = json.loads((directory / FILE).read_text(encoding="utf-8"))
        return Credentials(str(data["access_key_id"]), str(data["secret_access_key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def access_key_of(environ: dict[str, Any]) -> str | None:
    """The access key id a request is signed with (SigV4 header or presigned URL)."""
    found = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    if found:
        return found.group(1)
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    for value in query.get("X-Amz-Credential", []):
        return value.split("/", 1)[0]
    return None


def issued_by_sandbox(key: str) -> bool:
    """Whether `key` is one the sandbox itself issued: temporary credentials from STS
    (AssumeRole, as the CDK CLI assumes its deploy role; GetSessionToken) or an IAM
    user's access key. Each was asked for by a caller holding the daemon's key."""
    if not key.startswith(("ASIA", "AKIA")):
        return False
    from moto.iam.models import iam_backends  # the daemon has moto; `control` does not

    for account_id in list(iam_backends.keys()):
        for backend in list(iam_backends[account_id].values()):
            if key in getattr(backend, "access_keys", {}):
                return True
    return False


def guard(app: Callable[..., Iterable[bytes]], credentials: Credentials) -> Callable[..., Any]:
    """`app` (a WSGI application) behind the credentials check described above."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if path == PING_PATH:
            return app(environ, start_response)
        if path.startswith("/moto-api/"):
            given = environ.get("HTTP_" + SECRET_HEADER.upper().replace("-", "_"), "")
            if secrets.compare_digest(str(given), credentials.secret_access_key):
                return app(environ, start_response)
            body = json.dumps({"error": "this sandbox belongs to another HiveMind home"})
            start_response("403 Forbidden", [("Content-Type", "application/json")])
            return [body.encode()]
        key = access_key_of(environ) or ""
        if secrets.compare_digest(key, credentials.access_key_id) or issued_by_sandbox(key):
            return app(environ, start_response)
        return _refused(environ, start_response)

    return guarded


def _refused(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    request_id = secrets.token_hex(16)
    if "json" in str(environ.get("CONTENT_TYPE", "")):
        body = json.dumps({"__type": "UnrecognizedClientException", "message": _INVALID})
        headers = [
            ("Content-Type", "application/x-amz-json-1.1"),
            ("x-amzn-ErrorType", "UnrecognizedClientException"),
            ("x-amzn-RequestId", request_id),
        ]
    else:
        body = (
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>"
            f"<Message>{_INVALID}</Message></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>"
        )
        headers = [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)]
    start_response("403 Forbidden", headers)
    return [body.encode()]
