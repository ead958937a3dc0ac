import django.contrib.postgres.fields
from django.db import migrations, models

ALL_SCOPES = ["chat", "search", "read_only"]


def keys_keep_their_reach(apps, schema_editor):
    """Keys made before scopes existed could reach everything; they keep that reach."""
    apps.get_model("chatbot", "ApiKey").objects.update(scopes=ALL_SCOPES)


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0025_audit_log"),
    ]

    operations = [
        migrations.AlterModelOptions(name="apikey", options={"ordering": ["-created_at", "-id"]}),
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(
                    choices=[
                        ("chat", "Chat (conversations, answers, /v1)"),
                        ("search", "Search the knowledge base"),
                        ("read_only", "Read only (GET endpoints)"),
                    ],
                    max_length=16,
                ),
                default=list,
                size=None,
            ),
        ),
        migrations.AddField(
            model_name="apikey",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="apikey",
            name="rate_limit_per_minute",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(keys_keep_their_reach, migrations.RunPython.noop),
    ]
