"""Observability: tracing, rollups, dashboard and replay (no models of its own)."""
