"""What `hivemind synth` does, without click: resolve the spec, synthesize, compare with
what is deployed, and present it all."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hivemind.cli.render import table
from hivemind.cost import DEFAULT_PRICES, CostEstimate, PriceTable, estimate, live_prices
from hivemind.deployment_ids import check_deployment_id, preview_id
from hivemind.errors import BadInputError, HiveMindError
from hivemind.paths import home
from hivemind.resolve import Overrides, spec_for_repo
from hivemind.spec import DeploymentSpec
from hivemind.synth import SynthResult, synthesize
from hivemind.template_diff import TemplateDiff, diff_templates, template_of


@dataclass(frozen=True)
class DeployedComparison:
    diff: TemplateDiff
    deployed_cost: CostEstimate


@dataclass(frozen=True)
class Advice:
    """What the agents say about a plan: why it is what it is (Compiler) and what the
    gates' findings mean (Sheriff), each with who said it."""

    explanation: Any  # hivemind_agents.compiler.PlanExplanation
    explained_by: str
    review: Any = None  # hivemind_agents.sheriff.SecurityReview, when there are findings
    reviewed_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "explanation": self.explanation.model_dump(mode="json"),
            "explained_by": self.explained_by,
            "review": self.review.model_dump(mode="json") if self.review else None,
            "reviewed_by": self.reviewed_by or None,
        }


def advise(spec: DeploymentSpec, result: SynthResult, advisor: Any = None) -> Advice:
    """Ask Compiler why the plan is what it is, and Sheriff about any gate findings."""
    from hivemind_agents.base import Advisor
    from hivemind_agents.compiler import Compiler, CompilerInput
    from hivemind_agents.sheriff import Sheriff, SheriffInput

    advisor = advisor or Advisor()
    explanation = advisor.ask(Compiler(), CompilerInput.from_synth(spec, result))
    if not result.findings:
        return Advice(explanation.value, explanation.provenance)
    review = advisor.ask(Sheriff(), SheriffInput.from_synth(result, spec))
    return Advice(explanation.value, explanation.provenance, review.value, review.provenance)


@dataclass(frozen=True)
class SynthReport:
    spec: DeploymentSpec
    out_dir: Path
    result: SynthResult
    comparison: DeployedComparison | None
    advice: Advice | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.result.blocking_findings)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "out_dir": str(self.out_dir),
            "spec": self.spec.model_dump(mode="json"),
            **self.result.model_dump(mode="json"),
            "blocked": self.blocked,
        }
        if self.advice is not None:
            data["advice"] = self.advice.as_dict()
        if self.comparison is not None:
            diff = self.comparison.diff
            data["changes"] = {
                kind: [vars(c) | {"stateful": c.stateful} for c in getattr(diff, kind)]
                for kind in ("added", "modified", "replaced", "removed")
            }
            data["changes"]["data_at_risk"] = [c.logical_id for c in diff.data_at_risk]
            data["changes"]["monthly_cost_difference_usd"] = round(
                self.result.cost.total_usd - self.comparison.deployed_cost.total_usd, 2
            )
        return data

    def render(self) -> str:
        result = self.result
        cached = " (from the synth cache)" if result.cached else ""
        lines = [
            f"Synthesized {result.stack_name}{cached}",
            f"  {self.out_dir / result.template_file}  ({result.template_bytes:,} bytes)",
            "",
            f"Resources ({sum(result.resources.values())}):",
            table(
                ["count", "type"],
                [
                    [str(n), t]
                    for t, n in sorted(result.resources.items(), key=lambda i: (-i[1], i[0]))
                ],
            ),
            "",
            f"Estimated monthly cost: ${result.cost.total_usd:,.2f} "
            f"(on-demand, {result.cost.region}, prices as of {result.cost.prices_as_of})",
            table(
                ["$/month", "what", "resource"],
                [
                    [f"{line.monthly_usd:,.2f}", line.description, line.logical_id]
                    for line in result.cost.lines
                ],
            ),
        ]
        lines += [f"  * {a}" for a in result.cost.assumptions]
        minutes = result.provisioning_seconds / 60
        path = " -> ".join(f"{s['logical_id']} ({s['seconds']}s)" for s in result.critical_path)
        lines += ["", f"Estimated provisioning time: {minutes:.0f} min", f"  critical path: {path}"]
        if self.advice is not None:
            lines += ["", self._why()]
        lines += ["", self._gates()]
        if self.advice is not None and self.advice.review is not None:
            lines += ["", self._review()]
        if self.comparison is not None:
            lines += ["", self._changes()]
        notes = [*self.spec.notes, *self.result.notes]
        if notes:
            lines += ["", "Notes:"] + [f"  ! {note}" for note in notes]
        return "\n".join(lines)

    def _gates(self) -> str:
        findings = self.result.findings
        if not findings:
            return "Gates: cdk-nag AwsSolutions and cfn-lint passed (0 findings)."
        rows = [
            [f["level"], f["tool"], f["rule"], f["resource"], f"{f['message']} -> {f['fix']}"]
            for f in findings
        ]
        return f"Gates: {len(findings)} finding(s)\n" + table(
            ["level", "tool", "rule", "resource", "message -> fix"], rows
        )

    def _why(self) -> str:
        assert self.advice is not None
        explanation = self.advice.explanation
        lines = [f"Why this plan ({self.advice.explained_by}):"]
        for point in explanation.points:
            lines.append(f"  {point.title}: {point.text}")
            if point.change_with:
                lines.append(f"    change with: {point.change_with}")
        return "\n".join(lines)

    def _review(self) -> str:
        assert self.advice is not None and self.advice.review is not None
        review = self.advice.review
        lines = [f"What the findings mean ({self.advice.reviewed_by}): {review.summary}"]
        for item in review.findings:
            lines.append(f"  {item.rule} on {item.resource}: {item.what}")
            lines.append(f"    why it matters: {item.why_it_matters}")
            lines.append(f"    fix: {item.fix}")
            for change in item.spec_changes:
                lines.append(f"    set {change.path} = {json.dumps(change.value)}")
        return "\n".join(lines)

    def _changes(self) -> str:
        assert self.comparison is not None
        diff = self.comparison.diff
        delta = self.result.cost.total_usd - self.comparison.deployed_cost.total_usd
        if diff.empty:
            return "Against the deployed stack: no resource changes."
        lines = [f"Against the deployed stack (monthly cost {delta:+,.2f} USD):"]
        for kind in ("added", "modified", "replaced", "removed"):
            for change in getattr(diff, kind):
                props = f" ({', '.join(change.properties)})" if change.properties else ""
                lines.append(f"  {kind:9} {change.logical_id} {change.resource_type}{props}")
        for change in diff.data_at_risk:
            lines.append(
                f"  ! {change.logical_id} ({change.resource_type}) would be replaced or removed: "
                "its data would be lost"
            )
        return "\n".join(lines)


