from __future__ import annotations

from decimal import Decimal

from django.db import models


class ModelEndpoint(models.Model):
    """One model the router may choose, in the catalogue admins edit."""

    class Provider(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible (llama.cpp, vLLM, Ollama, OpenAI)"
        ANTHROPIC = "anthropic", "Anthropic"
        FAKE = "fake", "Fake (tests and demos)"
        LOCAL_HF = "local_hf", "Local Hugging Face model directory (transformers, in process)"

    class Style(models.TextChoices):
        CHAT = "chat", "Chat messages"
        COMPLETION = "completion", "Completion with a prompt template"

    class ToolCalling(models.TextChoices):
        NATIVE = "native", "Native tool calling (hosted APIs, vLLM, Ollama, tool-capable llama.cpp)"
        STRUCTURED = "structured", "Structured choice: the model fills a JSON schema"
        NONE = "none", "No tools: search the knowledge base and answer"

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
    tool_calling = models.CharField(
        max_length=12,
        choices=ToolCalling.choices,
        default=ToolCalling.STRUCTURED,
        help_text="How the agent asks this model to choose its next step.",
    )
    # False: personal data in what is sent is replaced by placeholders first (chatbot.llm.veil).
    # Existing hosted endpoints were set to False by migration 0027; new rows default to True
    # so an admin adding a local model is not surprised, and the form says what it means.
    personal_data_allowed = models.BooleanField(
        default=True,
        verbose_name="May see personal data",
        help_text="Untick for a hosted model: names, e-mail addresses, phone numbers and the like "
        "are replaced by placeholders before anything is sent, and put back in its answer.",
    )
    # The LLM judges run only on a model marked capable. The bundled local model (Gemma 3 270M,
    # a base model) cannot grade: it is seeded unticked and migration 0029 unticked it.
    capable_judge = models.BooleanField(
        default=True,
        verbose_name="Capable enough to grade answers",
        help_text="Untick for small models: the LLM judges (faithfulness, relevance, policies, "
        "helpfulness, readability) do not run on a model without this.",
    )
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
