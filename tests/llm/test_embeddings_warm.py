"""Web processes load the embedding model as they start, not inside the first grounded turn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatbot.llm import embeddings

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("exit_after_s", [0.0, 0.2, 0.5])
def test_a_process_exiting_during_the_warm_up_exits_cleanly(exit_after_s: float) -> None:
    """Exiting while the warm-up thread set up ONNX Runtime's session aborted the process (the C++
    runtime torn down under the thread; seen in the test suite): the exit waits for it. The probe
    exits a moment after the session's set-up begins."""
    probe = (
        "import time; import django; django.setup();"
        "from chatbot.llm import embeddings; embeddings.embeddings_warm();"
        "deadline = time.monotonic() + 120\n"
        "while not embeddings._session_lock.locked() and time.monotonic() < deadline:"
        " time.sleep(0.001)\n"
        f"time.sleep({exit_after_s}); print('exiting')"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "chatbot.settings", "DEBUG": "1"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("exiting")
