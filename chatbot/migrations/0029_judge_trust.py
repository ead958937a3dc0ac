from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

# The model id the bundled local model is seeded with (chatbot.llm.catalogue).
BUNDLED_MODEL_ID = "gemma-3-270m"


def bundled_model_not_capable(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """The bundled 270M base model cannot grade answers: the LLM judges must not run on it."""
    ModelEndpoint = apps.get_model("chatbot", "ModelEndpoint")
    ModelEndpoint.objects.filter(model_id=BUNDLED_MODEL_ID).update(capable_judge=False)


class Migration(migrations.Migration):
    """Judges' agreement with the humans (kappa, pairs, state) stored for flagging; why a failing
    score did not flag; admin-written policies; the catalogue's mark for models able to grade;
    three more LLM judge kinds."""

    dependencies = [("chatbot", "0028_merge_pii_retention")]

    operations = [
        migrations.AddField(
            model_name="judge",
            name="trust_kappa",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="judge",
            name="trust_pairs",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="judge",
            name="trust_state",
            field=models.CharField(
                choices=[
                    ("trusted", "Trusted"),
                    ("untrustworthy", "Untrustworthy"),
                    ("too_few", "Not enough reviews yet"),
                    ("no_variation", "No disagreement to measure yet"),
                ],
                default="too_few",
                max_length=20,
            ),
        ),
        migrations.AddField(
            model_name="judge",
            name="trust_checked_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="judge",
            name="kind",
            field=models.CharField(
                choices=[
                    ("toxicity", "Toxicity (offline classifier)"),
                    ("pii", "Personal data in the answer"),
                    ("format", "Format (citations, length, JSON)"),
                    ("faithfulness_llm", "Faithfulness (LLM judge)"),
                    ("faithfulness_overlap", "Faithfulness (word overlap baseline)"),
                    ("relevance_llm", "Answer relevance (LLM judge)"),
                    ("reward_model", "Reward model (trained on human grades)"),
                    ("policy_llm", "Policy violations (LLM judge)"),
                    ("helpfulness_llm", "Helpfulness (LLM judge)"),
                    ("readability_llm", "Readability (LLM judge)"),
                ],
                max_length=30,
            ),
        ),
        migrations.AddField(
            model_name="judgescore",
            name="flag_ignored",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.CreateModel(
            name="JudgePolicy",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=120, unique=True)),
                (
                    "rule",
                    models.TextField(
                        help_text="In plain language, as you would tell a new colleague."
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.AddField(
            model_name="modelendpoint",
            name="capable_judge",
            field=models.BooleanField(
                default=True,
                help_text="Untick for small models: the LLM judges (faithfulness, relevance, "
                "policies, helpfulness, readability) do not run on a model without this.",
                verbose_name="Capable enough to grade answers",
            ),
        ),
        migrations.RunPython(bundled_model_not_capable, migrations.RunPython.noop),
    ]
