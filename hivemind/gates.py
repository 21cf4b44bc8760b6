"""The security and lint gates every synth passes, reported as one kind of finding.

Two tools look at what we are about to deploy:

* **cdk-nag** (AWS Solutions rules) checks the construct tree during synthesis.
  In cdk-nag 3 it is a CDK policy-validation plugin: CDK runs it inside
  ``app.synth()`` and writes its verdict to ``validation-report.json`` in the
  cloud assembly. Left to its defaults, CDK then *raises* (a jsii
  ``RuntimeError`` "ValidationFailed: ...") and prints the report on stderr.
  ``attach_security_checks`` switches that off so that ``synth_with_checks``
  always gets the assembly and reads the findings from the report as data.
* **cfn-lint** checks the synthesized CloudFormation templates against the
  resource schemas of the target regions (``lint_templates``).

A rule that does not apply is acknowledged on the construct, with a reason,
through ``hivemind_constructs.acknowledge.acknowledge``; the acknowledgement
stays visible in the report (under ``suppressedViolations``).

The heavy libraries (aws_cdk starts a Node process, cfn-lint loads its schemas)
are imported inside the functions, so importing this module for ``Finding`` is
cheap.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from aws_cdk import App
    from aws_cdk.cx_api import CloudAssembly

Tool = Literal["cdk-nag", "cfn-lint"]
Level = Literal["error", "warning", "info"]

VALIDATION_REPORT_FILE = "validation-report.json"
"""Where CDK (aws-cdk-lib 2.275) writes the policy-validation report, in the assembly root.

