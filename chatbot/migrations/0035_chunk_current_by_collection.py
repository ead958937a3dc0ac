"""The current chunks of a collection, indexed: the dense leg counts the caller's through it and,
when they are few, scores every one of them instead of walking the HNSW graph
(chatbot.retrieval.search). Built concurrently, so ingestion and search go on meanwhile."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("chatbot", "0034_turnrollupday")]

    operations = [
        AddIndexConcurrently(
            model_name="chunk",
            index=models.Index(
                condition=models.Q(retired_at__isnull=True),
                fields=["collection", "id"],
                name="chunk_current_by_collection",
            ),
        ),
    ]
