"""Retention policies and the retention job, legal holds, archives, and a person's export and
erasure. A feature of its own under evaluation because it rewrites evaluation's export files."""
