"""Prompt templates for completion-style (base) models."""

from __future__ import annotations

import string

from chatbot.llm.types import Prompt

DEFAULT_SYSTEM_PROMPT = (
    "You are the company's internal support assistant. Answer the support agent's question "
    "briefly and accurately. If you do not know, say so."
)

# Gemma 3 270M is a base model: its chat template produces garbage, a plain completion prompt works.
DEFAULT_COMPLETION_TEMPLATE = "{system}\n\n{history}Question: {question}\nAnswer:"

TEMPLATE_FIELDS = {"system", "history", "question"}


class TemplateError(ValueError):
    pass


def template_validate(template: str) -> None:
    """Reject templates that use unknown fields or are malformed, with a message an admin understands."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise TemplateError(f"The template is malformed: {exc}.") from exc
    unknown = fields - TEMPLATE_FIELDS
    if unknown:
        allowed = ", ".join("{" + f + "}" for f in sorted(TEMPLATE_FIELDS))
        named = ", ".join("{" + f + "}" for f in sorted(unknown))
        raise TemplateError(f"Unknown field(s) {named}; use only {allowed}.")
    if "question" not in fields:
        raise TemplateError("The template must contain {question}.")


def render_completion(template: str, prompt: Prompt) -> str:
    system = "\n".join(m.content for m in prompt.messages if m.role == "system")
    body = [m for m in prompt.messages if m.role != "system"]
    # Everything before the final user message is history, rendered in the same Q/A shape.
    history_parts = []
    for message in body[:-1]:
        label = "Question" if message.role == "user" else "Answer"
        history_parts.append(f"{label}: {message.content}\n")
    history = "".join(history_parts)
    return (template or DEFAULT_COMPLETION_TEMPLATE).format(
        system=system, history=history, question=prompt.question
    )
