"""The demo dataset `make run` starts with: questions about the demo handbook with their gold
answers, plus two it cannot answer, so a reviewer can run an experiment at once."""

from __future__ import annotations

from django.conf import settings

from chatbot.models import Dataset
from evaluation.datasets.services import dataset_import_jsonl

DEMO_DATASET = "Demo handbook questions"
DEMO_QUESTIONS = settings.BASE_DIR / "deploy" / "demo-kb" / "questions.jsonl"


def demo_dataset_ensure() -> Dataset | None:
    """Import the demo questions once; later runs change nothing (returns None then)."""
    if Dataset.objects.filter(name=DEMO_DATASET).exists():
        return None
    return dataset_import_jsonl(
        name=DEMO_DATASET,
        path=DEMO_QUESTIONS,
        description="Questions about the demo support handbook (deploy/demo-kb/).",
    ).dataset
