"""QA: the verdict on a deployment's checks, in a paragraph a person reads once.

Called after the verify stage (hivemind/qa.py's checks: the health path and `/` through
the load balancer, its listener ports, the app's port on every instance, the database
from an instance, the TLS certificate). The verdict is the data's, never a judgement:
it passed when no check failed. For each failed check it says what the failure means
and what to look at next.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hivemind.records import CheckResult
from hivemind.spec import DeploymentSpec

from .base import Agent, Rejected

_HTTP_CODE = re.compile(r"HTTP (\d{3})")
_DAYS_LEFT = re.compile(r"\(in (-?\d+) days\)")


class QAInput(BaseModel):
    """The checks' results, and which deployment they are of."""

    model_config = ConfigDict(frozen=True)

    checks: tuple[CheckResult, ...]
    deployment_id: str | None = None
    spec: DeploymentSpec | None = None


class FailingCheck(BaseModel):
    """A failed check, explained."""

    name: str = Field(description="the check's name, exactly as given")
    explanation: str = Field(description="what the failure means, in plain words")
    next_step: str = Field(description="what to look at or change next")


class QAVerdict(BaseModel):
    """QA's answer."""

    passed: bool = Field(description="true exactly when no check failed")
    summary: str = Field(description="one paragraph: what was checked and what it showed")
    failing: list[FailingCheck] = Field(description="every failed check, most telling first")


class QA(Agent[QAInput, QAVerdict]):
    name: ClassVar[str] = "qa"
    output = QAVerdict
    prompt: ClassVar[str] = """
You are QA, HiveMind's verifier. After a deploy HiveMind checks the deployment from the
outside and from an instance: the app's health path and `/` through the load balancer's
URL, the load balancer's listener ports, the app's port on every instance, the database
from an instance, and the TLS certificate when HTTPS is on. Each check passed, failed
(with the reason) or did not apply (with why).

Give the verdict (passed is true exactly when no check failed), one paragraph that a
developer reads once (what was checked, what it showed, with the numbers from the
details), and for each failed check, by its exact name: what the failure means in plain
words (e.g. HTTP 502 from the load balancer: the app is not answering on its port on
the instances; 404 on the health path: the app has no such route) and the next thing to
look at. Put the failure that explains the others first.
"""

    def describe(self, inputs: QAInput) -> str:
        lines = [f"Deployment {inputs.deployment_id or '(unnamed)'} checks:"]
        for check in inputs.checks:
            took = f" ({check.seconds:.2f}s)" if check.seconds is not None else ""
            lines.append(f"- {check.name}: {check.status}: {check.detail}{took}")
        if inputs.spec is not None:
            app = inputs.spec.app
            lines.append(
                f"The app: port {app.port}, health path {app.health_path}, database "
                f"{inputs.spec.database.engine}, HTTPS "
                f"{'on' if inputs.spec.access.certificate_arn else 'off'}."
            )
        return "\n".join(lines)

    def check(self, inputs: QAInput, proposal: QAVerdict) -> QAVerdict:
        """`passed` must be "no check failed"; every failing name must be a failed check,
        once; failed checks the answer left out get HiveMind's explanation."""
        failed = {c.name: c for c in inputs.checks if c.status == "failed"}
        names = {c.name for c in inputs.checks}
        if proposal.passed != (not failed):
            raise Rejected(f"{len(failed)} check(s) failed: passed must be {not failed}")
        seen: set[str] = set()
        for item in proposal.failing:
            if item.name not in names:
                raise Rejected(f"there is no check named {item.name!r}")
            if item.name not in failed:
                raise Rejected(f"the check {item.name!r} did not fail")
            if item.name in seen:
                raise Rejected(f"the check {item.name!r} is listed twice")
            seen.add(item.name)
        missing = [explain(c, inputs) for name, c in failed.items() if name not in seen]
        if not missing:
            return proposal
        return proposal.model_copy(update={"failing": proposal.failing + missing})

    def fallback(self, inputs: QAInput) -> QAVerdict:
        failed = [c for c in inputs.checks if c.status == "failed"]
        ordered = sorted(failed, key=_telling)
        return QAVerdict(
            passed=not failed,
            summary=_summary(inputs, ordered),
            failing=[explain(c, inputs) for c in ordered],
        )


def _telling(check: CheckResult) -> int:
    """Which failure explains the others: an instance's app port before the load balancer's
    answers, the load balancer's answers before the database and TLS."""
    order = ("app port", "http health", "http /", "load balancer port", "database", "tls")
    return next((i for i, prefix in enumerate(order) if check.name.startswith(prefix)), len(order))


