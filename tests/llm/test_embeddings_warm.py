"""Web processes load the embedding model as they start, not inside the first grounded turn."""

from __future__ import annotations

from chatbot.llm import embeddings


def test_it_loads_the_embedding_model_in_the_background() -> None:
    thread = embeddings.embeddings_warm()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert embeddings._model is not None
    # A second warm-up reuses the loaded model.
    loaded = embeddings._model
    embeddings.embeddings_warm().join(timeout=60)
    assert embeddings._model is loaded
