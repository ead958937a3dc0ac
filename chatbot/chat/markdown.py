"""Model output and user text are untrusted: they reach a page only through `render_markdown`.

Two layers, so one mistake does not open a hole: markdown-it-py with raw HTML disabled (any `<tag>`
in the text is escaped), then nh3 (an allowlist sanitiser) on what markdown produced.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

# Images are rendered as nothing: a model tricked by a prompt injection could otherwise make the
# browser fetch an attacker's URL (with data in the query string) just by showing an answer.
_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_md.enable(["table", "strikethrough"])
_md.disable("image")

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "code": {"class"},
}
URL_SCHEMES = {"http", "https", "mailto"}


def sanitize_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )


def render_markdown(text: str) -> str:
    """Safe HTML for a page from untrusted markdown text."""
    if not text:
        return ""
    return sanitize_html(_md.render(text))
