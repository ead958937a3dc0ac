"""Term statistics: how rare each of a query's words is in the knowledge base (inverse document
frequency), and the BM25 score and IDF-weighted coverage of a passage.

The full-text leg ranks by BM25 (`chatbot.retrieval.search`): a chunk's score is the sum over the
query's lexemes of IDF x impact, where a lexeme's impact in a chunk is

    tf (k1 + 1) / (tf + k1 (1 - b + b length / REFERENCE_LEXEMES)),

tf = body occurrences + HEADING_WEIGHT x heading occurrences, length = the chunk's distinct
lexemes. Postgres computes impacts into `chatbot_posting` (function `chatbot_bm25_impact`,
migration 0012; `impact` below is the same formula). The length is normalised by a fixed
reference rather than the corpus mean, so a chunk's postings never change when other documents
arrive: chunks come from one splitter of about 200 words, whose chunks hold REFERENCE_LEXEMES
distinct lexemes on average over the evaluation sets. ts_rank, which ranked the leg before,
counted matches but not how rare they are: a passage matching "coronavirus" scored like one
matching "DC-SIGNR".

Frequencies come from `TermStat`, recomputed from the chunks' own full-text vectors (so the words
are Postgres's English lexemes, stemmed like the search) after each ingestion by
`term_stats_refresh`; searches read only the query's few lexemes. They count every current chunk,
whoever may see it: a frequency is a weight, never shown. Before the first refresh every word
weighs the same, and the features fall back to plain coverage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from django.db import connection, transaction

from chatbot.models import Chunk, TermStat

# BM25's term-frequency saturation and length normalisation (the usual values, not tuned).
BM25_K1 = 1.2
BM25_B = 0.75
# The postings' reference chunk length and heading weight (written out in migration 0012).
REFERENCE_LEXEMES = 67
HEADING_WEIGHT = 5
# Serialises refreshes of the table from several workers (pg_advisory_xact_lock key).
_REFRESH_LOCK = 0x7E4D5_57A7


def idf(chunks_with_term: int, total: int) -> float:
    """BM25's inverse document frequency, always above 0."""
    total = max(total, chunks_with_term)
    return math.log(1 + (total - chunks_with_term + 0.5) / (chunks_with_term + 0.5))


def query_weights(frequencies: Mapping[str, int], lexemes: Sequence[str]) -> dict[str, float]:
    """Each query lexeme's IDF, from `frequencies` (lexeme -> chunks; "" -> all chunks)."""
    total = frequencies.get("", 0)
    return {lexeme: idf(frequencies.get(lexeme, 0), total) for lexeme in lexemes}


def weighted_coverage(weights: Mapping[str, float], found: set[str] | Mapping[str, int]) -> float:
    """The IDF-weighted share of the query's lexemes that `found` holds (1.0 for no lexemes)."""
    total = sum(weights.values())
    if total <= 0:
        return 1.0
    return sum(w for lexeme, w in weights.items() if lexeme in found) / total


def saturation(tf: float, length: float, mean_length: float) -> float:
    """BM25's term-frequency part: `tf` occurrences in a passage of `length` distinct lexemes,
    against passages of `mean_length` (0: no length normalisation)."""
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / mean_length) if mean_length > 0 else BM25_K1
    return tf * (BM25_K1 + 1) / (tf + norm)


def impact(body: int, heading: int, length: int) -> float:
    """A lexeme's BM25 term-frequency part in a chunk, as `chatbot_bm25_impact` computes it."""
    return saturation(body + HEADING_WEIGHT * heading, length, REFERENCE_LEXEMES)


def bm25(
    weights: Mapping[str, float], counts: Mapping[str, int], length: int, mean_length: float
) -> float:
    """BM25 of a passage: `counts` its occurrences of the query lexemes, `length` its number of
    distinct lexemes (the length Postgres keeps), `mean_length` that of the other candidates."""
    return sum(
        weight * saturation(counts[lexeme], length, mean_length)
        for lexeme, weight in weights.items()
        if counts.get(lexeme, 0) > 0
    )


def term_stats_refresh() -> int:
    """Recount every lexeme of the current chunks; returns how many lexemes there are. One
    transaction, so a search reads either the old counts or the new ones."""
    current = f"SELECT search_vector FROM {Chunk._meta.db_table} WHERE retired_at IS NULL"  # noqa: S608
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_REFRESH_LOCK])
        cursor.execute(f"DELETE FROM {TermStat._meta.db_table}")  # noqa: S608
        cursor.execute(
            f"INSERT INTO {TermStat._meta.db_table} (lexeme, chunks) "  # noqa: S608
            "SELECT word, ndoc FROM ts_stat(%s)",
            [current],
        )
        count = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {TermStat._meta.db_table} (lexeme, chunks) "  # noqa: S608
            f"SELECT '', count(*) FROM ({current}) AS c",
        )
    return count
