from django.db import migrations


class Migration(migrations.Migration):
    """Personal data and residency (0027_pii_and_residency) and retention (0027_retention) were
    written side by side; neither depends on the other."""

    dependencies = [
        ("chatbot", "0027_pii_and_residency"),
        ("chatbot", "0027_retention"),
    ]

    operations: list[migrations.operations.base.Operation] = []
