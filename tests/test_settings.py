"""Settings resolve to embedded defaults with nothing set, and to real clusters when told."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = (
    "import json, chatbot.settings as s; print(json.dumps({"
    "'db': s.DATABASES['default'], 'redis': s.REDIS_URL, 'model': s.LOCAL_MODEL_URL,"
    "'emb': [s.EMBEDDED_POSTGRES, s.EMBEDDED_REDIS, s.EMBEDDED_MODEL_SERVER],"
    "'keys': sorted(s.MODEL_API_KEYS)}, default=str))"
)
CLEARED = ("DATABASE_URL", "REDIS_URL", "LOCAL_MODEL_URL", "OPENAI_API_KEY", "ANTHROPIC_API_KEY")


def _settings(**env: str) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in CLEARED and not k.startswith(("MODEL_KEY_", "EMBEDDED_", "LOCAL_MODEL_"))
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_uses_embedded_services_when_nothing_is_set() -> None:
    s = _settings()
    assert s["emb"] == [True, True, True]
    assert (s["db"]["HOST"], s["db"]["PORT"]) == ("127.0.0.1", "15432")
    assert s["redis"] == "redis://127.0.0.1:16379/0"
    assert s["model"] == "http://127.0.0.1:8011/v1"


def test_it_uses_real_clusters_when_their_addresses_are_given() -> None:
    s = _settings(
        DATABASE_URL="postgres://app:secret@db.internal:5433/support",
        REDIS_URL="redis://cache.internal:6380/2",
        LOCAL_MODEL_URL="http://vllm.internal:8000/v1",
        OPENAI_API_KEY="sk-test",
        MODEL_KEY_AZURE="az-test",
    )
    assert s["emb"] == [False, False, False]
    db = s["db"]
    assert (db["HOST"], db["PORT"], db["NAME"], db["USER"]) == (
        "db.internal",
        5433,
        "support",
        "app",
    )
    assert s["redis"] == "redis://cache.internal:6380/2"
    assert s["model"] == "http://vllm.internal:8000/v1"
    assert s["keys"] == ["MODEL_KEY_AZURE", "OPENAI_API_KEY"]


def test_it_talks_to_an_external_redis_when_redis_url_is_set() -> None:
    """The 'real cluster' path end to end, against a Redis the machine runs itself (port 6379)."""
    import pytest

    from chatbot.runtime.embedded import port_open

    if not port_open("127.0.0.1", 6379):
        pytest.skip("no Redis on 127.0.0.1:6379 on this machine")
    script = (
        "from django.core.cache import cache; from django.conf import settings;"
        "cache.set('probe', 'through-external-redis', 30);"
        "print(settings.EMBEDDED_REDIS, cache.get('probe'))"
    )
    clean = {k: v for k, v in os.environ.items() if k not in CLEARED}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env={**clean, "REDIS_URL": "redis://127.0.0.1:6379/9"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().splitlines()[-1] == "False through-external-redis"


def test_an_unknown_question_embedding_runtime_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import chatbot.settings"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "1", "EMBEDDING_QUERY_RUNTIME": "gpu"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "EMBEDDING_QUERY_RUNTIME is 'gpu': use 'onnx' (the default) or 'torch'." in result.stderr
