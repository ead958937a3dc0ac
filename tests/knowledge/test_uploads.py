"""Stored upload names: safe characters, at most 120 of them, and the extension kept."""

from __future__ import annotations

from chatbot.knowledge.uploads import MAX_NAME, safe_name


def test_it_keeps_the_extension_when_it_shortens_a_long_name() -> None:
    name = safe_name("x" * 300 + ".docx")
    assert name.endswith(".docx") and len(name) == MAX_NAME


def test_it_keeps_a_shortened_name_safe() -> None:
    name = safe_name("../../etc/" + "a b;c$" * 40 + ".pdf")
    assert name.endswith(".pdf") and len(name) <= MAX_NAME
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert not name.startswith(".")


def test_it_cuts_a_name_whose_last_dot_starts_no_extension() -> None:
    name = safe_name("notes." + "y" * 200)
    assert name == ("notes." + "y" * 200)[:MAX_NAME]
    assert safe_name("short name.md") == "short_name.md"
    assert safe_name("") == "upload"
