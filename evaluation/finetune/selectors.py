"""Reads for the fine-tuning pages."""

from __future__ import annotations

from django.core.paginator import Page, Paginator

from chatbot.models import FineTuneJob, Promotion

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
