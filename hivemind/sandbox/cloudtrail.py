"""CloudTrail's LookupEvents for the sandbox, which moto lacks.

The CDK CLI looks up CloudTrail events to explain a failed deployment; moto answers
with a server error, which the CLI's SDK retries for about twenty seconds before it
reports the failure. The sandbox records no CloudTrail events, so it answers with none.
"""

from __future__ import annotations

import json

from moto.cloudtrail.responses import CloudTrailResponse

from hivemind.sandbox import patching


def _lookup_events(self: CloudTrailResponse) -> str:
    return json.dumps({"Events": []})


def install() -> None:
    """Answer LookupEvents with no events (idempotent)."""
    patching.serve(CloudTrailResponse, "cloudtrail", "LookupEvents", _lookup_events)
