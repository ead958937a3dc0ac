"""The one place text is veiled before it leaves for an endpoint that may not see personal data.

Every call in this package that sends text to a model (`astream_text`, `choose_native`,
`complete_json`, `call_with_tools`) passes what it sends through `veil_for(endpoint)` and what
comes back through the same veil, so no caller can forget. What a veil is (presidio's recognizers
and reversible placeholders) lives in `chatbot.compliance.redact`, a higher layer this package may
not import: it installs its factory here when Django starts (`chatbot.apps`). A turn shares one
veil across its calls (`veiled`), so the same e-mail address is the same placeholder in the step
choices and in the answer, and the turn can record what was replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, Protocol

from chatbot.llm.types import EndpointConfig, ModelError, Prompt


class Restorer(Protocol):
    """Puts the original values back into a streamed answer, piece by piece."""

    def feed(self, text: str) -> str: ...

    def flush(self) -> str: ...


class Veil(Protocol):
    def hide(self, text: str) -> str: ...

    def reveal(self, text: str) -> str: ...

    def restorer(self) -> Restorer: ...


_factory: Callable[[], Veil] | None = None
_current: ContextVar[Veil | None] = ContextVar("llm_veil", default=None)


def veil_install(factory: Callable[[], Veil]) -> None:
    global _factory
    _factory = factory


@contextmanager
def veiled(veil: Veil) -> Iterator[Veil]:
    """Calls made inside share `veil` (a turn's: one placeholder per value for the whole turn)."""
    token = _current.set(veil)
    try:
        yield veil
    finally:
        _current.reset(token)


def veil_for(endpoint: EndpointConfig) -> Veil | None:
    """The veil for a call to `endpoint`; None when it may see personal data as written.

    Without an installed factory (Django not started) a call to such an endpoint is refused:
    sending the text unveiled is the one thing this must never do."""
    if endpoint.personal_data_allowed:
        return None
    veil = _current.get()
    if veil is not None:
        return veil
    if _factory is None:
        raise ModelError(
            f"The model '{endpoint.name}' may not see personal data, and redaction is not set up.",
            detail="no veil factory installed",
        )
    return _factory()


def prompt_veil(veil: Veil | None, prompt: Prompt) -> Prompt:
    if veil is None:
        return prompt
    messages = tuple(replace(m, content=veil.hide(m.content)) for m in prompt.messages)
    return replace(prompt, messages=messages)


def _strings(change: Callable[[str], str], value: Any) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {k: _strings(change, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings(change, v) for v in value]
    return value


def value_hide(veil: Veil | None, value: Any) -> Any:
    """Text, or the strings inside tool-call arguments, as the endpoint may see them."""
    return value if veil is None else _strings(veil.hide, value)


def value_reveal(veil: Veil | None, value: Any) -> Any:
    """A reply with the original values back, so a tool searches for what was asked."""
    return value if veil is None else _strings(veil.reveal, value)
