"""Seeding and editing the model catalogue."""

from __future__ import annotations

from django.conf import settings

from chatbot.llm.prompts import COMPLETION_STOP, DEFAULT_COMPLETION_TEMPLATE
from chatbot.models import ModelEndpoint


def local_endpoint_ensure() -> ModelEndpoint:
    """The local llama.cpp model, added once; an admin's later edits are kept."""
    endpoint, created = ModelEndpoint.objects.get_or_create(
        name=settings.LOCAL_MODEL_NAME,
        defaults={
            "provider": ModelEndpoint.Provider.OPENAI,
            "base_url": settings.LOCAL_MODEL_URL,
            "model_id": "gemma-3-270m",
            "style": ModelEndpoint.Style.COMPLETION,
            "prompt_template": DEFAULT_COMPLETION_TEMPLATE,
            "context_window": settings.LOCAL_MODEL_CONTEXT,
            "max_output_tokens": 200,
            "temperature": 0.2,
            "region": "on-premises",
            "options": {"stop": list(COMPLETION_STOP)},
            # A 270M base model: it cannot grade answers (the LLM judges need a capable one).
            "capable_judge": False,
        },
    )
    if created and not ModelEndpoint.objects.filter(is_default=True).exists():
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(is_default=True)
        endpoint.refresh_from_db()
    return endpoint
