"""The names of the grounding settings, one vocabulary for every page and command that shows them
(Models → Answers & grounding, new experiments, eval_answers, run_experiment)."""

from __future__ import annotations

from django import forms

RETRIEVAL_K = "Passages per answer (k)"
RETRIEVAL_K_HELP = "How many knowledge-base passages the model is given as numbered context."
MIN_SIMILARITY = "Relevance threshold"
MIN_SIMILARITY_HELP = (
    "Cosine similarity (0-1) from which a passage counts as relevant. When no passage reaches "
    "it, the assistant says it doesn't know and offers a human. 0, the default, leaves the "
    "decision to the answerability threshold; measured end to end, a similarity or coverage "
    "floor on top of it refused far more answerable questions (README)."
)
MIN_COVERAGE = "Question coverage"
MIN_COVERAGE_HELP = (
    "Share of the question's words (0-1) the relevant passages must contain. A passage on the "
    "same topic can be similar without answering: below this the assistant says it doesn't "
    "know. 0, the default, turns the check off: the no-answer classifier reads coverage itself."
)
MIN_ANSWERABLE = "Answerability threshold"
MIN_ANSWERABLE_HELP = (
    "The no-answer classifier's probability (0-1) that the passages found answer the question. "
    "Below it the assistant says it doesn't know and offers a human. Higher refuses more "
    "questions the knowledge base cannot answer, and also more that it can: see the measured "
    "trade-off. 0 turns the check off."
)


def retrieval_k_field() -> forms.IntegerField:
    return forms.IntegerField(
        label=RETRIEVAL_K, min_value=1, max_value=20, help_text=RETRIEVAL_K_HELP
    )


def min_similarity_field() -> forms.FloatField:
    return forms.FloatField(
        label=MIN_SIMILARITY, min_value=0.0, max_value=1.0, help_text=MIN_SIMILARITY_HELP
    )


def min_coverage_field() -> forms.FloatField:
    return forms.FloatField(
        label=MIN_COVERAGE, min_value=0.0, max_value=1.0, help_text=MIN_COVERAGE_HELP
    )


def min_answerable_field() -> forms.FloatField:
    return forms.FloatField(
        label=MIN_ANSWERABLE, min_value=0.0, max_value=1.0, help_text=MIN_ANSWERABLE_HELP
    )
