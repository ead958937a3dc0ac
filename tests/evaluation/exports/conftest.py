from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def exports_dir(settings: Any, tmp_path: Path) -> Path:
    """Each test writes its exports to a folder of its own."""
    settings.EXPORTS_DIR = tmp_path / "exports"
    return Path(settings.EXPORTS_DIR)


@pytest.fixture(autouse=True)
def _no_training_state() -> Iterator[None]:
    """The training state lives in the cache (Redis), which outlives a test's transaction."""
    from django.core.cache import cache

    from evaluation.exports.reward import STATE_KEY

    cache.delete(STATE_KEY)
    yield
    cache.delete(STATE_KEY)
