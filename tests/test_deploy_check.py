"""Production settings: `check --deploy` is clean with a deployment's environment, and the
settings refuse to load with DEBUG off and no SECRET_KEY."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.test.utils import override_settings

from chatbot.runtime.middleware import STANDS_IN_FOR, djangos_checks_with_ours

ROOT = Path(__file__).resolve().parent.parent


def _production_env(**overrides: str) -> dict[str, str]:
    """What a deployment sets: its own key and host, and real service addresses (here the running
    embedded ones, so `manage.py` starts nothing). Nothing from the test run leaks in: the test
    settings module, the tests' key, DEBUG, or any HTTPS switch a developer may have exported."""
    names = {
        "DJANGO_SETTINGS_MODULE",
        "SECRET_KEY",
        "DEBUG",
        "ALLOWED_HOSTS",
        "SECURE_SSL_REDIRECT",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "SECURE_PROXY_SSL_HEADER",
    }
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("SECURE_")}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="support.example.com",
        CSRF_TRUSTED_ORIGINS="https://support.example.com",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{settings.EMBEDDED_PG_PORT}/postgres",
        REDIS_URL=f"redis://127.0.0.1:{settings.EMBEDDED_REDIS_PORT}/0",
        LOCAL_MODEL_URL="http://127.0.0.1:8011/v1",
        EMBEDDINGS_WARM_ON_START="false",
    )
    env.update(overrides)
    return env


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_check_deploy_finds_nothing_with_a_production_environment() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env())

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "WARNINGS:" not in output


def test_check_deploy_flags_a_deployment_that_turned_https_off() -> None:
    """The check is live: the same environment with HTTPS switched off is reported."""
    env = _production_env(
        SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false"
    )

    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    assert "security.W008" in result.stderr and "security.W012" in result.stderr
    # Django finds these two through its middleware's dotted paths; ours stand in for them
    # (chatbot.runtime.middleware), and the checks still run.
    assert "security.W016" in result.stderr


def test_the_checks_miss_none_of_djangos_middleware_when_ours_stands_in() -> None:
    ours = list(settings.MIDDLEWARE)
    # (The test settings are a development machine's: no HSTS, so those warnings are expected.)
    assert not {m.id for m in djangos_checks_with_ours() if (m.id or "").startswith("chatbot.")}
    for path in STANDS_IN_FOR:
        with override_settings(MIDDLEWARE=[p for p in ours if p != path]):
            found = {m.id for m in djangos_checks_with_ours()}
        expected = {
            "chatbot.runtime.middleware.SecurityMiddleware": "chatbot.security.W001",
            "chatbot.runtime.middleware.XFrameOptionsMiddleware": "chatbot.security.W002",
            "chatbot.runtime.middleware.CsrfViewMiddleware": "chatbot.security.W003",
        }[path]
        assert expected in found, (path, found)


def test_it_refuses_to_start_with_debug_off_and_no_secret_key() -> None:
    env = _production_env()
    del env["SECRET_KEY"]

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY is not set" in result.stderr
    assert "openssl rand -hex 32" in result.stderr


def test_debug_on_runs_without_a_key_over_plain_http() -> None:
    """What `make run` does: DEBUG on, the embedded key, no HTTPS redirect or secure cookies."""
    env = _production_env(DEBUG="true")
    del env["SECRET_KEY"]
    probe = (
        "import json, chatbot.settings as s; print(json.dumps([s.SECRET_KEY.startswith('dev-only'),"
        " s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS]))"
    )

    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )

    assert result.stdout.strip().splitlines()[-1] == "[true, false, false, 0]"
