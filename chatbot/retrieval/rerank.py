"""The rerank stage: a small learned model that reorders the candidates of one query.

Fixed fusion weights decide once, for every query, how far to trust each leg; measured on
articles nobody tuned on, that lost to the full-text leg alone. The candidates are each leg's
best 15 passages (`rerank_pool`), so neither leg's finds are crowded out by the other's. The
reranker reads, per candidate,
both legs' ranks and scores, the query's similarity to its document's title, its BM25 among the
candidates and IDF-weighted coverage of the query (`terms`), and the best of those over the
candidates of the same document, since a question is answered by a document and a long one
spreads its evidence over several passages. A logistic regression over those features, trained by
`manage.py train_retrieval` on the tuning parts of the evaluation sets (label: the passage's
document is the question's gold document), gives each candidate the log-odds that its document
answers the query. Each feature is weighed differently for long articles and for short entries,
blended by how many candidates share their document (`long_share`).

The weights are a few dozen numbers in a JSON file shipped with the code (`weights/`), so nothing
is downloaded at run time and scoring 30 candidates costs well under a millisecond.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatbot.retrieval.terms import bm25, weighted_coverage

if TYPE_CHECKING:
    from chatbot.retrieval.search import SearchHit

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RERANKER_PATH = WEIGHTS_DIR / "reranker.json"
# The candidates the reranker reorders: each leg's best `RERANK_LEG_DEPTH` passages (up to 30,
# fewer where the legs agree). The first 30 of the fusion used to be the pool; on unseen articles
# the dense leg's many near misses crowded the full-text leg's finds out of it (README).
RERANK_LEG_DEPTH = 15
_RRF_K = 60

# What each candidate is described by; the model reads each of these twice (below).
BASE_FEATURES = (
    "dense_rrf",  # the passage's rank in each leg, as reciprocal rank (0: not found)
    "sparse_rrf",
    "similarity",  # cosine similarity to the query
    "text_rank_ratio",  # the full-text leg's BM25 over the best candidate's
    "idf_coverage",  # IDF-weighted share of the query's lexemes the passage holds
    "bm25_ratio",  # BM25 over the best candidate's
    "doc_dense",  # the best of each of those over the passage's document's candidates
    "doc_sparse",
    "doc_similarity",
    "doc_idf_coverage",  # ... what all of its document's candidates hold together
    "doc_bm25",
    # Cosine similarity to the passage's document title (none: to the passage) minus the best
    # candidate's: generic titles ("article 630") all score alike and so say nothing, where an
    # absolute similarity would be read as evidence.
    "title_gap",
)
# Knowledge bases differ in how far each leg can be trusted: among short FAQ-style entries the
# dense leg's order is the best evidence there is, among long articles it is not (articles on one
# topic all look alike to it). The model tells the two apart by the candidates themselves: the
# share of them that share their document with another candidate (about 0 for one-chunk entries,
# most for articles), `long_share`. Each feature is read twice, weighted by that share ("@long")
# and by its complement ("@short"), which amounts to one model per kind of knowledge base, learned
# together and blended per query. In the long kind the dense leg's ranks are left out (chosen on
# the tuning parts; README): its similarity and the title still speak for it.
LONG_FEATURES = tuple(f for f in BASE_FEATURES if f not in ("dense_rrf", "doc_dense"))
RERANK_FEATURES = tuple(f"{f}@long" for f in LONG_FEATURES) + tuple(
    f"{f}@short" for f in BASE_FEATURES
)


class BadModel(ValueError):
    """A weights file that is not a model this code can use; the message says why."""


@dataclass(frozen=True)
class LinearModel:
    """Standardised features, then a logistic regression: `score` gives log-odds."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    # What the model was trained on and how it measured: written by the training command.
    about: dict[str, Any] = field(default_factory=dict)

    def score(self, row: dict[str, float]) -> float:
        total = self.intercept
        for name, mean, scale, coef in zip(
            self.features, self.mean, self.scale, self.coef, strict=True
        ):
            total += coef * (row[name] - mean) / scale
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "features": list(self.features),
            "mean": [round(x, 8) for x in self.mean],
            "scale": [round(x, 8) for x in self.scale],
            "coef": [round(x, 8) for x in self.coef],
            "intercept": round(self.intercept, 8),
            "about": self.about,
        }

    @classmethod
    def from_json(cls, data: Any, *, expected: Sequence[str]) -> LinearModel:
        try:
            model = cls(
                features=tuple(str(f) for f in data["features"]),
                mean=tuple(float(x) for x in data["mean"]),
                scale=tuple(float(x) for x in data["scale"]),
                coef=tuple(float(x) for x in data["coef"]),
                intercept=float(data["intercept"]),
                about=dict(data.get("about") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadModel(f"not a linear model: {exc}") from None
        if model.features != tuple(expected):
            raise BadModel(f"features {list(model.features)} are not {list(expected)}")
        sizes = {len(model.mean), len(model.scale), len(model.coef)}
        if sizes != {len(expected)} or any(s <= 0 for s in model.scale):
            raise BadModel("mean, scale and coef need one entry a feature, each scale above 0")
        return model

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")


def load_model(path: Path, *, expected: Sequence[str]) -> LinearModel | None:
    """The model in `path`, or None (logged) when there is none or it is unusable."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        logger.warning("No model at %s: that stage is skipped.", path)
        return None
    except (OSError, json.JSONDecodeError) as exc:
        logger.error("Cannot read the model at %s (%s): that stage is skipped.", path, exc)
        return None
    try:
        return LinearModel.from_json(data, expected=expected)
    except BadModel as exc:
        logger.error("The model at %s is unusable (%s): that stage is skipped.", path, exc)
        return None


@lru_cache(maxsize=4)
def reranker(path: Path = RERANKER_PATH) -> LinearModel | None:
    return load_model(path, expected=RERANK_FEATURES)


def candidate_features(
    weights: Mapping[str, float], hits: Sequence[SearchHit]
) -> list[dict[str, float]]:
    """One feature row per hit, in the hits' order (`hits`: one query's rerank pool;
    `weights`: the IDF of each of its lexemes, `SearchResult.term_weights`): the base features,
    `long_share`, and each feature weighted for the long and the short kind (`RERANK_FEATURES`)."""
    sims = [h.similarity for h in hits if h.similarity is not None]
    floor_sim = min(sims, default=0.0)
    top_text = max((h.text_rank or 0.0 for h in hits), default=0.0)
    mean_length = statistics.fmean(h.lexemes for h in hits) if hits else 0.0
    scores = [bm25(weights, h.term_counts, h.lexemes, mean_length) for h in hits]
    top_bm25 = max(scores, default=0.0)
    rows = []
    for hit, score in zip(hits, scores, strict=True):
        similarity = hit.similarity if hit.similarity is not None else floor_sim
        rows.append(
            {
                "dense_rrf": _RRF_K / (_RRF_K + hit.dense_rank) if hit.dense_rank else 0.0,
                "sparse_rrf": _RRF_K / (_RRF_K + hit.sparse_rank) if hit.sparse_rank else 0.0,
                # None only without the query vector: as low as the lowest candidate.
                "similarity": similarity,
                "text_rank_ratio": (hit.text_rank or 0.0) / top_text if top_text > 0 else 0.0,
                "idf_coverage": weighted_coverage(weights, hit.term_counts),
                "bm25_ratio": score / top_bm25 if top_bm25 > 0 else 0.0,
                # A document without a title: the passage's own similarity stands in.
                "title_gap": (
                    hit.title_similarity if hit.title_similarity is not None else similarity
                ),
            }
        )
    top_title = max((row["title_gap"] for row in rows), default=0.0)
    for row in rows:
        row["title_gap"] -= top_title
    by_document: dict[int, list[int]] = defaultdict(list)
    for i, hit in enumerate(hits):
        by_document[hit.document_id].append(i)
    for members in by_document.values():
        held: set[str] = set()
        for i in members:
            held.update(lexeme for lexeme, n in hits[i].term_counts.items() if n > 0)
        document = {
            "doc_dense": max(rows[i]["dense_rrf"] for i in members),
            "doc_sparse": max(rows[i]["sparse_rrf"] for i in members),
            "doc_similarity": max(rows[i]["similarity"] for i in members),
            "doc_idf_coverage": weighted_coverage(weights, held),
            "doc_bm25": max(rows[i]["bm25_ratio"] for i in members),
        }
        for i in members:
            rows[i].update(document)
    share = long_share(hits)
    for row in rows:
        row["long_share"] = share
        row.update({f"{f}@long": row[f] * share for f in LONG_FEATURES})
        row.update({f"{f}@short": row[f] * (1 - share) for f in BASE_FEATURES})
    return rows


def long_share(hits: Sequence[SearchHit]) -> float:
    """The share of `hits` whose document has another passage among them."""
    per_document = Counter(hit.document_id for hit in hits)
    return sum(per_document[h.document_id] > 1 for h in hits) / len(hits) if hits else 0.0


def rerank_pool(hits: Sequence[SearchHit], depth: int = RERANK_LEG_DEPTH) -> list[SearchHit]:
    """What the reranker reorders: the passages among `hits` (fused order) that are among the
    best `depth` of either leg, in the fused order. `hits` must hold every such passage, which
    `hybrid_search` guarantees."""
    dense = sorted((h for h in hits if h.dense_rank), key=lambda h: h.dense_rank or 0)[:depth]
    sparse = sorted((h for h in hits if h.sparse_rank), key=lambda h: h.sparse_rank or 0)[:depth]
    chosen = {h.chunk_id for h in dense} | {h.chunk_id for h in sparse}
    return [h for h in hits if h.chunk_id in chosen]


def rerank_scores(
    weights: Mapping[str, float], hits: Sequence[SearchHit], model: LinearModel
) -> list[float]:
    return [model.score(row) for row in candidate_features(weights, hits)]


def rerank_order(
    weights: Mapping[str, float], hits: Sequence[SearchHit], model: LinearModel
) -> tuple[list[SearchHit], list[float]]:
    """`hits` best first by `model`, with their scores in the same order (ties keep the fused
    order)."""
    scores = rerank_scores(weights, hits, model)
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    return [hits[i] for i in order], [scores[i] for i in order]


def probability(log_odds: float) -> float:
    return 1 / (1 + math.exp(-max(min(log_odds, 50.0), -50.0)))
