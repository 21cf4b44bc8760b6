"""Every resource type the sandbox implements, registered on import.

Each service module defines its types with `@provisioning.implements`; this
module only imports them all, so `provisioning.implemented_types()` is complete.
"""

from __future__ import annotations

from hivemind.sandbox import (  # noqa: F401  (imported for their registrations)
    connect_endpoint,
    ec2,
    elbv2,
    iam,
    monitoring,
    rds,
    s3,
    secretsmanager,
    xray,
)
