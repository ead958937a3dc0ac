"""The promotion gate, asked wherever a model becomes the default (`endpoint_set_default`): a
fine-tuned endpoint may become it only after it did not lose an offline experiment against the
default of the day and went through an online A/B test. Reads the data model only, so the console
imports it without a cycle."""

from __future__ import annotations

from chatbot.models import ABTest, FineTuneJob, ModelEndpoint, Promotion


def promotion_gate_refusal(endpoint: ModelEndpoint) -> str:
    """Why `endpoint` may not become the default, in words; "" when it may."""
    if not FineTuneJob.objects.filter(endpoint=endpoint).exists():
        return ""
    passed = Promotion.objects.filter(
        endpoint=endpoint,
        offline_passed=True,
        abtest__status__in=[ABTest.Status.RUNNING, ABTest.Status.STOPPED],
    )
    if passed.exists():
        return ""
    return (
        f"“{endpoint.name}” is a fine-tuned model: promote it from its fine-tuning job's page, "
        "after an offline experiment it does not lose and an online A/B test."
    )
