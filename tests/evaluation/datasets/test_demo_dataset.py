"""`bootstrap --demo` gives reviewers a dataset to run an experiment on straight away."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from chatbot.models import Dataset
from evaluation.datasets.demo import DEMO_DATASET
from evaluation.datasets.selectors import dataset_items

pytestmark = pytest.mark.django_db


def test_it_imports_the_demo_questions_once() -> None:
    out = StringIO()
    call_command("bootstrap", "--demo", stdout=out)
    call_command("bootstrap", "--demo", stdout=out)

    dataset = Dataset.objects.get(name=DEMO_DATASET)
    items = list(dataset_items(dataset))
    assert dataset.version == 1 and len(items) == 10
    assert out.getvalue().count("demo dataset:") == 1
    assert sum(item.unanswerable for item in items) == 2
    first = next(item for item in items if item.external_id == "demo-q1")
    assert first.expected_answer == "30 minutes"
