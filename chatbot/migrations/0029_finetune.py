import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    """Fine-tuning jobs (their lineage, progress, losses and the endpoint they registered), the
    gated promotion of a fine-tuned endpoint, and the catalogue's local Hugging Face provider."""

    dependencies = [
        ("chatbot", "0028_merge_pii_retention"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name="modelendpoint",
            name="provider",
            field=models.CharField(
                choices=[
                    ("openai", "OpenAI-compatible (llama.cpp, vLLM, Ollama, OpenAI)"),
                    ("anthropic", "Anthropic"),
                    ("fake", "Fake (tests and demos)"),
                    (
                        "local_hf",
                        "Local Hugging Face model directory (transformers, in process)",
                    ),
                ],
                max_length=20,
            ),
        ),
        migrations.CreateModel(
            name="FineTuneJob",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "method",
                    models.CharField(
                        choices=[
                            ("sft", "Supervised fine-tuning (LoRA)"),
                            ("dpo", "Preference pairs (DPO with LoRA)"),
                        ],
                        max_length=10,
                    ),
                ),
                (
                    "backend",
                    models.CharField(
                        choices=[
                            ("local", "Local: PEFT and TRL on a Hugging Face model directory"),
                            ("hosted", "Hosted: an OpenAI-compatible fine-tuning API"),
                        ],
                        default="local",
                        max_length=10,
                    ),
                ),
                ("base_model", models.CharField(max_length=500)),
                ("hyperparameters", models.JSONField(blank=True, default=dict)),
                ("fingerprint", models.CharField(max_length=64)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="queued",
                        max_length=10,
                    ),
                ),
                ("cancel_requested", models.BooleanField(default=False)),
                ("steps_done", models.PositiveIntegerField(default=0)),
                ("steps_total", models.PositiveIntegerField(default=0)),
                ("log", models.TextField(blank=True)),
                ("losses", models.JSONField(blank=True, default=list)),
                ("lineage", models.JSONField(blank=True, default=dict)),
                ("output_dir", models.CharField(blank=True, max_length=500)),
                ("hosted_job_id", models.CharField(blank=True, max_length=200)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="finetune_jobs",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "endpoint",
                    models.OneToOneField(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="finetune_job",
                        to="chatbot.modelendpoint",
                    ),
                ),
                (
                    "export",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="finetune_jobs",
                        to="chatbot.export",
                    ),
                ),
                (
                    "hosted_via",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="chatbot.modelendpoint",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status__in", ["failed", "cancelled"]), _negated=True),
                        fields=("fingerprint",),
                        name="one_live_finetune_job_per_request",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="Promotion",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("offline_passed", models.BooleanField(null=True)),
                ("verdict", models.JSONField(blank=True, default=dict)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("offline", "Offline experiment running"),
                            ("lost", "Lost the offline experiment"),
                            ("online", "Online A/B test"),
                            ("promoted", "Promoted"),
                            ("rolled_back", "Rolled back"),
                        ],
                        default="offline",
                        max_length=12,
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("promoted_at", models.DateTimeField(blank=True, null=True)),
                ("rolled_back_at", models.DateTimeField(blank=True, null=True)),
                (
                    "abtest",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="chatbot.abtest",
                    ),
                ),
                (
                    "baseline",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="chatbot.modelendpoint",
                    ),
                ),
                (
                    "baseline_experiment",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="chatbot.experiment",
                    ),
                ),
                (
                    "candidate_experiment",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="chatbot.experiment",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "dataset",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="chatbot.dataset",
                    ),
                ),
                (
                    "endpoint",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="promotions",
                        to="chatbot.modelendpoint",
                    ),
                ),
                (
                    "promoted_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "rolled_back_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status__in", ["offline", "online"])),
                        fields=("endpoint",),
                        name="one_open_promotion_per_endpoint",
                    )
                ],
            },
        ),
    ]
