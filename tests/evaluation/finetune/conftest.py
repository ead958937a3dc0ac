from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def finetune_dirs(settings: Any, tmp_path: Path) -> Path:
    """Each test writes its exports and trained models to folders of its own."""
    settings.EXPORTS_DIR = tmp_path / "exports"
    settings.FINETUNE_DIR = tmp_path / "finetune"
    return Path(settings.FINETUNE_DIR)


@pytest.fixture
def tiny_base(tmp_path: Path) -> Path:
    """A tiny Llama with random weights and a byte-level BPE tokenizer trained on the fixture
    text, saved as a Hugging Face model folder (nothing is downloaded)."""
    from tests.evaluation.finetune.support import tiny_model

    return tiny_model(tmp_path / "tiny-base")