def plan_with_changes(
    spec: DeploymentSpec,
    folder: Path,
    result: SynthResult,
    deployed: dict[str, Any] | None,
    advisor: Any = None,
) -> str:
    """The synth report, with what would change against `deployed` when there is one."""
    comparison = _compare(spec, folder, result, deployed) if deployed is not None else None
    return SynthReport(spec, folder, result, comparison, advise(spec, result, advisor)).render()


def _compare(
    spec: DeploymentSpec,
    folder: Path,
    result: SynthResult,
    deployed: dict[str, Any],
    prices: PriceTable = DEFAULT_PRICES,
) -> DeployedComparison:
    proposed = json.loads((folder / result.template_file).read_text(encoding="utf-8"))
    return DeployedComparison(
        diff_templates(deployed, proposed), estimate(deployed, spec.region, prices)
    )


def run_synth(
    *,
    repo: str | None,
    spec_file: Path | None,
    overrides: Overrides,
    deployment_id: str | None,
    out_dir: Path | None,
    live_prices: bool,
    use_cache: bool,
    progress: Callable[[str], None],
    advisor: Any = None,
) -> SynthReport:
    spec = load_spec(repo, spec_file, overrides, progress, advisor)
    target = check_deployment_id(deployment_id) if deployment_id else preview_id(spec.app.name)
    out = out_dir or home() / "previews" / target
    prices = _live_price_table(spec.region, progress) if live_prices else DEFAULT_PRICES
    progress(f"Synthesizing {target} ...")
    result = synthesize(spec, target, out, prices=prices, use_cache=use_cache and not live_prices)
    comparison = None
    if deployment_id:
        deployed = _deployed_template(result.stack_name, spec.region)
        comparison = _compare(spec, out, result, deployed, prices)
    return SynthReport(spec, out, result, comparison, advise(spec, result, advisor))


def load_spec(
    repo: str | None,
    spec_file: Path | None,
    overrides: Overrides,
    progress: Callable[[str], None],
    advisor: Any = None,
) -> DeploymentSpec:
    if (repo is None) == (spec_file is None):
        raise BadInputError(
            "give a repository or --spec FILE (exactly one)",
            next_step="pass the repository (a path or git URL), or --spec spec.json",
        )
    if spec_file is None:
        assert repo is not None
        return spec_for_repo(repo, overrides, progress, advisor)[1]
    if overrides.values:
        flags = ", ".join(sorted({flag for _value, flag in overrides.values.values()}))
        raise BadInputError(
            f"{flags} cannot change a spec given with --spec",
            next_step="edit the spec file, or synthesize from the repository with the flags",
        )
    try:
        return DeploymentSpec.from_json(spec_file.read_text(encoding="utf-8"), new=True)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise BadInputError(
            f"{spec_file} is not a valid deployment spec",
            cause="; ".join(first[:3]),
            next_step="write one with `hivemind spec show REPO -o spec.json`",
        ) from None


def _live_price_table(region: str, progress: Callable[[str], None]) -> PriceTable:
    import boto3

    progress("Asking the AWS Pricing API for current prices ...")
    # The Pricing API lives in us-east-1 whatever the deployment's region.
    return live_prices(region, boto3.client("pricing", region_name="us-east-1"))


def _deployed_template(stack: str, region: str) -> dict[str, Any]:
    import boto3
    import botocore.exceptions

    client = boto3.client("cloudformation", region_name=region)
    try:
        body = client.get_template(StackName=stack, TemplateStage="Original")["TemplateBody"]
    except botocore.exceptions.ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        if "does not exist" in message:
            raise BadInputError(
                f"no deployed stack {stack} in {region}",
                cause=message,
                next_step="check the id with `hivemind status`, or synthesize without "
                "--deployment-id for a preview",
            ) from None
        raise HiveMindError(
            f"could not read the deployed template of {stack}",
            where=f"cloudformation:GetTemplate in {region}",
            cause=message,
        ) from None
    except botocore.exceptions.NoCredentialsError:
        raise BadInputError(
            "no AWS credentials to read the deployed template with",
            next_step="run `hivemind doctor` to see what is missing",
        ) from None
    return template_of(body)
