"""The draft tool: an admin's template filled in, marked as a draft, never sent anywhere."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from chatbot.agent.tools import ToolContext, ToolFailed
from chatbot.agent.tools.draft import DRAFT_NOTE, Draft

pytestmark = pytest.mark.django_db


def _run(alice: User, arguments: dict, options: dict | None = None):
    options = Draft.default_options if options is None else options
    return Draft().run(arguments, ToolContext(user=alice, options=options, timeout_s=5))


def test_it_fills_a_template_as_a_draft(alice: User) -> None:
    result = _run(
        alice,
        {"template": "refund_reply", "fields": {"name": "Ana", "amount": "9 EUR", "days": "3"}},
    )

    assert result.data["draft"].startswith("Hi Ana,")
    assert "9 EUR" in result.data["draft"] and "3 working days" in result.data["draft"]
    assert result.content.startswith(DRAFT_NOTE)
    assert result.data["missing"] == []


def test_it_leaves_missing_fields_visible_to_fill(alice: User) -> None:
    result = _run(alice, {"template": "refund_reply", "fields": {"name": "Ana"}})

    assert "$amount" in result.data["draft"] and result.data["missing"] == ["amount", "days"]
    assert "to fill: amount, days" in result.summary


def test_it_names_the_templates_there_are(alice: User) -> None:
    with pytest.raises(ToolFailed, match="Available: password_reply, refund_reply"):
        _run(alice, {"template": "admin_password", "fields": {}})


def test_it_checks_an_admins_templates() -> None:
    errors = Draft().options_errors({"templates": {"a": {"text": "Hi $"}, "b": {"kind": "x"}}})

    assert any("'a' is malformed" in e for e in errors)
    assert "Template 'b' needs a text." in errors
    assert Draft().options_errors(Draft.default_options) == []
