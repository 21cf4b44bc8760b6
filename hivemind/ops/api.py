"""AWS errors of the ops views, explained: what failed, the call, AWS's words, what to do."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hivemind.errors import HiveMindError

_DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Unauthorized")
_THROTTLED = (
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "LimitExceededException",
    "RequestLimitExceeded",
)


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(error, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def error_message(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        message = response.get("Error", {}).get("Message")
        if message:
            return f"{error_code(error)}: {message}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def explain(error: Exception, *, what: str, action: str, where: str) -> HiveMindError:
    """A HiveMindError for a failed AWS call `action` (e.g. logs:FilterLogEvents)."""
    code = error_code(error)
    if code in _DENIED:
        next_step = (
            f"attach the policy `hivemind iam-policy` prints (it grants {action}) to "
            "your identity, then run the command again"
        )
    elif code in _THROTTLED:
        next_step = "AWS is throttling the calls: wait a minute and try again, or pass a "
        next_step += "shorter --since"
    elif not code:
        next_step = "check the network and your AWS access with `hivemind doctor`, then try again"
    else:
        next_step = "run `hivemind doctor` to check your AWS access, then try again"
    return HiveMindError(
        f"{what}: {action} failed", where=where, cause=error_message(error), next_step=next_step
    )


@contextmanager
def explained(*, what: str, action: str, where: str) -> Iterator[None]:
    """Turn botocore's errors raised inside into a HiveMindError (see `explain`)."""
    import botocore.exceptions  # lazy: the status command without ops flags never needs it

    try:
        yield
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as error:
        if isinstance(
            error,
            (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError),
        ):
            raise  # the CLI explains missing credentials for every command alike
        raise explain(error, what=what, action=action, where=where) from None
