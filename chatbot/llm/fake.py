"""The fake chat model at the network edge (tests, offline demos), scripted for the agent loop.

It streams its text responses like langchain-core's `FakeListChatModel`, and also plays the two
ways a model chooses a step, without keeping state between calls (a fresh one serves every call):
- bound to tools, its reply is `tool_calls[n]`, n being how many tool results it has been sent
  (an empty or missing entry means it answers in text instead);
- asked for structured output, its reply is `choices[n]`, n being how many earlier choices the
  conversation it is sent holds.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable


class ScriptedChatModel(FakeListChatModel):
    tool_calls: list[list[dict[str, Any]]] = []
    choices: list[str] = []

    def bind_tools(  # type: ignore[override]  # the fake takes any tool shape
        self, tools: Any, *, tool_choice: str | None = None, **kwargs: Any
    ) -> Runnable[Any, BaseMessage]:
        return self.bind(tools=tools, **kwargs)

    def _scripted(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> AIMessage | None:
        if "tools" in kwargs:
            n = sum(isinstance(m, ToolMessage) for m in messages)
            calls = self.tool_calls[n] if n < len(self.tool_calls) else []
            if calls:
                return AIMessage(
                    content="",
                    tool_calls=[
                        {"id": f"call_{n}_{i}", "name": c["name"], "args": c.get("args", {})}
                        for i, c in enumerate(calls)
                    ],
                )
        if ("response_format" in kwargs or "extra_body" in kwargs) and self.choices:
            n = sum(isinstance(m, AIMessage) for m in messages)
            return AIMessage(content=self.choices[min(n, len(self.choices) - 1)])
        return None

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        scripted = self._scripted(messages, kwargs)
        if scripted is not None:
            return ChatResult(generations=[ChatGeneration(message=scripted)])
        return super()._generate(messages, stop, run_manager, **kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, None, **kwargs)
