from __future__ import annotations

from django.db import models

# The no-answer classifier's threshold chosen on the tuning parts by `manage.py train_retrieval`
# (its "threshold" in chatbot/retrieval/weights/answerable.json; a test keeps the two equal).
DEFAULT_MIN_ANSWERABLE = 0.5


class AssistantSettings(models.Model):
    """How the assistant grounds its answers; one row (pk 1), edited by admins in the console."""

    class Grounding(models.TextChoices):
        REQUIRED = "required", "Required: answer only from the knowledge base, else say so"
        PREFERRED = "preferred", "Preferred: use the knowledge base when it has something"
        OFF = "off", "Off: the model answers on its own"

    grounding = models.CharField(
        max_length=10, choices=Grounding.choices, default=Grounding.REQUIRED
    )
    retrieval_k = models.PositiveSmallIntegerField(
        default=5, help_text="How many chunks the model is given as numbered context (1-20)."
    )
    min_similarity = models.FloatField(
        default=0.0,
        help_text="A chunk counts as relevant from this cosine similarity to the question "
        "(0-1). Below it for every chunk, the assistant says it doesn't know.",
    )
    min_coverage = models.FloatField(
        default=0.0,
        help_text="Share of the question's words (0-1) the relevant chunks must contain. A chunk "
        "on the same topic is similar without answering; below this the assistant says it "
        "doesn't know. 0 turns the check off.",
    )
    min_answerable = models.FloatField(
        default=DEFAULT_MIN_ANSWERABLE,
        help_text="The no-answer classifier's probability (0-1) that the retrieved passages "
        "answer the question, from which the assistant answers; below it, it says it doesn't "
        "know. 0 turns the check off.",
    )
    max_steps = models.PositiveSmallIntegerField(
        default=3,
        help_text="How many steps (searches and tool calls) the agent may take in one turn "
        "before it answers with what it has (1-8).",
    )
    no_answer_message = models.TextField(
        default=(
            "I couldn't find this in the knowledge base, so I won't guess. "
            "Press “Needs a human” below and a colleague will take it from here."
        ),
        help_text="What the assistant says when the knowledge base has nothing relevant.",
    )
    cache_enabled = models.BooleanField(
        default=True,
        verbose_name="Answer cache",
        help_text="Answer a question asked again from an earlier answer that passed every judge, "
        "when the asker may read exactly the same collections at the same versions.",
    )
    cache_similarity = models.FloatField(
        default=0.95,
        verbose_name="Cache: similar questions from",
        help_text="Cosine similarity (0-1) from which a differently worded question gets the "
        "cached answer of an earlier one. 0 serves only the same question (after case, spacing "
        "and end punctuation).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "assistant settings"

    def __str__(self) -> str:
        return "Assistant settings"
