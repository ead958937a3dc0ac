"""Prompt templates for completion-style (base) models."""

from __future__ import annotations

import re
import string

from chatbot.llm.types import Message, Prompt

DEFAULT_SYSTEM_PROMPT = (
    "You are the company's internal support assistant. Answer the support agent's question "
    "briefly and accurately. If you do not know, say so."
)

# Gemma 3 270M is a base model: its chat template produces garbage, a plain completion prompt works.
DEFAULT_COMPLETION_TEMPLATE = "{system}\n\n{history}Question: {question}\nAnswer:"
# Where a base model's answer ends: it would go on to write the next "Question:" itself.
COMPLETION_STOP = ("\nQuestion:", "\n\n\n")

TEMPLATE_FIELDS = {"system", "history", "question"}


# Tags that delimit data in our prompts (knowledge-base passages; a judge's question, answer and
# sources). Any of them inside the data is defused, so no passage can close its block early.
DATA_TAGS = ("sources", "question", "answer")
# Look-alike angle brackets: the model still reads the words, never a second boundary.
_DEFUSED = str.maketrans({"<": "\u2039", ">": "\u203a"})


def delimited(tag: str, text: str) -> str:
    """`text` between <tag> and </tag>, with any data delimiter inside it defused."""
    tags = "|".join(re.escape(t) for t in {*DATA_TAGS, tag})
    pattern = re.compile(rf"<\s*/?\s*(?:{tags})\s*>", re.IGNORECASE)
    safe = pattern.sub(lambda m: m.group(0).translate(_DEFUSED), text)
    return f"<{tag}>\n{safe}\n</{tag}>"


def chat_messages(prompt: Prompt) -> list[Message]:
    """The messages as a chat model is sent them: consecutive system messages as one (several
    chat templates accept a single system message), and each data block at the head of the user
    message that follows it, so user and assistant still alternate as chat templates require."""
    sent: list[Message] = []
    data: list[str] = []
    for message in prompt.messages:
        if message.data:
            data.append(message.content)
            continue
        if message.role == "user" and data:
            message = Message("user", "\n\n".join([*data, message.content]))
            data = []
        if message.role == "system" and sent and sent[-1].role == "system":
            sent[-1] = Message("system", f"{sent[-1].content}\n\n{message.content}")
            continue
        sent.append(message)
    if data:
        sent.append(Message("user", "\n\n".join(data)))
    return sent


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
    """One text for a base model: the instructions, then the data blocks (passages), then the
    earlier exchanges and the question in the same Q/A shape."""
    system = "\n".join(m.content for m in prompt.messages if m.role == "system")
    data = "\n\n".join(m.content for m in prompt.messages if m.data)
    if data:
        system = f"{system}\n\n{data}" if system else data
    body = [m for m in prompt.messages if m.role != "system" and not m.data]
    # Everything before the final user message is history, rendered in the same Q/A shape.
    history_parts = []
    for message in body[:-1]:
        label = "Question" if message.role == "user" else "Answer"
        history_parts.append(f"{label}: {message.content}\n")
    history = "".join(history_parts)
    return (template or DEFAULT_COMPLETION_TEMPLATE).format(
        system=system, history=history, question=prompt.question
    )
