"""Clients for AWS, or for the sandbox: the same code, another endpoint.

boto3 reads the standard credential chain (AWS_PROFILE, ~/.aws, environment) and
`AWS_ENDPOINT_URL`, which is how the sandbox points every client at itself.
"""

from __future__ import annotations

import threading
from typing import Any

from hivemind.errors import BadInputError

_LOADER_LOCK = threading.Lock()
_LOADER: Any = None  # botocore's data loader, shared by every session of this process


def client(service: str, region: str) -> Any:
    """A client for the command's target (AWS, or the sandbox when asked for): the same
    client boto3 gives, made by botocore directly (boto3's import, which pulls in
    s3transfer, costs ~0.1 s more on every command)."""
    import botocore.exceptions
    import botocore.session

    from hivemind.targets import prepare

    prepare(region)
    try:
        return session().create_client(service, region_name=region)
    except botocore.exceptions.BotoCoreError as exc:
        raise BadInputError(
            f"cannot talk to AWS {service} in {region}",
            cause=str(exc),
            next_step="run `hivemind doctor` to see what is missing",
        ) from None


def session() -> Any:
    """A new botocore session (it reads the credentials and endpoint the environment names
    now, which `prepare` may just have changed) that shares this process's data loader.

    The loader parses and keeps botocore's JSON: the endpoints and each service's model
    (EC2's is megabytes). A new session with its own loader parses them again: measured,
    10 clients of 10 services took 1.6 s on fresh sessions, 0.2 s the second time over
    one loader; a deploy makes a few dozen clients. The loader only caches what is read
    from botocore's own data files, so sharing it changes nothing a client does."""
    import botocore.session

    global _LOADER
    fresh = botocore.session.get_session()
    with _LOADER_LOCK:
        if _LOADER is None:
            _LOADER = fresh.get_component("data_loader")
        else:
            fresh.register_component("data_loader", _LOADER)
    return fresh
