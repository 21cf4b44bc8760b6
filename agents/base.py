"""What an agent is, and how one is asked.

An agent proposes; typed models and CloudFormation decide. Each agent module defines
one `Agent`: its prompt, the tools it may call (plain functions the stages already
have), the pydantic model its answer must fit (LangChain's structured output), a
`check` a proposal must pass against the facts it was given, and a deterministic
`fallback` that takes the same inputs and returns the same type.

`Advisor.ask(agent, inputs)` is the one way the rest of HiveMind calls an agent:

* no model configured (the default): the fallback's answer, silently;
* a model: the agent's prompt and the facts, a few rounds of tool calls if the agent
  has tools, then the answer as the output model. An answer that does not fit the
  model, that `check` rejects, or a model that fails (throttled, unreachable, bad
  credentials) is logged, and the fallback's answer is used instead. A model can make
  HiveMind explain more, never behave worse.

Every model call is counted (tokens, latency, accepted or not) in `Advisor.calls`,
which the Conductor keeps in the deployment record.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel

from hivemind.records import AgentCall

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage

InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT", bound=BaseModel)

# Rules every prompt ends with: the model is advising a tool that will check its work.
_GROUND_RULES = """
Ground rules:
- Use only the facts given here and what your tools return. Never invent file names,
  resource names, values or error text.
- When a field asks for evidence or a quote, copy it exactly, character for character,
  from the facts or a tool's result; an answer whose evidence cannot be found is thrown
  away.
- If you do not know, say so in the answer's fields rather than guessing.
"""
# Characters of one tool result the model sees; the rest is cut with a note.
TOOL_RESULT_LIMIT = 6000


class Rejected(Exception):
    """A model's answer failed the agent's check; the message says why."""


class Agent(ABC, Generic[InputT, OutputT]):
    """One agent: prompt, tools, output model, check, and deterministic fallback."""

    name: ClassVar[str]
    prompt: ClassVar[str]
    output: type[OutputT]

    @abstractmethod
    def describe(self, inputs: InputT) -> str:
        """The facts, as the text the model reads."""

    @abstractmethod
    def fallback(self, inputs: InputT) -> OutputT:
        """The answer without a model: deterministic, same inputs, same type."""

    def tools(self, inputs: InputT) -> list[Callable[..., str]]:
        """Plain functions the model may call (typed parameters, a docstring each)."""
        return []

    def check(self, inputs: InputT, proposal: OutputT) -> OutputT:
        """The proposal as it may be used; raise `Rejected` to use the fallback.

        May also return a narrowed proposal (e.g. with unsupported items dropped)."""
        return proposal


@dataclass(frozen=True)
class Answer(Generic[OutputT]):
    """An agent's answer and where it came from."""

    value: OutputT
    source: Literal["model", "fallback"]
    model: str | None = None
    note: str = ""  # why the model's answer was not used, when it was not

    @property
    def provenance(self) -> str:
        return f"model {self.model}" if self.source == "model" else "HiveMind's rules"


@dataclass
class _Tally:
    input_tokens: int = 0
    output_tokens: int = 0

    def add(self, message: Any) -> None:
        usage = getattr(message, "usage_metadata", None) or {}
        self.input_tokens += int(usage.get("input_tokens", 0))
        self.output_tokens += int(usage.get("output_tokens", 0))


@dataclass
class Advisor:
    """Asks agents: the model when one is configured, their fallbacks otherwise."""

    model: BaseChatModel | None = None
    model_name: str | None = None
    log: Callable[[str], None] = lambda _line: None
    tool_rounds: int = 4
    calls: list[AgentCall] = field(default_factory=list)

    @property
    def configured(self) -> bool:
        return self.model is not None

    def ask(self, agent: Agent[InputT, OutputT], inputs: InputT) -> Answer[OutputT]:
        if self.model is None:
            return Answer(agent.fallback(inputs), "fallback")
        started = time.monotonic()
        tally = _Tally()
        try:
            proposal = self._converse(self.model, agent, inputs, tally)
            value = agent.check(inputs, proposal)
        except Rejected as why:
            return self._fall_back(agent, inputs, started, tally, f"answer rejected: {why}")
        except Exception as error:  # any model failure means: use the rules
            cause = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
            return self._fall_back(agent, inputs, started, tally, f"the model failed: {cause}")
        self._count(agent, "model", started, tally)
        self.log(f"agent {agent.name}: answered by {self.model_name}")
        return Answer(value, "model", self.model_name)

    def _fall_back(
        self,
        agent: Agent[InputT, OutputT],
        inputs: InputT,
        started: float,
        tally: _Tally,
        note: str,
    ) -> Answer[OutputT]:
        self.log(f"agent {agent.name}: {note}; using HiveMind's rules instead")
        self._count(agent, "fallback", started, tally, note)
        return Answer(agent.fallback(inputs), "fallback", self.model_name, note)

    def _count(
        self,
        agent: Agent[Any, Any],
        source: Literal["model", "fallback"],
        started: float,
        tally: _Tally,
        note: str = "",
    ) -> None:
        self.calls.append(
            AgentCall(
                agent=agent.name,
                source=source,
                model=self.model_name,
                input_tokens=tally.input_tokens,
                output_tokens=tally.output_tokens,
                seconds=round(time.monotonic() - started, 3),
                note=note,
            )
        )

    def _converse(
        self,
        model: BaseChatModel,
        agent: Agent[InputT, OutputT],
        inputs: InputT,
        tally: _Tally,
    ) -> OutputT:
        from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
        from langchain_core.tools import StructuredTool

        messages: list[BaseMessage] = [
            SystemMessage(agent.prompt.strip() + "\n" + _GROUND_RULES),
            HumanMessage(agent.describe(inputs)),
        ]
        tools = {f.__name__: StructuredTool.from_function(f) for f in agent.tools(inputs)}
        if tools:
            with_tools = model.bind_tools(list(tools.values()))
            for _ in range(self.tool_rounds):
                reply = with_tools.invoke(messages)
                tally.add(reply)
                messages.append(reply)
                calls = getattr(reply, "tool_calls", None) or []
                if not calls:
                    break
                for call in calls:
                    messages.append(
                        ToolMessage(
                            content=_run_tool(tools, call["name"], call.get("args") or {}),
                            tool_call_id=call.get("id") or call["name"],
                        )
                    )
            messages.append(
                HumanMessage(f"Now give your answer as {agent.output.__name__}, and nothing else.")
            )
        structured = model.with_structured_output(agent.output, include_raw=True)
        result = structured.invoke(messages)
        assert isinstance(result, dict)
        tally.add(result.get("raw"))
        parsed = result.get("parsed")
        if result.get("parsing_error") is not None or not isinstance(parsed, agent.output):
            error = result.get("parsing_error") or "no answer"
            first = str(error).splitlines()[0][:300]
            raise Rejected(f"it does not fit {agent.output.__name__} ({first})")
        return parsed


def _run_tool(tools: dict[str, Any], name: str, args: dict[str, Any]) -> str:
    tool = tools.get(name)
    if tool is None:
        return f"error: there is no tool named {name!r}; the tools are {', '.join(tools)}"
    try:
        text = str(tool.invoke(args))
    except Exception as error:  # the model reads the error and goes on
        return f"error: {error}"
    if len(text) > TOOL_RESULT_LIMIT:
        text = text[:TOOL_RESULT_LIMIT] + f"\n[... {len(text) - TOOL_RESULT_LIMIT} more characters]"
    return text
