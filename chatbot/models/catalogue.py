from __future__ import annotations

from decimal import Decimal

from django.db import models


class ModelEndpoint(models.Model):
    """One model the router may choose, in the catalogue admins edit."""

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible (llama.cpp, vLLM, Ollama, OpenAI)"
        ANTHROPIC = "anthropic", "Anthropic"
        FAKE = "fake", "Fake (tests and demos)"

    class Style(models.TextChoices):
        CHAT = "chat", "Chat messages"
        COMPLETION = "completion", "Completion with a prompt template"

    name = models.SlugField(max_length=80, unique=True)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    base_url = models.URLField(blank=True, help_text="Blank uses the provider's default.")
    model_id = models.CharField(max_length=200)
    api_key_name = models.CharField(
        max_length=100, blank=True, help_text="Name of the environment variable holding the key."
    )
    style = models.CharField(max_length=20, choices=Style.choices, default=Style.CHAT)
    prompt_template = models.TextField(
        blank=True, help_text="For completion style: uses {system}, {history} and {question}."
    )
    price_input_per_mtok = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal(0))
    price_output_per_mtok = models.DecimalField(max_digits=12, decimal_places=4, default=Decimal(0))
    context_window = models.PositiveIntegerField(default=4096)
    max_output_tokens = models.PositiveIntegerField(default=512)
    temperature = models.FloatField(default=0.2)
    region = models.CharField(max_length=50, default="local")
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(default=False)
    options = models.JSONField(default=dict, blank=True, help_text="Provider-specific settings.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="one_default_model_endpoint",
            )
        ]

    def __str__(self) -> str:
        return self.name
