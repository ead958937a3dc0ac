# Two slices of issue 13 each added a 0020 beside the other; this joins them.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0020_answer_cache"),
        ("chatbot", "0020_routing_rules"),
    ]

    operations = []
