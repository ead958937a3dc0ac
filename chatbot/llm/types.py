"""Our own small types: the rest of the code speaks these, never a vendor SDK."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from chatbot.models import ModelEndpoint

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    # Reference material (knowledge-base passages) given to the model as data, never as
    # instructions: a user-role block between delimiters, placed before the question. Chat models
    # get it at the head of the user message that follows; completion prompts after the system text.
    data: bool = False


@dataclass(frozen=True)
class Prompt:
    """What the model is asked: messages in order, the last one the user's question."""

    messages: tuple[Message, ...]
    # The versioned system prompt (`PromptVersion`) the first message came from; None when the
    # caller wrote its own.
    version_id: int | None = None
    # The answer instructions sent with knowledge-base passages (`chatbot.agent.grounding`): the
    # published version's text and id; "" for the built-in text (id None).
    instructions: str = ""
    instructions_version_id: int | None = None

    @property
    def question(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user" and not message.data:
                return message.content
        return ""

    @property
    def text_length(self) -> int:
        return sum(len(m.content) for m in self.messages)


@dataclass(frozen=True)
class Overrides:
    """Per-request generation settings a caller may ask for (the OpenAI-compatible API)."""

    max_tokens: int | None = None
    temperature: float | None = None


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    # True when the server gave no counts and we counted ourselves.
    estimated: bool = False


@dataclass(frozen=True)
class EndpointConfig:
    """A frozen snapshot of a catalogue row, safe to use from async code without the ORM."""

    id: int
    name: str
    provider: str
    base_url: str
    model_id: str
    api_key_name: str
    style: str
    prompt_template: str
    price_input_per_mtok: Decimal
    price_output_per_mtok: Decimal
    context_window: int
    max_output_tokens: int
    temperature: float
    region: str
    options: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    # How the agent asks this model for its next step: "native", "structured" or "none".
    tool_calling: str = "structured"
    # False: text sent to it has personal data replaced by placeholders (`chatbot.llm.veil`).
    personal_data_allowed: bool = True

    def span_attributes(self) -> dict[str, str]:
        """What an `llm` span says about the model it called (the trace and the dashboard read
        these names)."""
        return {
            "model": self.model_id,
            "provider": self.provider,
            "style": self.style,
            "region": self.region,
        }

    @classmethod
    def from_model(cls, endpoint: ModelEndpoint) -> EndpointConfig:
        return cls(
            id=endpoint.pk,
            name=endpoint.name,
            provider=endpoint.provider,
            base_url=endpoint.base_url,
            model_id=endpoint.model_id,
            api_key_name=endpoint.api_key_name,
            style=endpoint.style,
            prompt_template=endpoint.prompt_template,
            price_input_per_mtok=endpoint.price_input_per_mtok,
            price_output_per_mtok=endpoint.price_output_per_mtok,
            context_window=endpoint.context_window,
            max_output_tokens=endpoint.max_output_tokens,
            temperature=endpoint.temperature,
            region=endpoint.region,
            options=dict(endpoint.options or {}),
            version=endpoint.updated_at.isoformat() if endpoint.updated_at else "",
            tool_calling=endpoint.tool_calling,
            personal_data_allowed=endpoint.personal_data_allowed,
        )


class ModelError(Exception):
    """A model call failed; `user_message` is safe and plain enough to show to a person."""

    def __init__(self, user_message: str, *, detail: str = "") -> None:
        super().__init__(detail or user_message)
        self.user_message = user_message
        self.detail = detail or user_message


class NoModelAvailable(ModelError):
    pass
