from __future__ import annotations

from pytest_django.fixtures import Settings

from chatbot.knowledge.markup import html_to_markdown
from chatbot.knowledge.splitting import split_document


def test_it_splits_by_words_with_overlap(settings: Settings) -> None:
    settings.KB_CHUNK_WORDS = 20
    settings.KB_CHUNK_OVERLAP_WORDS = 5
    words = [f"w{i}" for i in range(50)]

    chunks = split_document(title="Doc", text=" ".join(words), markdown=False)

    assert [len(c.text.split()) for c in chunks] == [20, 20, 20]
    assert chunks[1].text.split()[:5] == words[15:20], "the next chunk repeats the overlap"
    assert {c.heading for c in chunks} == {"Doc"}


def test_it_carries_markdown_headings_into_chunks() -> None:
    text = "# Guide\n\nIntro.\n\n## Install\n\nRun the installer.\n\n### Linux\n\nUse apt.\n"

    chunks = split_document(title="Guide", text=text, markdown=True)

    assert [(c.heading, c.text) for c in chunks] == [
        ("Guide", "Intro."),
        ("Guide > Install", "Run the installer."),
        ("Guide > Install > Linux", "Use apt."),
    ]
    assert chunks[1].embedding_text() == "Guide > Install\nRun the installer."


def test_it_splits_html_at_its_headings() -> None:
    title, text = html_to_markdown("<title>FAQ</title><h2>Billing</h2><p>Pay monthly.</p>")

    chunks = split_document(title=title, text=text, markdown=True)

    assert [(c.heading, c.text) for c in chunks] == [("FAQ > Billing", "Pay monthly.")]


def test_it_caps_chunks_of_text_without_spaces(settings: Settings) -> None:
    settings.KB_CHUNK_WORDS = 10
    settings.KB_CHUNK_OVERLAP_WORDS = 0

    chunks = split_document(title="", text="x" * 1200, markdown=False)

    assert len(chunks) > 1
    assert all(len(c.text) <= 120 for c in chunks)
