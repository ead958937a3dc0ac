"""Chunk embeddings stored inline in the table's rows (STORAGE PLAIN) instead of pgvector's default
EXTERNAL, which moves a 384-number vector (1.5 KB) into the TOAST table whenever a row passes
about 2 KB with its text and full-text vector, as nearly every chunk does: every distance the
search computes from the table (each HNSW candidate's, and every chunk's on the exact path for a
small collection) then reads the TOAST table first. With the vectors inline, scoring the chunks
of a 1,000-chunk collection took 21.7 ms p50 against 33.8 (tests/benchmarks/README.md,
bench_search). The text and full-text vector are compressed or moved out instead.

Only rows written from now on are stored this way (a catalog change, instant): ingestion writes
every new or changed document's chunks. Rows already stored keep their TOASTed vectors until
rewritten; `VACUUM FULL chatbot_chunk` in a maintenance window rewrites them all (it locks the
table and rebuilds its indexes, HNSW included), then a plain VACUUM sets the visibility map."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("chatbot", "0035_chunk_current_by_collection")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE chatbot_chunk ALTER COLUMN embedding SET STORAGE PLAIN",
            "ALTER TABLE chatbot_chunk ALTER COLUMN embedding SET STORAGE EXTERNAL",
        )
    ]
