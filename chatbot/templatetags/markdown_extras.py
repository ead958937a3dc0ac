from __future__ import annotations

import re

from django import template
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe

from chatbot.chat.markdown import render_markdown
from chatbot.chat.tool_calls import ToolCallView, tool_calls_of
from chatbot.models import Turn
from chatbot.retrieval.citations import CITATION

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str | None) -> SafeString:
    """Untrusted markdown -> sanitised HTML; the only way model output reaches a template."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3 just above


@register.filter(name="tool_calls")
def tool_calls_filter(turn: Turn) -> list[ToolCallView]:
    return tool_calls_of(turn)


@register.filter(name="cited_markdown")
def cited_markdown_filter(turn: Turn) -> SafeString:
    """The answer as sanitised HTML, each [n] it cites a link to that chunk in its document.

    The links are added to the markdown before it is rendered and sanitised, so the answer's own
    text still passes through both layers of `render_markdown`.
    """
    targets = {
        c.number: (
            reverse("knowledge:document", args=[c.chunk.document_id]) + f"#chunk-{c.chunk_id}",
            c.chunk.document.title or c.chunk.document.external_id,
        )
        for c in turn.citations.all()
    }
    # A tool result the answer cites links to its call's block above the answer.
    for call in tool_calls_of(turn):
        if call.number is not None:
            targets[call.number] = (f"#tool-{call.id}", f"Result of {call.label}")

    def link(match: re.Match[str]) -> str:
        parts = []
        for part in match.group(1).split(","):
            number = int(part)
            if number not in targets:
                return match.group(0)
            url, title = targets[number]
            safe_title = title.replace('"', "'").replace("\n", " ")
            parts.append(f'[\\[{number}\\]]({url} "{safe_title}")')
        return "".join(parts)

    text = CITATION.sub(link, turn.answer or "") if targets else turn.answer or ""
    return mark_safe(render_markdown(text))  # noqa: S308 - sanitised by nh3 inside
