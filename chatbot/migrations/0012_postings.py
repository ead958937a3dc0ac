"""The full-text leg's inverted index with BM25 impacts (`chatbot_posting`), kept by Postgres.

One row per (current chunk, lexeme): how often the lexeme occurs in the chunk's heading and in its
body, the chunk's length (distinct lexemes) and the BM25 term-frequency part at the default
heading weight (`impact`), ordered per lexeme by an index, so the full-text leg reads the strongest
postings of each query word instead of ranking every chunk that holds any of them.
Statement-level triggers keep it in step with `chatbot_chunk` on every write path (ORM, COPY,
bulk inserts): inserted current chunks get postings, an update (retirement, new text) rewrites the
chunk's postings, a delete removes them. The formula is explained in `chatbot.retrieval.terms`.
The GIN index over the chunks' full-text vectors, which the ts_rank leg read, is dropped.
"""

import django.db.models.deletion
from django.db import migrations, models


# The constants are `chatbot.retrieval.terms`'s (BM25_K1, BM25_B, REFERENCE_LEXEMES,
# HEADING_WEIGHT), written out: a migration must not change when that module does.
_INSERT = """
INSERT INTO chatbot_posting (lexeme, chunk_id, collection_id, body, heading, length, impact)
SELECT u.lexeme, c.id, c.collection_id, w.body, w.heading, length(c.search_vector),
       chatbot_bm25_impact(w.body + 5 * w.heading, length(c.search_vector))
FROM {source} c
CROSS JOIN LATERAL unnest(c.search_vector) u
CROSS JOIN LATERAL (
    SELECT least(count(*) FILTER (WHERE l <> 'A'), 32767)::smallint AS body,
           least(count(*) FILTER (WHERE l = 'A'), 32767)::smallint AS heading
    FROM unnest(u.weights) l) w
WHERE c.retired_at IS NULL
"""

FORWARD = f"""
CREATE FUNCTION chatbot_bm25_impact(tf float8, length float8) RETURNS float8
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN (tf * (1.2 + 1) / (tf + 1.2 * (1 - 0.75 + 0.75 * length / 67)));

CREATE FUNCTION chatbot_chunk_postings() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        DELETE FROM chatbot_posting p USING chatbot_posting_old o WHERE p.chunk_id = o.id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        {_INSERT.format(source="chatbot_posting_new")};
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER chatbot_chunk_postings_insert AFTER INSERT ON chatbot_chunk
    REFERENCING NEW TABLE AS chatbot_posting_new
    FOR EACH STATEMENT EXECUTE FUNCTION chatbot_chunk_postings();
CREATE TRIGGER chatbot_chunk_postings_delete AFTER DELETE ON chatbot_chunk
    REFERENCING OLD TABLE AS chatbot_posting_old
    FOR EACH STATEMENT EXECUTE FUNCTION chatbot_chunk_postings();
CREATE TRIGGER chatbot_chunk_postings_update AFTER UPDATE ON chatbot_chunk
    REFERENCING OLD TABLE AS chatbot_posting_old NEW TABLE AS chatbot_posting_new
    FOR EACH STATEMENT EXECUTE FUNCTION chatbot_chunk_postings();

{_INSERT.format(source="chatbot_chunk")};
"""  # noqa: S608 (constant SQL only)

BACKWARD = """
DROP TRIGGER chatbot_chunk_postings_update ON chatbot_chunk;
DROP TRIGGER chatbot_chunk_postings_delete ON chatbot_chunk;
DROP TRIGGER chatbot_chunk_postings_insert ON chatbot_chunk;
DROP FUNCTION chatbot_chunk_postings();
DROP FUNCTION chatbot_bm25_impact(float8, float8);
"""


class Migration(migrations.Migration):
    dependencies = [
        ("chatbot", "0011_defaults_leave_it_to_the_classifier"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="chunk", name="chunk_search_vector_gin"),
        migrations.CreateModel(
            name="Posting",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "chunk",
                        "lexeme",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("lexeme", models.TextField()),
                ("collection_id", models.BigIntegerField()),
                ("body", models.SmallIntegerField()),
                ("heading", models.SmallIntegerField()),
                ("length", models.SmallIntegerField()),
                ("impact", models.FloatField()),
                (
                    "chunk",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="chatbot.chunk",
                    ),
                ),
            ],
            options={
                "indexes": [
                    models.Index(
                        fields=["lexeme", "-impact"],
                        include=("chunk", "collection_id", "body", "heading", "length"),
                        name="posting_by_impact",
                    )
                ],
            },
        ),
        migrations.RunSQL(FORWARD, BACKWARD),
    ]
