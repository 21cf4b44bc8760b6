"""`hivemind synth`: spec → cdk.out, with the cost, the provisioning time and the gates.

1. Look the spec up in the synth cache (keyed by the spec, the deployment id and the
   versions of every tool that shapes the output); on a hit, copy the result.
2. Otherwise compile the spec into a CDK app and synthesize it with the AwsSolutions
   checks attached (cdk-nag), then lint the template (cfn-lint).
3. Price the template, put the estimate into the dashboard's cost section, write the
   template compact (CloudFormation takes up to 51,200 bytes inline).
4. Estimate the provisioning time from the template's critical path.

aws_cdk is imported only on a cache miss, so a repeat synth stays fast.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from hivemind import __version__
from hivemind.cost import DEFAULT_PRICES, CostEstimate, PriceTable, estimate
from hivemind.paths import cache_dir
from hivemind.runtimes import packages_for
from hivemind.spec import DeploymentSpec
from hivemind.timing import PathStep, ProvisioningEstimate, estimate_provisioning

TEMPLATE_BODY_LIMIT = 51_200  # bytes CloudFormation accepts inline, without an S3 upload
# The CDK CLI sends the template as YAML and applies the limit to that: measure it so.
_SIZE_MARGIN = 0.98
COST_ESTIMATE_MARKER = "HIVEMIND_COST_ESTIMATE"  # hivemind_constructs.dashboard's placeholder
_CACHE_VERSION = "1"
# Everything whose version can change the synthesized output.
_TOOLS = ("aws-cdk-lib", "constructs", "cdk-nag", "cfn-lint")
_OUR_PACKAGES = ("hivemind", "hivemind_constructs", "hivemind_templates")


class SynthResult(BaseModel):
    """What one synth produced and found; saved as synth.json beside cdk.out/."""

    model_config = ConfigDict(frozen=True)

    deployment_id: str
    stack_name: str
    template_file: str  # relative to the output folder
    template_bytes: int
    needs_bootstrap: bool = False  # over the inline limit: deploy uploads via the CDK bootstrap
    resources: dict[str, int]  # resource type -> count
    cost: CostEstimate
    provisioning_seconds: int
    critical_path: list[dict[str, Any]]
    findings: list[dict[str, str]]
    notes: list[str] = []  # what the operator should know about what was built
    cached: bool = False

    @property
    def blocking_findings(self) -> list[dict[str, str]]:
        return [f for f in self.findings if f["level"] in ("error", "warning")]


def _code_digest() -> str:
    """A digest of HiveMind's own compiler code and templates, so an edited checkout
    never serves a stale synth (the version number alone changes too rarely)."""
    digest = hashlib.sha256()
    for package in _OUR_PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations is not None
        for folder in spec.submodule_search_locations:
            for path in sorted(Path(folder).rglob("*")):
                if path.suffix in (".py", ".j2"):
                    digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def cache_key(spec: DeploymentSpec, deployment_id: str, prices: PriceTable) -> str:
    versions = {tool: importlib.metadata.version(tool) for tool in _TOOLS}
    versions["hivemind-code"] = _code_digest()
    material = json.dumps(
        {
            "cache": _CACHE_VERSION,
            "hivemind": __version__,
            "tools": versions,
            "deployment_id": deployment_id,
            "spec": spec.model_dump(mode="json", exclude={"provenance", "notes"}),
            "prices": prices.model_dump(mode="json"),
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def synthesize(
    spec: DeploymentSpec,
    deployment_id: str,
    out_dir: Path,
    *,
    prices: PriceTable = DEFAULT_PRICES,
    use_cache: bool = True,
) -> SynthResult:
    """Write `out_dir/spec.json`, `out_dir/cdk.out/` and `out_dir/synth.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "spec.json").write_text(spec.to_json(), encoding="utf-8")
    cached = cache_dir() / "synth" / cache_key(spec, deployment_id, prices)
    if use_cache and (cached / "synth.json").is_file():
        result = SynthResult.model_validate_json((cached / "synth.json").read_text())
        _replace_tree(cached / "cdk.out", out_dir / "cdk.out")
        result = result.model_copy(update={"cached": True})
    else:
        with tempfile.TemporaryDirectory(prefix="hivemind-synth-") as work:
            result = _synthesize_fresh(spec, deployment_id, Path(work) / "cdk.out", prices)
            _replace_tree(Path(work) / "cdk.out", out_dir / "cdk.out")
        if use_cache:
            # A result with findings is kept too: it is as much a function of the key as a
            # clean one, and the usual next command (`--allow-findings`, or a deploy that
            # reports the same findings) would synthesize it again for nothing.
            _store(cached, out_dir / "cdk.out", result)
    (out_dir / "synth.json").write_text(result.model_dump_json(indent=2), encoding="utf-8")
    return result


def _synthesize_fresh(
    spec: DeploymentSpec, deployment_id: str, cdk_out: Path, prices: PriceTable
) -> SynthResult:
    from hivemind import compiler, gates  # lazy: imports aws_cdk: cache misses only

    needs_bootstrap = False
    app = compiler.build_app(spec, deployment_id, cdk_out)
    _assembly, findings = gates.synth_with_checks(app)
    template = _finish_template(compiler.template_path(cdk_out, deployment_id), spec, prices)
    if deployed_size(template) > TEMPLATE_BODY_LIMIT * _SIZE_MARGIN:
        # Too big to send inline: synthesize for the CDK bootstrap bucket instead.
        needs_bootstrap = True
        shutil.rmtree(cdk_out)
        app = compiler.build_app(spec, deployment_id, cdk_out, bootstrapless=False)
        _assembly, findings = gates.synth_with_checks(app)
        template = _finish_template(compiler.template_path(cdk_out, deployment_id), spec, prices)
    # cfn-lint's informational rules (style hints) are not gates.
    findings += [
        f for f in gates.lint_templates(cdk_out, regions=(spec.region,)) if f.level != "info"
    ]
    provisioning = estimate_provisioning(template)
    template_file = compiler.template_path(cdk_out, deployment_id)
    return SynthResult(
        deployment_id=deployment_id,
        stack_name=template_file.name.removesuffix(".template.json"),
        template_file=f"cdk.out/{template_file.name}",
        template_bytes=deployed_size(template),
        needs_bootstrap=needs_bootstrap,
        resources=dict(sorted(Counter(r["Type"] for r in template["Resources"].values()).items())),
        cost=estimate(template, spec.region, prices),
        provisioning_seconds=provisioning.total_seconds,
        critical_path=[asdict(step) for step in provisioning.path],
        findings=[asdict(f) for f in findings],
        notes=_build_notes(spec, needs_bootstrap, deployed_size(template)),
    )


def deployed_size(template: dict[str, Any]) -> int:
    """The template's size as the CDK CLI sends it to CloudFormation: YAML with indented
    sequences (measured to within ~1% of the CLI's own serializer)."""
    return len(
        yaml.dump(
            template,
            Dumper=_IndentedDumper,
            default_flow_style=False,
            sort_keys=False,
            width=10**9,
            allow_unicode=True,
        ).encode()
    )


class _IndentedDumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _build_notes(spec: DeploymentSpec, needs_bootstrap: bool, size: int) -> list[str]:
    notes = []
    runtime = packages_for(spec.app.language, spec.app.runtime_version)
    if runtime.note:
        notes.append(runtime.note)
    if needs_bootstrap:
        notes.append(
            f"The template is {size:,} bytes as sent, over CloudFormation's "
            f"{TEMPLATE_BODY_LIMIT:,}-byte inline limit: deploy uploads it through the CDK "
            "bootstrap bucket, and bootstraps the account and region first if needed."
        )
    return notes


def _finish_template(path: Path, spec: DeploymentSpec, prices: PriceTable) -> dict[str, Any]:
    """Put the cost estimate into the dashboard and rewrite the template compact."""
    template: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    _fill_cost_section(template, estimate(template, spec.region, prices))
    compact = json.dumps(template, separators=(",", ":"), ensure_ascii=False)
    path.write_text(compact, encoding="utf-8")
    return template


def critical_path(result: SynthResult) -> ProvisioningEstimate:
    return ProvisioningEstimate(
        result.provisioning_seconds, tuple(PathStep(**step) for step in result.critical_path)
    )


def cost_summary(cost: CostEstimate, top: int = 6) -> str:
    """The dashboard's cost text: the total and the biggest items, in Markdown."""
    lines = [
        f"**Estimated monthly cost: ${cost.total_usd:,.2f}** "
        f"(on-demand, {cost.region}; prices as of {cost.prices_as_of})",
        "",
    ]
    for resource_type, usd in list(cost.by_type().items())[:top]:
        lines.append(f"- {resource_type.split('::')[-1]}: ${usd:,.2f}")
    lines += ["", "The graph beside this shows the account's actual charges (whole account)."]
    return "\n".join(lines)


def _fill_cost_section(template: dict[str, Any], cost: CostEstimate) -> None:
    # The dashboard body is a JSON document inside a string (or a Fn::Join of strings):
    # the Markdown must be escaped for that inner JSON.
    escaped = json.dumps(cost_summary(cost))[1:-1]
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            body = resource["Properties"]["DashboardBody"]
            resource["Properties"]["DashboardBody"] = _replace_in(body, escaped)


def _replace_in(value: Any, text: str) -> Any:
    if isinstance(value, str):
        return value.replace(COST_ESTIMATE_MARKER, text)
    if isinstance(value, list):
        return [_replace_in(v, text) for v in value]
    if isinstance(value, Mapping):
        return {k: _replace_in(v, text) for k, v in value.items()}
    return value


def _replace_tree(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)


def _store(cached: Path, cdk_out: Path, result: SynthResult) -> None:
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synth-", dir=cached.parent))
    try:
        shutil.copytree(cdk_out, staging / "cdk.out")
        (staging / "synth.json").write_text(result.model_dump_json(), encoding="utf-8")
        shutil.rmtree(cached, ignore_errors=True)
        staging.rename(cached)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
