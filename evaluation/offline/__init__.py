"""Offline evaluation: measuring retrieval (`retrieval`) and grounded answers (`answers`) on an
evaluation set, read by the one jsonl loader (`data`) into a scratch knowledge base (`scratch`).
The commands that run them live in `evaluation/management/commands/`."""
