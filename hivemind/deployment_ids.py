"""Deployment ids: `<app-slug>-<10 random base32 chars>`, readable and collision-proof."""

from __future__ import annotations

import base64
import re
import secrets

from hivemind.errors import BadInputError

SUFFIX_LENGTH = 10
DEPLOYMENT_ID_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]-[a-z2-7]{10}$")
PREVIEW_SUFFIX = "preview"


def new_deployment_id(app_slug: str) -> str:
    """A fresh id for a new deployment of `app_slug` (50 random bits)."""
    suffix = base64.b32encode(secrets.token_bytes(10)).decode().lower()[:SUFFIX_LENGTH]
    return f"{app_slug}-{suffix}"


def preview_id(app_slug: str) -> str:
    """The id `synth` uses before anything is deployed; never a real deployment's."""
    return f"{app_slug}-{PREVIEW_SUFFIX}"


def stack_name(deployment_id: str) -> str:
    """The CloudFormation stack of a deployment (also the prefix of its IAM names)."""
    return f"hivemind-{deployment_id}"


def check_deployment_id(value: str) -> str:
    if not DEPLOYMENT_ID_PATTERN.match(value):
        raise BadInputError(
            f"{value!r} is not a deployment id",
            cause="deployment ids look like shop-k2j4m6p8q1: the app's name, a dash, "
            f"{SUFFIX_LENGTH} letters a-z and digits 2-7",
            next_step="copy the id from `hivemind status` or the deploy report",
        )
    return value
