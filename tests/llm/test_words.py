"""Question coverage: the share of a question's content words found in the passages."""

from __future__ import annotations

from chatbot.retrieval.words import content_words, coverage


def test_it_keeps_content_words_and_drops_stopwords_and_plurals() -> None:
    assert content_words("How do I reset the passwords of 3 users?") == [
        "reset",
        "password",
        "user",
    ]


def test_it_measures_the_share_of_the_question_the_passages_cover() -> None:
    passages = ["To reset a forgotten password, open the sign-in page.", "The link expires."]
    assert coverage("How do I reset a forgotten password?", passages) == 1.0
    # reset, password covered; manager, recommend not: 2 of 4.
    assert coverage("Which password manager do you recommend to reset?", passages) == 0.5
    assert coverage("Which password manager do you recommend to reset?", []) == 0.0
    assert coverage("How do I?", passages) == 1.0, "a question of stopwords only is not judged"
