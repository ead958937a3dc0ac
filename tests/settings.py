"""Test settings: the same real services as development, on a separate Redis database."""

import os
from urllib.parse import urlsplit, urlunsplit

# Tests run with DEBUG off, as production does, so chatbot.settings demands a key; this one is
# also what the processes a test starts (workers, `python -c` probes) inherit.
os.environ.setdefault("SECRET_KEY", "tests-only-key-never-used-anywhere-else-5f0c2a7e9b14d386")

from chatbot.settings import *  # noqa: F403
from chatbot.settings import (
    CACHES,
    CHANNEL_LAYERS,
    DATABASES,
    EMBEDDED_REPORTING,
    REDIS_URL,
    TEST_REDIS_DB,
    TOOL_DSNS,
    embedded_reporting_dsn,
)


def _redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


TEST_REDIS_URL = _redis_db(REDIS_URL, TEST_REDIS_DB)
CACHES["default"]["LOCATION"] = TEST_REDIS_URL
CHANNEL_LAYERS["default"]["CONFIG"] = {
    "hosts": [{"address": TEST_REDIS_URL, "socket_timeout": 30}],
    "prefix": "testchan",
}
CELERY_BROKER_URL = TEST_REDIS_URL
CELERY_RESULT_BACKEND = TEST_REDIS_URL
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
WHITENOISE_AUTOREFRESH = True

# The demo reporting database (`bootstrap --demo`, the sql tool's tests) beside this run's test
# database, never the one `make run` uses; parallel runs with their own TEST_DATABASE_NAME each get one.
_test_db = DATABASES["default"]["TEST"]["NAME"] or f"test_{DATABASES['default']['NAME']}"
REPORTING_DEMO_DATABASE = f"{_test_db}_reporting"
if EMBEDDED_REPORTING:
    TOOL_DSNS["REPORTING_DATABASE_URL"] = embedded_reporting_dsn(REPORTING_DEMO_DATABASE)

# The test client and the browser tests' daphne speak plain HTTP; HTTPS-only settings are checked
# on their own by tests/test_deploy_check.py.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
SECURE_PROXY_SSL_HEADER = None