def _summary(inputs: QAInput, failed: list[CheckResult]) -> str:
    checks = inputs.checks
    applicable = [c for c in checks if c.status != "not_applicable"]
    skipped = [c for c in checks if c.status == "not_applicable"]
    if not checks:
        return "No checks ran, so nothing is verified."
    if not failed:
        text = f"All {len(applicable)} applicable checks passed: " + "; ".join(
            f"{c.name} ({c.detail})" for c in applicable
        )
    else:
        passed = [c for c in applicable if c.status == "passed"]
        text = (
            f"{len(failed)} of {len(applicable)} applicable checks failed: "
            + "; ".join(f"{c.name} ({c.detail})" for c in failed)
            + f". {explain(failed[0], inputs).explanation}"
        )
        if passed:
            text += " These passed: " + ", ".join(c.name for c in passed)
    if skipped:
        text += ". Not applicable: " + "; ".join(f"{c.name} ({c.detail})" for c in skipped)
    return text + "."


def explain(check: CheckResult, inputs: QAInput) -> FailingCheck:
    """HiveMind's explanation of one failed check, from its name and detail."""
    ident = inputs.deployment_id or "ID"
    status = f"`hivemind status {ident}`"
    logs = f"`hivemind status {ident} --show-logs`"
    retry = f"then `hivemind retry {ident}`"
    health_path = inputs.spec.app.health_path if inputs.spec else "the health path"
    port = inputs.spec.app.port if inputs.spec else None
    detail = check.detail
    code_found = _HTTP_CODE.search(detail)
    code = int(code_found.group(1)) if code_found else None
    name = check.name

    if name in ("http health", "http /"):
        page = f"the health path {health_path}" if name == "http health" else "the home page /"
        if code == 502:
            why = (
                f"The load balancer got no valid answer from the instances for {page}: the app "
                "crashed or is not listening on its port."
            )
            step = f"Read the app's log ({logs}), fix the crash, {retry}."
        elif code == 503:
            why = "The load balancer has no healthy instance to send the request to."
            step = f"See each target's health and reason in {status}."
        elif code == 504:
            why = f"The app took longer than the load balancer waits to answer {page}."
            step = f"Find what the request waits on in the app's log ({logs})."
        elif code == 404:
            why = f"The app has no route at {page}."
            step = f"Set app.health_path in hivemind.yaml to a path that answers 200, {retry}."
        elif code in (401, 403):
            why = f"{page.capitalize()} requires a login, so the check is refused."
            step = f"Make the health path public, or set app.health_path to one that is, {retry}."
        elif code is not None:
            why = f"The app answered {page} with HTTP {code}, a server error."
            step = f"The app's log says why ({logs})."
        else:
            why = (
                "Nothing answered through the load balancer's URL: its DNS name may not "
                "resolve yet, or its listener or security group does not take the request."
            )
            step = f"Try the URL again in a minute; {status} shows the load balancer."
    elif name.startswith("load balancer port"):
        why = (
            "The load balancer does not accept connections on that port: its listener or the "
            "security group rule for it is missing."
        )
        step = f"Compare the stack's listeners with the plan ({status})."
    elif name.startswith("app port"):
        where = f"port {port}" if port else "its port"
        why = (
            f"The app is not listening on {where} on that instance: it crashed, or it listens "
            "on another port or only on 127.0.0.1."
        )
        step = (
            f"Read the app's log ({logs}); the app must listen on 0.0.0.0 and $PORT "
            f"(app.port in hivemind.yaml), {retry}."
        )
    elif name == "database":
        if "no instance" in detail:
            why = "There was no instance to check the database from."
            step = f"{status} shows the instances."
        else:
            why = (
                "An instance could not open a connection to the database: it may still be "
                "starting, or its security group does not let the app's instances in."
            )
            step = f"Check the database's status in {status}, {retry}."
    elif name == "tls":
        days = _DAYS_LEFT.search(detail)
        if days is not None:
            why = f"The certificate expires in {days.group(1)} days."
            step = (
                "Renew it in ACM (DNS-validated certificates renew themselves), or set "
                "access.certificate_arn to a new one."
            )
        else:
            why = "The HTTPS handshake failed: the certificate is not trusted or is not for "
            why += "the deployment's domain."
            step = "Use an ACM certificate that covers access.domain (access.certificate_arn), "
            step += "or set access.domain to the name the certificate is for."
    else:
        why = f"The check failed: {detail}."
        step = f"{status} shows every check."
    return FailingCheck(name=name, explanation=why, next_step=step)
