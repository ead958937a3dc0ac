"""The knowledge base: parsing, splitting and ingesting sources into collections."""
