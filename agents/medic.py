"""Medic: why a deployment failed, with evidence, and the fix to apply before resuming.

(The contract below is fixed; the classifier, prompt and check are being written.)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hivemind.spec import DeploymentSpec

Cause = Literal[
    "missing_permission",
    "service_quota",
    "capacity",
    "invalid_parameter",
    "wrong_port",
    "missing_env_var",
    "database_unreachable",
    "build_failure",
    "timeout",
    "throttling",
    "unknown",
]


class Failure(BaseModel):
    """What is known about a failed stage: everything Medic reads."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    deployment_id: str
    stage: str  # synth, bootstrap, provision, deploy, verify
    what: str  # the error's headline
    cause: str = ""  # the error's cause line (e.g. CloudFormation's status reason)
    details: list[str] = Field(default_factory=list)  # more reasons, one per line
    command_output: str = ""  # the failed SSH command's stderr/stdout tail
    health_reason: str = ""  # the load balancer's reason code and description
    app_log: list[str] = Field(default_factory=list)  # the app's log tail
    spec: DeploymentSpec | None = None


class PermissionFix(BaseModel):
    """The IAM statement the operator's identity lacks."""

    action: str = Field(description="the IAM action, e.g. ec2:RunInstances")
    resource: str = Field("*", description="the resource ARN from the message, or *")
    statement: dict[str, object] = Field(description="the IAM policy statement to add")


class Fix(BaseModel):
    """A concrete fix: a change to the spec, a command for the user, or both."""

    explanation: str = Field(description="what the fix does and why, in one or two sentences")
    spec_changes: dict[str, str | int | bool | None] = Field(
        default_factory=dict,
        description="dotted spec paths to new values, e.g. {'compute.instance_type': "
        "'t3a.small'}; empty when the fix is not a spec change",
    )
    env_needed: list[str] = Field(
        default_factory=list,
        description="environment variables whose values the user must give (the fix asks)",
    )
    command: str | None = Field(None, description="a command for the user to run, if any")
    permission: PermissionFix | None = None


class Diagnosis(BaseModel):
    """Medic's answer: the cause, the evidence (verbatim lines), and the fix if any."""

    cause: Cause
    summary: str = Field(description="the cause in plain words, one sentence")
    evidence: list[str] = Field(
        description="lines copied exactly from the failure's text that show the cause"
    )
    fix: Fix | None = None
