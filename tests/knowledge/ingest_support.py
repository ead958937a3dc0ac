"""Helpers for the ingestion tests: a counting wrapper around the real embedding model."""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from chatbot.llm.embeddings import LocalEmbeddings


class CountingEmbeddings(Embeddings):
    """The real local model, counting the work it is asked to do; can stop after N calls."""

    def __init__(self, *, fail_after_calls: int | None = None) -> None:
        self.inner = LocalEmbeddings()
        self.calls = 0
        self.texts = 0
        self.fail_after_calls = fail_after_calls

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("worker killed")
        self.calls += 1
        self.texts += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.inner.embed_query(text)
