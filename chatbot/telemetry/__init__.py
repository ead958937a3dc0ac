"""Instrumentation every layer may use: spans, OTLP export, turn-aware logs, metric counters.

A low layer: it imports nothing above the data model and the settings."""
