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


def test_a_query_is_embedded_as_a_document_is() -> None:
    """`embed_query` takes a shorter path through the model than `embed_documents`; the vector
    must be the same, or queries and chunks would live in different spaces."""
    texts = ["How long does the virus survive on surfaces?", "Printer jams"]
    local = embeddings.LocalEmbeddings()
    for text, document in zip(texts, local.embed_documents(texts), strict=True):
        query = local.embed_query(text)
        assert len(query) == len(document) == 384
        assert max(abs(a - b) for a, b in zip(query, document, strict=True)) < 1e-5
        assert abs(sum(x * x for x in query) - 1) < 1e-5, "unit length"
