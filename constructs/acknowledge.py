"""Accepting a security finding on purpose: always with the reason, in code."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

MIN_REASON_LENGTH = 20


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge that cdk-nag rule ``rule_id`` does not apply to ``construct`` and its children.

    ``rule_id`` is the rule as reported (``AwsSolutions-EC23``, or one finding
    of it, ``AwsSolutions-IAM5[Action::s3:*]``). ``reason`` must say why, in at
    least MIN_REASON_LENGTH characters; otherwise ValueError.

    The acknowledgement is recorded under the pack's namespace
    (``AwsSolutions::AwsSolutions-EC23``): CDK then lists the violation under
    ``suppressedViolations`` in the validation report, with the reason and the
    construct that acknowledged it. (A bare id would also silence the rule, but
    cdk-nag would drop it before the report, leaving no trace there.)
    """
    rule_id = rule_id.strip()
    if not rule_id:
        raise ValueError("acknowledge needs the id of the rule, e.g. 'AwsSolutions-EC23'")
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(
            f"acknowledging {rule_id} on {construct.node.path} needs a reason of at least "
            f"{MIN_REASON_LENGTH} characters that says why the rule does not apply; "
            f"got {reason.strip()!r}"
        )
    rule_name = rule_id.split("[", 1)[0]
    if "::" not in rule_name:
        pack = rule_name.split("-", 1)[0]
        rule_id = f"{pack}::{rule_id}"
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason.strip()))
