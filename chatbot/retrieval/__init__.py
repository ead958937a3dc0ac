"""Retrieval: hybrid (dense + full-text) search over the knowledge base, filtered by what the
caller may see."""
