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


def test_the_heavy_imports_finish_before_the_background_thread_starts() -> None:
    """Another thread's half-done import of torch broke scipy's import in the caller (seen in
    test collection): the caller's thread finishes the imports, the thread only loads weights."""
    import sys

    thread = embeddings.embeddings_warm()
    assert hasattr(sys.modules["torch"], "Tensor") and "sentence_transformers" in sys.modules
    thread.join(timeout=120)
