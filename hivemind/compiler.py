"""The compiler: a `DeploymentSpec` in, a CDK cloud assembly out.

Pure in what matters: no AWS calls, no clock, no randomness; the same spec and
deployment id give byte-identical templates. The stack is environment-agnostic
(synth needs no account) and synthesized without bootstrap requirements, so an
account that was never bootstrapped can take it.

This module imports aws_cdk; import it only where a synth really happens.
`python -m hivemind.compiler` is the app that `cdk.json` names, for users of the
stock CDK CLI: `cdk synth -c spec=spec.json -c deployment_id=ID`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hivemind.render import render
from hivemind.spec import DeploymentSpec
from hivemind.toolchain import prepare_jsii

prepare_jsii()

import aws_cdk as cdk  # noqa: E402  (jsii must be quiet before it starts)

from hivemind.deployer.layout import Layout  # noqa: E402
from hivemind.deployment_ids import stack_name  # noqa: E402
from hivemind.gates import attach_security_checks, security_findings  # noqa: E402
from hivemind.runtimes import packages_for  # noqa: E402
from hivemind_constructs.dashboard import AGENT_NAMESPACE, app_log_group_name  # noqa: E402
from hivemind_constructs.stack import DeploymentStack  # noqa: E402


class CliCredentialsSynthesizer(cdk.StackSynthesizer):
    """The template inline, deployed with the operator's own credentials: no asset, no
    role, no bootstrap stack (the cloud assembly names no role at all).

    `BootstraplessSynthesizer`, despite its name and documentation ("default: no deploy
    role, use CLI credentials"), writes the CDK bootstrap's roles into the cloud
    assembly (`assumeRoleArn: cdk-hnb659fds-deploy-role-...`,
    `cloudFormationExecutionRoleArn: cdk-hnb659fds-cfn-exec-role-...`, seen with
    aws-cdk-lib 2.2xx); the CDK CLI passes the execution role to CloudFormation
    whatever became of assuming the deploy role (`options.roleArn ??
    stack.cloudFormationExecutionRoleArn` in its deployments code), and in an account
    never bootstrapped CloudFormation answers "Role ... is invalid or cannot be
    assumed". This synthesizer emits the stack artifact with none of them."""

    def add_file_asset(self, *args: Any, **kwargs: Any) -> cdk.FileAssetLocation:
        raise ValueError("HiveMind's stacks have no file assets (the template is inline)")

    def add_docker_image_asset(self, *args: Any, **kwargs: Any) -> cdk.DockerImageAssetLocation:
        raise ValueError("HiveMind's stacks have no container image assets")

    def synthesize(self, session: cdk.ISynthesisSession) -> None:
        self._synthesize_template(session)
        self._emit_artifact(session)


def render_user_data(spec: DeploymentSpec, deployment_id: str) -> str:
    """The instances' start-up script, from templates/user_data.sh.j2."""
    app = spec.app
    layout = Layout(app.name)
    build_tool = "maven" if app.build_command and "mvn" in app.build_command else None
    runtime = packages_for(app.language, app.runtime_version, build_tool=build_tool)
    agent = {
        "agent": {"run_as_user": "root"},
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": layout.log_files,
                            "log_group_name": app_log_group_name(deployment_id),
                            "log_stream_name": "{instance_id}",
                        }
                    ]
                }
            }
        },
        "metrics": {
            "namespace": AGENT_NAMESPACE,
            "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
            "aggregation_dimensions": [["InstanceId"]],
            "metrics_collected": {
                "mem": {"measurement": ["mem_used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/"], "drop_device": True},
            },
        },
    }
    return render(
        "user_data.sh.j2",
        app_name=app.name,
        layout=layout,
        deployment_id=deployment_id,
        packages=runtime.packages,
        xray=spec.xray,
        region=spec.region,
        cloudwatch_agent_config=json.dumps(agent, sort_keys=True, separators=(",", ":")),
    )


def build_app(
    spec: DeploymentSpec,
    deployment_id: str,
    outdir: Path | None = None,
    *,
    bootstrapless: bool = True,
) -> cdk.App:
    """The CDK app for one deployment, with the AwsSolutions checks attached.

    Bootstrapless (the default) deploys into any account as is, with the template
    sent inline; a template over CloudFormation's inline limit needs the CDK bootstrap
    bucket to be uploaded through instead (`bootstrapless=False`).
    """
    app = cdk.App(
        outdir=str(outdir) if outdir else None,
        analytics_reporting=False,
        # cfn-lint is our template gate; CDK's built-in copy of it costs ~2 s a synth.
        builtin_cloud_formation_validation=False,
        context={"@aws-cdk/core:checkSecretUsage": True},
    )
    attach_security_checks(app)
    DeploymentStack(
        app,
        spec=spec,
        deployment_id=deployment_id,
        user_data=render_user_data(spec, deployment_id),
        synthesizer=(
            CliCredentialsSynthesizer()
            if bootstrapless
            else cdk.DefaultStackSynthesizer(generate_bootstrap_version_rule=True)
        ),
    )
    return app


def template_path(cdk_out: Path, deployment_id: str) -> Path:
    return cdk_out / f"{stack_name(deployment_id)}.template.json"


def main() -> None:
    """The app `cdk.json` names: reads `-c spec=FILE -c deployment_id=ID`."""
    probe = cdk.App()
    spec_file = probe.node.try_get_context("spec")
    deployment_id = probe.node.try_get_context("deployment_id")
    if not spec_file or not deployment_id:
        sys.exit(
            "error: pass -c spec=PATH/TO/spec.json -c deployment_id=ID "
            "(`hivemind spec show REPO -o spec.json` writes a spec)"
        )
    spec = DeploymentSpec.from_json(Path(spec_file).read_text(encoding="utf-8"))
    app = build_app(spec, str(deployment_id))
    assembly = app.synth()
    findings = [f for f in security_findings(Path(assembly.directory)) if f.level != "info"]
    for finding in findings:
        print(
            f"{finding.level}: {finding.rule} on {finding.resource}: {finding.message}",
            file=sys.stderr,
        )
    if findings:
        sys.exit(f"error: {len(findings)} cdk-nag finding(s); `hivemind synth` explains each")


if __name__ == "__main__":
    main()
