from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0031_synthetic"),
        ("chatbot", "0031_weekly_report"),
    ]

    operations: list[migrations.operations.base.Operation] = []
