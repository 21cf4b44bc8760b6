"""The CDK app entry point that `cdk.json` names.

Reads the deployment spec from the `spec` context value (a path to spec.json)
and the deployment id from `deployment_id`, then synthesizes one stack:

    cdk synth -c spec=path/to/spec.json -c deployment_id=shop-abcdefghij
"""

from __future__ import annotations

import sys
from pathlib import Path

import aws_cdk as cdk
from hivemind_constructs.stack import DeploymentStack

from hivemind.spec import DeploymentSpec


def build_app(spec: DeploymentSpec, deployment_id: str, outdir: str | None = None) -> cdk.App:
    """Compile a spec into a CDK app: a pure function of its inputs."""
    app = cdk.App(outdir=outdir) if outdir else cdk.App()
    DeploymentStack(app, spec=spec, deployment_id=deployment_id)
    return app


def main() -> None:
    app = cdk.App()
    spec_path = app.node.try_get_context("spec")
    deployment_id = app.node.try_get_context("deployment_id")
    if not spec_path or not deployment_id:
        sys.exit(
            "error: pass -c spec=PATH/TO/spec.json -c deployment_id=ID "
            "(`hivemind spec show REPO -o spec.json` writes a spec)"
        )
    spec = DeploymentSpec.from_json(Path(spec_path).read_text(encoding="utf-8"))
    DeploymentStack(app, spec=spec, deployment_id=str(deployment_id))
    app.synth()


if __name__ == "__main__":
    main()
