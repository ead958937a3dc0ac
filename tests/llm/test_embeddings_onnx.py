"""Questions are embedded by ONNX Runtime from an export this project makes of the same model; the
vector must be PyTorch's (or queries and chunks would live in different spaces), the export is
made once, and anything wrong with it falls back to PyTorch instead of failing a question."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.test import override_settings

from chatbot.llm import embeddings

TEXTS = ["What is the incubation period?", "Reset my password on the HR portal, please, now"]


@pytest.fixture
def fresh_session() -> Iterator[None]:
    """Each test makes its own session (or none) and leaves the process's as it found it."""
    kept = embeddings._session
    embeddings._session = None
    try:
        yield
    finally:
        embeddings._session = kept


def _largest_difference(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_questions_go_through_onnx_runtime_with_pytorchs_vectors(fresh_session: None) -> None:
    local = embeddings.LocalEmbeddings()
    assert embeddings._query_session() is not None, "the default runtime is ONNX"
    for text, document in zip(TEXTS, local.embed_documents(TEXTS), strict=True):
        query = local.embed_query(text)
        assert len(query) == 384
        assert _largest_difference(query, document) < 1e-5


def test_the_graph_keeps_the_attention_mask_on_a_padded_batch(fresh_session: None) -> None:
    """The export is traced on texts of two lengths: a padded batch must pool only real tokens."""
    session = embeddings._query_session()
    features = embeddings._load().preprocess(TEXTS)
    assert int(features["attention_mask"].sum()) < features["attention_mask"].numel(), "padded"
    output = session.run(
        None,
        {
            "input_ids": features["input_ids"].numpy(),
            "attention_mask": features["attention_mask"].numpy(),
        },
    )[0]
    expected = np.array(embeddings.LocalEmbeddings().embed_documents(TEXTS))
    assert np.abs(output - expected).max() < 1e-5


def test_the_export_is_made_on_first_use_and_once(tmp_path: Path, fresh_session: None) -> None:
    with override_settings(EMBEDDING_ONNX_DIR=tmp_path):
        assert not list(tmp_path.glob("*.onnx"))
        query = embeddings.LocalEmbeddings().embed_query(TEXTS[0])
        exports = list(tmp_path.glob("*.onnx"))
        assert len(exports) == 1 and exports[0] == embeddings.onnx_path()
        written = exports[0].stat().st_mtime_ns

        out = StringIO()
        call_command("embeddings_export", stdout=out)
        assert out.getvalue().startswith("already exported: ")
        assert exports[0].stat().st_mtime_ns == written
        assert list(tmp_path.iterdir()) == exports, "no temporary file left behind"

        path, fresh = embeddings.onnx_export(force=True)
        assert fresh and path == exports[0]
    assert (
        _largest_difference(query, embeddings.LocalEmbeddings().embed_documents(TEXTS)[:1][0])
        < 1e-5
    )


def test_a_broken_export_falls_back_to_pytorch(
    tmp_path: Path, fresh_session: None, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(EMBEDDING_ONNX_DIR=tmp_path):
        embeddings.onnx_path().write_bytes(b"not an ONNX graph")
        with caplog.at_level(logging.WARNING, logger="chatbot.llm.embeddings"):
            query = embeddings.LocalEmbeddings().embed_query(TEXTS[1])
        assert embeddings._query_session() is None
        assert "embedded by PyTorch" in caplog.text
    expected = embeddings.LocalEmbeddings().embed_documents(TEXTS[1:])[0]
    assert _largest_difference(query, expected) < 1e-5


@override_settings(EMBEDDING_QUERY_RUNTIME="torch")
def test_the_setting_keeps_questions_on_pytorch(tmp_path: Path, fresh_session: None) -> None:
    with override_settings(EMBEDDING_ONNX_DIR=tmp_path):
        query = embeddings.LocalEmbeddings().embed_query(TEXTS[0])
        assert embeddings._query_session() is None
        assert not list(tmp_path.iterdir()), "nothing exported"
    expected = embeddings.LocalEmbeddings().embed_documents(TEXTS[:1])[0]
    assert _largest_difference(query, expected) < 1e-5


def test_an_export_removes_the_earlier_ones_beside_it(tmp_path: Path, fresh_session: None) -> None:
    """A new model or torch version names its export anew; the old one (about 90 MB) goes."""
    earlier = tmp_path / "0123456789abcdef.onnx"
    earlier.write_bytes(b"an earlier model's graph")
    other = tmp_path / "mine.onnx"
    other.write_bytes(b"not an export of ours")
    with override_settings(EMBEDDING_ONNX_DIR=tmp_path):
        path, fresh = embeddings.onnx_export()

    assert fresh and path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, "mine.onnx"])
