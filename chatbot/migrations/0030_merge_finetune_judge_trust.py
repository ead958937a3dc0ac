from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0029_finetune"),
        ("chatbot", "0029_judge_trust"),
    ]

    operations: list[migrations.operations.base.Operation] = []
