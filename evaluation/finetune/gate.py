"""The promotion gate, asked wherever a model becomes the default (`endpoint_set_default`): a
fine-tuned endpoint may become it only through its promotion (`promotion.promotion_promote`),
after an offline experiment it did not lose against the default of the day and an online A/B
test. The promotion records its decision (status "promoted") before it switches the default, so
the gate opens for exactly the endpoints a promotion promoted: not for one whose A/B test is
merely running (promoting its challenger from the console's A/B page, or "make default" in the
catalogue, would skip the online check and leave the promotion without its record and rollback),
nor for one rolled back. Reads the data model only, so the console imports it without a cycle."""

from __future__ import annotations

from django.urls import reverse

from chatbot.models import FineTuneJob, ModelEndpoint, Promotion


def promotion_gate_refusal(endpoint: ModelEndpoint) -> str:
    """Why `endpoint` may not become the default, in words; "" when it may."""
    job = FineTuneJob.objects.filter(endpoint=endpoint).only("pk").first()
    if job is None:
        return ""
    if Promotion.objects.filter(endpoint=endpoint, status=Promotion.Status.PROMOTED).exists():
        return ""
    return (
        f"“{endpoint.name}” is a fine-tuned model: promote it from its fine-tuning job's page "
        f"({reverse('review:finetune_job', args=[job.pk])}), after an offline experiment it does "
        "not lose and an online A/B test."
    )
