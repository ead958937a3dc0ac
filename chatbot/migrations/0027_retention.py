"""Retention policies, legal holds and the retention job's runs. The policies are created here,
each keeping its data forever: nothing is removed until an admin chooses a duration."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

KINDS = [
    ("conversations", "Conversations and turns"),
    ("traces", "Traces (spans)"),
    ("judge_results", "Judge results"),
    ("reviews", "Reviews"),
    ("cache_entries", "Answer cache entries"),
    ("dataset_items", "Dataset items taken from production"),
    ("exports", "Training exports (rows and files)"),
    ("extraction_runs", "Extraction runs"),
]
ACTIONS = [
    ("delete", "Delete"),
    ("anonymise", "Anonymise (keep the numbers, blank the text)"),
    ("archive", "Archive, then delete"),
]


def policies_create(apps, schema_editor):
    policy = apps.get_model("chatbot", "RetentionPolicy")
    for kind, _label in KINDS:
        policy.objects.get_or_create(kind=kind, defaults={"keep_days": None, "action": "delete"})


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0026_keys_and_limits"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="RetentionPolicy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("kind", models.CharField(choices=KINDS, max_length=20, unique=True)),
                ("keep_days", models.PositiveIntegerField(blank=True, null=True)),
                ("action", models.CharField(choices=ACTIONS, default="delete", max_length=10)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "updated_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"verbose_name_plural": "retention policies", "ordering": ["kind"]},
        ),
        migrations.CreateModel(
            name="RetentionRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("dry_run", models.BooleanField(default=False)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("queued", "Queued"),
                            ("running", "Running"),
                            ("done", "Done"),
                            ("failed", "Failed"),
                        ],
                        default="queued",
                        max_length=10,
                    ),
                ),
                ("counts", models.JSONField(blank=True, default=dict)),
                ("archive_path", models.CharField(blank=True, max_length=300)),
                ("error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "requested_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-created_at"]},
        ),
        migrations.CreateModel(
            name="LegalHold",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("reason", models.CharField(max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("released_at", models.DateTimeField(blank=True, null=True)),
                (
                    "conversation",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="legal_holds",
                        to="chatbot.conversation",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "released_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="legal_holds",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("user__isnull", False),
                            ("conversation__isnull", False),
                            _connector="XOR",
                        ),
                        name="legal_hold_on_a_person_or_a_conversation",
                    )
                ],
            },
        ),
        migrations.RunPython(policies_create, migrations.RunPython.noop),
    ]
