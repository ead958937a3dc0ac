"""Personal data and residency: which endpoints may see personal data as written, what each turn
had replaced before it left, and the regions collections, groups and API keys allow.

Existing endpoints keep seeing personal data only when they are local: the fake provider, or an
OpenAI-compatible server the catalogue says runs in region "local" at a base URL of its own.
Anthropic, and OpenAI-compatible rows with no base URL (OpenAI's own API) or another region, are
set to False; an admin ticks the box again for a self-hosted server in another region."""

import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models
from django.db.models import Q

REGIONS_HELP = "Regions the data may be sent to, e.g. eu. Empty: any region."


def regions_field():
    return django.contrib.postgres.fields.ArrayField(
        base_field=models.CharField(max_length=50),
        blank=True,
        default=list,
        help_text=REGIONS_HELP,
        size=None,
    )


def hosted_endpoints_get_placeholders(apps, schema_editor):
    ModelEndpoint = apps.get_model("chatbot", "ModelEndpoint")
    local = Q(provider="fake") | (Q(provider="openai", region="local") & ~Q(base_url=""))
    ModelEndpoint.objects.exclude(local).update(personal_data_allowed=False)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("chatbot", "0026_keys_and_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelendpoint",
            name="personal_data_allowed",
            field=models.BooleanField(
                default=True,
                help_text="Untick for a hosted model: names, e-mail addresses, phone numbers and "
                "the like are replaced by placeholders before anything is sent, and put back in "
                "its answer.",
                verbose_name="May see personal data",
            ),
        ),
        migrations.AddField(
            model_name="turn",
            name="redacted",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(hosted_endpoints_get_placeholders, migrations.RunPython.noop),
        migrations.AddField(model_name="apikey", name="allowed_regions", field=regions_field()),
        migrations.AddField(model_name="collection", name="allowed_regions", field=regions_field()),
        migrations.CreateModel(
            name="GroupPolicy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("allowed_regions", regions_field()),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "group",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="policy",
                        to="auth.group",
                    ),
                ),
            ],
            options={"ordering": ["group__name"]},
        ),
        migrations.CreateModel(
            name="PiiPattern",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "entity",
                    models.CharField(
                        help_text="The type it is recorded as, in capitals: EMPLOYEE_ID.",
                        max_length=40,
                        unique=True,
                    ),
                ),
                (
                    "regex",
                    models.CharField(
                        help_text="A regular expression, e.g. EMP-\\d{6}.", max_length=500
                    ),
                ),
                (
                    "context",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=40),
                        blank=True,
                        default=list,
                        help_text="Words that make a match more certain nearby (optional), "
                        "e.g. employee.",
                        size=None,
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"ordering": ["entity"]},
        ),
    ]
