"""Answer metrics on hand-checked examples."""

from __future__ import annotations

import pytest

from evaluation.metrics import (
    containment,
    contains,
    content_words,
    is_refusal,
    max_f1,
    normalize,
    strip_citations,
    token_f1,
)


def test_it_normalises_like_squad() -> None:
    assert normalize("The  Link, expires (after) 30 minutes!") == "link expires after 30 minutes"
    assert normalize("An apple a day") == "apple day"


def test_it_scores_identical_answers_one_and_disjoint_answers_zero() -> None:
    assert token_f1("after 30 minutes", "After 30 minutes.") == 1.0
    assert token_f1("tray 2", "after 30 minutes") == 0.0


def test_it_scores_a_partial_answer_as_computed_by_hand() -> None:
    # prediction: link expires after 30 minutes (5 tokens, "the" dropped); gold: after 30 minutes
    # common 3 -> precision 3/5, recall 3/3 -> F1 = 2 * 0.6 * 1 / 1.6 = 0.75
    assert token_f1("The link expires after 30 minutes", "after 30 minutes") == pytest.approx(0.75)
    # prediction: tray 2 on left (4); gold: open tray 2 (3); common 2 -> P 1/2, R 2/3 -> F1 4/7
    assert token_f1("tray 2 on the left", "open tray 2") == pytest.approx(4 / 7)


def test_it_takes_the_best_f1_over_the_gold_answers() -> None:
    golds = ["half an hour", "after 30 minutes"]
    assert max_f1("The link expires after 30 minutes", golds) == pytest.approx(0.75)
    assert max_f1("anything", []) == 0.0


def test_it_drops_citation_markers_before_scoring() -> None:
    answer = strip_citations("It expires after 30 minutes [1], see also [2, 3].")
    assert "[" not in answer
    assert token_f1(answer, "it expires after 30 minutes see also") == 1.0


def test_it_measures_containment_of_the_gold_content_words() -> None:
    gold = ["The emailed link expires after 30 minutes"]
    # content words: emailed, link, expires, 30, minutes ("after" and "the" are stop words)
    assert content_words(gold[0]) == {"emailed", "link", "expires", "30", "minutes"}
    # found: expires, 30, minutes -> 3/5
    assert containment("It expires in 30 minutes.", gold) == pytest.approx(0.6)
    assert contains("It expires in 30 minutes.", gold)
    # found: link -> 1/5
    assert containment("The link is sent by email", gold) == pytest.approx(0.2)
    assert not contains("The link is sent by email", gold)
    # the best gold answer counts: "open tray 2" has content words open, tray, 2 -> 2/3
    assert containment("tray 2", [gold[0], "open tray 2"]) == pytest.approx(2 / 3)


def test_it_keeps_stop_words_when_a_gold_answer_has_nothing_else() -> None:
    assert content_words("in the") == {"in"}
    assert containment("put it in", ["in the"]) == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "I don't know.",
        "I don\u2019t know the answer to that.",
        "The sources do not say.",
        "The provided context doesn't mention when the link expires.",
        "I can't find that in the sources.",
        "This is not mentioned in the sources [1].",
        "I couldn't find this in the knowledge base, so I won't guess.",
        "",
    ],
)
def test_it_detects_a_refusal(answer: str) -> None:
    assert is_refusal(answer)


@pytest.mark.parametrize(
    "answer",
    [
        "The emailed link expires after 30 minutes [1].",
        "Open tray 2 and remove the paper [1]. Then restart it. The sources do not say more.",
        "Knowing the tray number helps: it is tray 2.",
    ],
)
def test_it_does_not_take_an_answer_for_a_refusal(answer: str) -> None:
    assert not is_refusal(answer)
