"""Fake chat models for the agents' model path: scripted answers, tool calls included.

    model = ScriptedChatModel(messages=iter([said("looking"), calls("Diagnosis", {...})]))
    Advisor(model=model, model_name="fake").ask(agent, inputs)

Each model call takes the next scripted message; an agent with tools is called once per
tool round, then once for its structured answer (a tool call named after the output
model, which LangChain's structured output parses).
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage


class ScriptedChatModel(GenericFakeChatModel):
    """A fake chat model that answers with scripted AIMessages, tool calls included."""

    def bind_tools(self, tools: Any, *, tool_choice: Any = None, **kwargs: Any) -> Any:
        return self


def _usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def said(text: str, *, input_tokens: int = 0, output_tokens: int = 0) -> AIMessage:
    """A plain answer (no tool call): ends an agent's tool rounds."""
    return AIMessage(content=text, usage_metadata=_usage(input_tokens, output_tokens))


def calls(
    name: str,
    args: dict[str, Any],
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    call_id: str = "1",
) -> AIMessage:
    """A message calling one tool; `name` an agent's output model's for its answer."""
    return AIMessage(
        content="",
        tool_calls=[{"name": name, "args": args, "id": call_id}],
        usage_metadata=_usage(input_tokens, output_tokens),
    )
