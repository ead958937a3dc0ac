"""The tool-call block in the chat: what each tool's result shows, and model text escaped."""

from __future__ import annotations

from django.template.loader import render_to_string

from chatbot.chat.tool_calls import ToolCallView


def _block(**fields: object) -> str:
    call = ToolCallView(id="s1", label="Tool", arguments={}, status="done", **fields)  # type: ignore[arg-type]
    return render_to_string("chat/_tool_call.html", {"call": call})


def test_it_shows_an_api_answer_escaped() -> None:
    html = _block(
        tool="http_api",
        summary="GET order_status → 200 (38 B)",
        data={
            "method": "GET",
            "url": "https://status.internal.example/orders/1042",
            "status": 200,
            "body": '{"state": "<script>x</script>"}',
            "truncated": False,
        },
    )

    assert "GET <code>https://status.internal.example/orders/1042</code> → 200" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html


def test_it_shows_a_refusal_open_in_words() -> None:
    call = ToolCallView(
        id="s2", tool="sql", label="Reporting SQL", arguments={"query": "DROP TABLE x"},
        status="failed", summary="Only a single SELECT is allowed.",
    )  # fmt: skip
    html = render_to_string("chat/_tool_call.html", {"call": call})

    assert 'class="tool-call status-failed" open' in html
    assert 'role="alert">Only a single SELECT is allowed.</p>' in html