cdk-nag's MIGRATION.md says ``policy-validation-report.json``; that legacy name is
only written when the context ``@aws-cdk/core:validationReportJson`` is true.
"""

# With this context false, CDK writes the report but neither raises nor prints it.
_FAIL_SYNTH_ON_VALIDATION_ERRORS = "@aws-cdk/core:failSynthOnValidationErrors"

_LEVEL_ORDER: dict[Level, int] = {"error": 0, "warning": 1, "info": 2}

# cfn-lint quotes the allowed values of an enum in its message: for an EC2
# instance type that is every instance type of the region (20 kB).
_MAX_MESSAGE_CHARS = 400

_CDK_NAG_RULES_URL = "https://github.com/cdklabs/cdk-nag/blob/main/RULES.md"
_CFN_LINT_RULES_URL = "https://github.com/aws-cloudformation/cfn-lint/blob/main/docs/rules.md"

# A verbose cdk-nag description is "<what is wrong> <why it matters / what to do>".
_FIRST_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclass(frozen=True)
class Finding:
    """One problem a gate found, in the same shape whichever tool found it.

    ``resource`` is the construct path (``Stack/Bucket/Resource``) when known,
    otherwise the template's logical id; ``fix`` says what to do about it.
    """

    tool: Tool
    rule: str
    level: Level
    resource: str
    message: str
    fix: str


def attach_security_checks(app: App) -> None:
    """Check every synth of ``app`` against cdk-nag's AWS Solutions rules, with explanations.

    Call it right after creating the app, before any stack is added: it also
    tells CDK to report violations instead of raising on them, and CDK accepts
    that setting only on an app without children. Raises ValueError otherwise.
    """
    from aws_cdk import Validations
    from cdk_nag import AwsSolutionsChecks

    if app.node.children:
        added = ", ".join(child.node.id for child in app.node.children)
        raise ValueError(
            "attach_security_checks(app) must run before any stack is added to the app "
            f"(already added: {added})"
        )
    app.node.set_context(_FAIL_SYNTH_ON_VALIDATION_ERRORS, False)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))


def synth_with_checks(app: App) -> tuple[CloudAssembly, list[Finding]]:
    """Synthesize ``app`` and return its cloud assembly with the security findings.

    Violations never raise: the assembly is complete either way and the caller
    decides what a finding blocks. Other synthesis errors propagate.
    """
    from aws_cdk.cx_api import CloudAssembly

    try:
        assembly = app.synth()
    except RuntimeError as error:
        # Only reached when the validation plugins were registered without
        # attach_security_checks; CDK has written the assembly and the report
        # before raising.
        if not str(error).startswith("ValidationFailed"):
            raise
        assembly = CloudAssembly(app.outdir)
    return assembly, security_findings(Path(assembly.directory))


def security_findings(cdk_out: Path) -> list[Finding]:
    """The cdk-nag findings recorded in the validation report of the assembly at ``cdk_out``.

    Acknowledged violations are not findings. Reports of CDK's own validation
    plugins ("CloudFormation Validate", "Construct Annotations") are left out:
    cfn-lint is our template gate. No report (no plugin ran) means no findings.
    """
    report_file = cdk_out / VALIDATION_REPORT_FILE
    if not report_file.is_file():
        return []
    report = json.loads(report_file.read_text(encoding="utf-8"))
    findings: list[Finding] = []
    for plugin_report in report.get("pluginReports", []):
        if not _is_cdk_nag_report(plugin_report):
            continue
        for violation in plugin_report.get("violations", []):
            rule = str(violation["ruleName"])
            message, fix = _split_explanation(str(violation.get("description", "")))
            findings.extend(
                Finding(
                    tool="cdk-nag",
                    rule=rule,
                    level=_level(str(violation.get("severity", ""))),
                    resource=str(construct.get("constructPath", "")),
                    message=message,
                    fix=fix or f"See {rule} in {_CDK_NAG_RULES_URL}",
                )
                for construct in violation.get("violatingConstructs", [])
            )
    return _sorted(findings)


def lint_templates(cdk_out: Path, regions: Sequence[str] = ("us-east-1",)) -> list[Finding]:
    """Run cfn-lint over every ``*.template.json`` at the top of the assembly folder ``cdk_out``.

    Templates are checked against the resource schemas of ``regions`` (the
    regions the stacks are meant for). Errors (E*) and warnings (W*) are
    reported, informational rules (I*) as level "info". Only the folder's top
    level is read: asset folders may hold unrelated files.

    The result is the same on every machine: cfn-lint's own configuration
    files (``~/.cfnlintrc``, ``./.cfnlintrc``) are not read, and nothing is
    downloaded (cfn-lint ships its schemas; it only fetches them for
    ``--update-specs``). Raises ValueError for a region cfn-lint does not know.
    """
    templates = sorted(cdk_out.glob("*.template.json"))
    if not templates:
        # An empty template list would make cfn-lint read a template from stdin.
        return []

    from cfnlint.config import ConfigMixIn  # type: ignore[import-untyped]
    from cfnlint.helpers import REGIONS  # type: ignore[import-untyped]

    unknown = sorted(set(regions) - set(REGIONS))
    if unknown:
        raise ValueError(f"cfn-lint does not know the region(s) {', '.join(unknown)}")
    # cfnlint.api.lint_file/lint_by_config merge ~/.cfnlintrc and ./.cfnlintrc into
    # the settings; a custom config file that does not exist replaces both with
    # nothing (os.devnull is not a regular file).
    config = ConfigMixIn(
        ["--config-file", os.devnull],
        templates=[str(template) for template in templates],
        regions=list(regions),
        include_checks=["I"],
    )
    cdk_paths = {str(template): _cdk_paths(template) for template in templates}
    findings = [
        _lint_finding(match, cdk_paths.get(str(match.filename), {}))
        for match in _reusing_runner()(config).run()
    ]
    return _sorted(findings)


# cfn-lint builds its rule collection (about 300 rule objects, two of which parse the
# IAM action tables, several megabytes of JSON) each time a Runner is made: about two
# CPU-seconds a template, which a process that lints more than once (`synth` of several
# specs, an update's synth after a deploy's) paid again and again. The collection is
# made for reuse: `Rules.run` configures and initializes each rule for the template it
# runs on, and cfn-lint's own `cfnlint.api.lint` takes a prebuilt one. The rule set
# depends only on which rule sources the configuration names, so it is kept per process
# by those.
_RULES: dict[tuple[Any, ...], Any] = {}


@functools.cache
def _reusing_runner() -> Any:
    from cfnlint.runner import Runner  # type: ignore[import-untyped]

    class _ReusingRunner(Runner):  # type: ignore[misc]
        def _get_rules(self) -> None:
            key = (tuple(self.config.append_rules), self.config.custom_rules)
            if key not in _RULES:
                super()._get_rules()
                _RULES[key] = self.rules  # type: ignore[has-type]
            self.rules = _RULES[key]

    return _ReusingRunner


def _lint_finding(match: Any, cdk_paths: Mapping[str, str]) -> Finding:
    rule = match.rule
    rule_id = str(rule.id)
    path = list(getattr(match, "path", None) or [])
    if len(path) >= 2 and path[0] == "Resources":
        resource = cdk_paths.get(str(path[1]), str(path[1]))
    elif len(path) >= 2:
        resource = f"{path[0]}/{path[1]}"
    else:
        resource = Path(str(match.filename or "template")).name
    severity = str(rule.severity)
    level: Level = "info" if severity == "informational" else _level(severity)
    message = str(match.message)
    if len(message) > _MAX_MESSAGE_CHARS:
        message = message[: _MAX_MESSAGE_CHARS - 1].rstrip() + "…"
    description = str(rule.description or rule.shortdesc)
    return Finding(
        tool="cfn-lint",
        rule=rule_id,
        level=level,
        resource=resource,
        message=message,
        fix=f"{description} ({rule.source_url or _CFN_LINT_RULES_URL})",
    )


def _cdk_paths(template: Path) -> dict[str, str]:
    """Logical id -> construct path, from the ``aws:cdk:path`` metadata CDK writes."""
    try:
        resources = json.loads(template.read_text(encoding="utf-8")).get("Resources", {})
    except (ValueError, AttributeError):
        return {}  # cfn-lint reports the unreadable template itself
    return {
        logical_id: str(definition["Metadata"]["aws:cdk:path"])
        for logical_id, definition in resources.items()
        if isinstance(definition, dict)
        and isinstance(definition.get("Metadata"), dict)
        and "aws:cdk:path" in definition["Metadata"]
    }


def _is_cdk_nag_report(plugin_report: Mapping[str, Any]) -> bool:
    # A cdk-nag pack's plugin name is its pack name and every rule it reports
    # is "<pack name>-<rule>" (AwsSolutions-S10); CDK's own plugins differ (W2508).
    prefix = f"{plugin_report.get('pluginName', '')}-"
    rules = [str(v.get("ruleName", "")) for v in plugin_report.get("violations", [])]
    return bool(rules) and all(rule.startswith(prefix) for rule in rules)


def _split_explanation(description: str) -> tuple[str, str]:
    parts = _FIRST_SENTENCE_END.split(description.strip(), maxsplit=1)
    return (parts[0], parts[1]) if len(parts) == 2 else (description.strip(), "")


def _level(severity: str) -> Level:
    if severity in ("error", "fatal"):
        return "error"
    if severity == "warning":
        return "warning"
    return "info"


def _sorted(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(
        findings, key=lambda f: (_LEVEL_ORDER[f.level], f.tool, f.rule, f.resource, f.message)
    )
