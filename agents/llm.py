"""Which model the agents use: `--llm` / HIVEMIND_LLM, or none (the default).

The one provider is Amazon Bedrock, through langchain-aws's Converse client:
`bedrock:<model-id>`, e.g. `bedrock:anthropic.claude-3-5-haiku-20241022-v1:0` or an
inference profile such as `bedrock:us.anthropic.claude-3-5-haiku-20241022-v1:0`. The
region is `--llm-region` / HIVEMIND_LLM_REGION, else the deployment's region. The
client uses the same AWS credentials as the rest of HiveMind and needs
`bedrock:InvokeModel` on the model (see `hivemind iam-policy --llm`).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from hivemind.errors import BadInputError

from .base import Advisor

LLM_VARIABLE = "HIVEMIND_LLM"
LLM_REGION_VARIABLE = "HIVEMIND_LLM_REGION"
PROVIDERS = ("bedrock",)


def parse_setting(setting: str) -> tuple[str, str]:
    """`bedrock:<model-id>` → ("bedrock", model id); anything else is bad input."""
    provider, _, model_id = setting.strip().partition(":")
    if provider not in PROVIDERS or not model_id.strip():
        raise BadInputError(
            f"--llm {setting!r} is not a model HiveMind can use",
            cause="the form is bedrock:<model-id>",
            next_step="e.g. --llm bedrock:anthropic.claude-3-5-haiku-20241022-v1:0, or leave "
            "--llm and HIVEMIND_LLM unset to use HiveMind's own rules",
        )
    return provider, model_id.strip()


def advisor_for(
    setting: str | None,
    region: str,
    *,
    llm_region: str | None = None,
    log: Callable[[str], None] = lambda _line: None,
) -> Advisor:
    """The Advisor for `--llm` (or HIVEMIND_LLM); with neither, one with no model."""
    setting = setting or os.environ.get(LLM_VARIABLE) or None
    if not setting:
        return Advisor(log=log)
    _provider, model_id = parse_setting(setting)
    region = llm_region or os.environ.get(LLM_REGION_VARIABLE) or region
    from langchain_aws import ChatBedrockConverse

    model = ChatBedrockConverse(model_id=model_id, region_name=region, temperature=0)
    return Advisor(model=model, model_name=f"bedrock:{model_id}", log=log)
