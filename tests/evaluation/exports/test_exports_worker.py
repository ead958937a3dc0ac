"""An export queued after its transaction commits runs in a real Celery worker over the test
Redis, against the test database."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import TestWorkController
from django.contrib.auth.models import User

from chatbot.models import Export
from evaluation.exports import services
from tests.evaluation.exports.support import assert_dpo_row, rated, read_jsonl

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_writes_an_export_in_a_real_worker(alice: User, worker: TestWorkController) -> None:
    question = "How do I connect to the VPN?"
    rated(alice, 1, question=question, answer="Open the VPN client and sign in.")
    rated(alice, -1, question=question, answer="Ask someone else.")

    export = services.export_create(kind=Export.Kind.DPO, user=alice)

    # A deadline so a broken worker fails the test instead of hanging it; not a timing claim.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        export.refresh_from_db()
        if export.status in {Export.Status.DONE, Export.Status.FAILED}:
            break
        time.sleep(0.2)
    assert export.status == Export.Status.DONE, export.error or export.status
    path = services.export_file(export)
    assert path is not None
    (row,) = read_jsonl(path)
    assert_dpo_row(row)
