from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from chatbot.chat.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown")
def markdown_filter(text: str | None) -> SafeString:
    """Untrusted markdown -> sanitised HTML; the only way model output reaches a template."""
    return mark_safe(render_markdown(text or ""))  # noqa: S308 - sanitised by nh3 just above
