"""Evaluation: review queue, judges, datasets, experiments and exports (no models of its own)."""
