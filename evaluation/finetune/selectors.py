"""Reads for the fine-tuning pages."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet

from chatbot.models import FineTuneJob, ModelEndpoint, Promotion

PAGE_SIZE = 25


def jobs_page(*, page: str | None) -> Page[FineTuneJob]:
    jobs = FineTuneJob.objects.select_related("export", "endpoint", "created_by").defer("log")
    return Paginator(jobs.order_by("-created_at", "-pk"), PAGE_SIZE).get_page(page)


def job_get(*, pk: int) -> FineTuneJob:
    return FineTuneJob.objects.select_related("export", "endpoint", "hosted_via", "created_by").get(
        pk=pk
    )


def promotion_latest(*, job: FineTuneJob) -> Promotion | None:
    if job.endpoint_id is None:
        return None
    return (
        Promotion.objects.filter(endpoint_id=job.endpoint_id)
        .select_related(
            "endpoint",
            "baseline",
            "dataset",
            "abtest",
            "candidate_experiment",
            "baseline_experiment",
            "promoted_by",
            "rolled_back_by",
        )
        .first()
    )


def hosted_accounts() -> QuerySet[ModelEndpoint]:
    """The catalogue entries a hosted job can run through: enabled OpenAI-compatible ones, less
    the local model server (llama.cpp serves a model, it has no fine-tuning API) and the models
    fine-tuning registered (results on an account, not the account)."""
    return (
        ModelEndpoint.objects.filter(enabled=True, provider=ModelEndpoint.Provider.OPENAI)
        .exclude(name=settings.LOCAL_MODEL_NAME)
        .exclude(base_url__in=[settings.LOCAL_MODEL_URL, settings.LOCAL_MODEL_URL.rstrip("/")])
        .filter(finetune_job__isnull=True)
        .order_by("name")
    )
