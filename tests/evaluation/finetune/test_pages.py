"""The fine-tuning pages: admins only (nora and reviewers refused), a job started from the form
(once for the same request), its page with progress, escaped log, loss chart and cancel."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chatbot.models import AuditEntry, FineTuneJob
from tests.evaluation.finetune.support import sft_export

pytestmark = pytest.mark.django_db

ROUTES = [
    ("get", "/review/finetune/"),
    ("get", "/review/finetune/new/"),
    ("get", "/review/finetune/{job}/"),
    ("post", "/review/finetune/{job}/cancel/"),
    ("post", "/review/finetune/{job}/promotion/"),
    ("post", "/review/finetune/promotions/1/promote/"),
]


def _job(export_id: int, base: Path, **fields: object) -> FineTuneJob:
    return FineTuneJob.objects.create(
        export_id=export_id, method="sft", base_model=str(base), fingerprint=f"x{fields.get('status', '')}",
        hyperparameters={"epochs": 1}, **fields,
    )  # fmt: skip


@pytest.mark.parametrize("who", ["nora", "rita"])
def test_it_refuses_everyone_but_admins(
    who: str,
    cast: dict[str, User],
    client_as: Callable[[User], Client],
    alice: User,
    rita: User,
    tiny_base: Path,
) -> None:
    job = _job(sft_export(alice, rita).pk, tiny_base)
    client = client_as(cast[who])
    for method, route in ROUTES:
        response = getattr(client, method)(route.format(job=job.pk))
        assert response.status_code == 403, route
    job.refresh_from_db()
    assert not job.cancel_requested


def test_it_starts_a_job_from_the_form_once(
    client_as: Callable[[User], Client], alice: User, rita: User, adam: User, tiny_base: Path
) -> None:
    export = sft_export(alice, rita)
    client = client_as(adam)
    page = client.get(f"/review/finetune/new/?export={export.pk}")
    assert page.status_code == 200 and b"Start training" in page.content
    form = {
        "export": export.pk, "method": "sft", "backend": "local", "base_model": str(tiny_base),
        "epochs": 1, "max_steps": 2, "learning_rate": 0.001, "batch_size": 2, "lora_r": 4,
        "lora_alpha": 8, "beta": 0.1, "merge": "on",
    }  # fmt: skip
    first = client.post("/review/finetune/new/", form)
    second = client.post("/review/finetune/new/", form)
    job = FineTuneJob.objects.get()
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"] == f"/review/finetune/{job.pk}/"
    assert job.created_by == adam and job.hyperparameters["max_steps"] == 2
    assert AuditEntry.objects.filter(action="finetune.start", actor_id=adam.pk).count() == 1

    refused = client.post("/review/finetune/new/", {**form, "method": "dpo"})
    assert refused.status_code == 400 and b"use sft" in refused.content


def test_it_shows_progress_an_escaped_log_the_loss_chart_and_cancels(
    client_as: Callable[[User], Client], alice: User, rita: User, adam: User, tiny_base: Path
) -> None:
    job = _job(
        sft_export(alice, rita).pk, tiny_base, status=FineTuneJob.Status.RUNNING, steps_done=2, steps_total=8,
        log="12:00:00 <script>alert(1)</script>\n",
        losses=[{"step": 1, "train": 2.0, "validation": None}, {"step": 2, "train": 1.5, "validation": 1.8}],
    )  # fmt: skip
    client = client_as(adam)
    page = client.get(f"/review/finetune/{job.pk}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<progress value="2" max="8"' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "<polyline" in html and "stroke-dasharray" in html  # training and validation lines
    assert 'hx-trigger="every 2s"' in html and "Cancel job" in html
    partial = client.get(f"/review/finetune/{job.pk}/", headers={"HX-Request": "true"})
    assert b'id="finetune-progress"' in partial.content and b"<html" not in partial.content

    client.post(f"/review/finetune/{job.pk}/cancel/")
    job.refresh_from_db()
    assert job.cancel_requested
    assert AuditEntry.objects.filter(action="finetune.cancel", actor_id=adam.pk).exists()
    listing = client.get("/review/finetune/")
    assert listing.status_code == 200 and f"#{job.pk}".encode() in listing.content
