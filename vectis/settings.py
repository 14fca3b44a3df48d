"""Vectis settings, read once from the environment (or a `.env` file) with django-environ.

Every variable is listed and explained in `.env.example`. The defaults need no servers:
SQLite under `var/` and kombu's filesystem broker under `var/`, so `make run` works on a
bare machine. Production points `DATABASE_URL` / `CELERY_BROKER_URL` at PostgreSQL and
Redis. With `DEBUG` off, the secrets have no default and a missing one stops start-up.
"""

from __future__ import annotations

import os
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from . import __version__

# Lets `admin.ModelAdmin[Customer]` and other generics be subscripted at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VECTIS_VAR_DIR", BASE_DIR / "var"))

env = environ.Env()
# `VECTIS_ENV_FILE` lets operators (and the start-up test) choose another file, or none.
_env_file = os.environ.get("VECTIS_ENV_FILE", str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    env.read_env(_env_file)

DEBUG: bool = env.bool("DEBUG", default=False)


def _required_secret(name: str, dev_default: str) -> str:
    """A secret that may default only in DEBUG; in production its absence is fatal."""
    value: str = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return dev_default
    raise ImproperlyConfigured(
        f"{name} is not set. Vectis refuses to start with DEBUG off and no {name}: "
        f"set {name} in the environment or in .env (see .env.example for how to generate one)."
    )


SECRET_KEY = _required_secret("SECRET_KEY", "dev-insecure-secret-key-do-not-use-in-production")
# Comma-separated Fernet keys; the first encrypts, all decrypt (see integrations/crypto.py).
# The DEBUG default is a fixed, public development key: never use it for real credentials.
VECTIS_ENCRYPTION_KEYS: list[str] = [
    key.strip()
    for key in _required_secret(
        "VECTIS_ENCRYPTION_KEYS", "ZGV2LW9ubHktZGV2LW9ubHktZGV2LW9ubHktZGV2LW8="
    ).split(",")
    if key.strip()
]

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "vectis.apps.VectisAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    # The public API (vectis/api/): REST framework, its OpenAPI schema and docs (served
    # locally), filters, and API keys (before vectis, whose admin replaces the key admin).
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "vectis",
    "customers",
    "backups",
    "integrations",
    "keepit",
    "alerts",
    # Login throttling (django-axes): repeated wrong passwords lock a user or an address out.
    "axes",
    # Sign-in (django-allauth): the sign-in page, second factors (TOTP, recovery codes,
    # passkeys) and single sign-on through any OpenID Connect provider (Entra ID).
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    # Roles, sessions and who may sign in how; last, so its post-migrate step sees every
    # app's permissions.
    "access",
]

if DEBUG:
    # The simulated Keepit and its commands (the demo, development); never in production.
    INSTALLED_APPS.append("keepit_sandbox")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "access.sessions.IdleTimeoutMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "access.sessions.SignOutEverywhereMiddleware",
    "access.mfa.RequireSecondFactorMiddleware",
    "access.timezones.ViewerTimeZoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First, so a locked-out user is refused before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    # Django's password check, refusing users who may sign in through SSO only.
    "access.backends.PasswordBackend",
]

ROOT_URLCONF = "vectis.urls"
WSGI_APPLICATION = "vectis.wsgi.application"

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
            ],
        },
    },
]

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'vectis.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The zero-setup default (the demo): web, worker, beat and a sync's heartbeat thread
    # share one file. WAL lets pages read while a sync writes; IMMEDIATE transactions take
    # the write lock up front, so two writers wait for each other (up to `timeout`)
    # instead of failing with "database is locked" on a lock upgrade.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The MSP's own time zone: e-mails and reports, and every page for a user who has not
# chosen one (Preferences).
TIME_ZONE: str = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- E-mail -----------------------------------------------------------------------------
# EMAIL_URL: smtp://user:pass@host:25, smtp+tls://..., consolemail://, filemail:///path
EMAIL_CONFIG: dict[str, Any] = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="Vectis <vectis@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT: int = env.int("EMAIL_TIMEOUT", default=10)
# The MSP's name on the monthly backup reports (white-label).
VECTIS_MSP_NAME: str = env.str("VECTIS_MSP_NAME", default="Your MSP")
# Base URL used in links inside e-mails.
VECTIS_BASE_URL: str = env.str("VECTIS_BASE_URL", default="http://127.0.0.1:8000")

# --- Cache ------------------------------------------------------------------------------
# The API's rate limit per key is counted here: with several web processes, point it at
# Redis (CACHE_URL=redis://redis:6379/1, as docker-compose.yml does).
CACHES: dict[str, Any] = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}

# --- Public API (vectis/api/) -------------------------------------------------------------
# Requests per API key, e.g. "600/minute", "20/second".
VECTIS_API_RATE: str = env.str("VECTIS_API_RATE", default="600/minute")
REST_FRAMEWORK: dict[str, Any] = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["vectis.api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["vectis.api.auth.KeyScope"],
    "DEFAULT_THROTTLE_CLASSES": ["vectis.api.auth.PerKeyThrottle"],
    "DEFAULT_PAGINATION_CLASS": "vectis.api.pagination.Pages",
    # Filters and `ordering` both from django-filter (vectis/api/filters.py).
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "vectis.api.errors.handle",
}
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Vectis API",
    "DESCRIPTION": (
        "Backup status, audit events, alerts and sync runs of an MSP's customers, for PSAs "
        "and automation. Read-only towards the backup vendors. Times are ISO 8601 in UTC; "
        "errors are JSON with a sentence in error.message."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and the docs page are public (they hold no data); every endpoint needs a key.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # One name for the backup status wherever it appears (filters and fields).
    "ENUM_NAME_OVERRIDES": {"BackupStatusEnum": "backups.models.BackupStatus"},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "vectis.api.schema.add_error_responses",
    ],
}

# --- Celery -----------------------------------------------------------------------------
CELERY_BROKER_URL: str = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "store_processed": False,
    }
    _results_dir = VAR_DIR / "celery" / "results"
    for _folder in (_queue_dir, _processed_dir, _results_dir):
        _folder.mkdir(parents=True, exist_ok=True)
    _default_result_backend = f"file://{_results_dir}"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {}
    _default_result_backend = CELERY_BROKER_URL
CELERY_RESULT_BACKEND: str = env.str("CELERY_RESULT_BACKEND", default=_default_result_backend)
CELERY_RESULT_EXPIRES = timedelta(days=1)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
# A full sync of a large MSP takes minutes; the hard limit leaves room and then kills.
CELERY_TASK_SOFT_TIME_LIMIT: int = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=20 * 60)
CELERY_TASK_TIME_LIMIT: int = env.int("CELERY_TASK_TIME_LIMIT", default=25 * 60)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER: bool = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# Minutes between scheduled syncs of a connection, whatever its provider. The name it had
# when Keepit was the only provider is still read, with a warning.
_OLD_INTERVAL = "KEEPIT_SYNC_INTERVAL_MINUTES"
if "VECTIS_SYNC_INTERVAL_MINUTES" not in os.environ and _OLD_INTERVAL in os.environ:
    # A FutureWarning, not a DeprecationWarning: Python shows it by default, and it is
    # meant for the operator reading the start-up output.
    warnings.warn(
        "KEEPIT_SYNC_INTERVAL_MINUTES is deprecated: rename it VECTIS_SYNC_INTERVAL_MINUTES.",
        FutureWarning,
        stacklevel=1,
    )
    VECTIS_SYNC_INTERVAL_MINUTES: int = env.int(_OLD_INTERVAL)
else:
    VECTIS_SYNC_INTERVAL_MINUTES = env.int("VECTIS_SYNC_INTERVAL_MINUTES", default=15)
if VECTIS_SYNC_INTERVAL_MINUTES < 1:
    raise ImproperlyConfigured(
        "VECTIS_SYNC_INTERVAL_MINUTES must be a whole number of minutes >= 1."
    )
# Beat looks for due connections this often. Each connection keeps its own schedule
# (`next_sync_at`, advanced slot by slot), so a sync starts every interval, ± one tick.
VECTIS_SYNC_TICK_SECONDS: int = env.int("VECTIS_SYNC_TICK_SECONDS", default=60)
if not 1 <= VECTIS_SYNC_TICK_SECONDS <= VECTIS_SYNC_INTERVAL_MINUTES * 60:
    raise ImproperlyConfigured(
        "VECTIS_SYNC_TICK_SECONDS must be between 1 and the sync interval "
        f"({VECTIS_SYNC_INTERVAL_MINUTES * 60} seconds)."
    )

# The schedule is reviewed code. `expires` equals each entry's period, so a backlog of
# missed ticks (worker down) is dropped instead of running many times back to back.
CELERY_BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    "sync-due-connections": {
        "task": "integrations.tasks.sync_due_connections",
        "schedule": timedelta(seconds=VECTIS_SYNC_TICK_SECONDS),
        "options": {"expires": VECTIS_SYNC_TICK_SECONDS},
    },
    # Staleness is the absence of a signal: evaluate on a timer too, not only after syncs.
    "alerts-evaluate": {
        "task": "alerts.tasks.evaluate_alerts",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 5 * 60},
    },
    # Retry e-mails the SMTP server did not take.
    "alerts-send-pending": {
        "task": "alerts.tasks.send_pending_notifications",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    # Last month's backup reports on the 1st (vectis/reports/schedule.py): planned every
    # hour, sent at the hour chosen in Report settings.
    "monthly-reports": {
        "task": "vectis.tasks.plan_monthly_reports",
        "schedule": crontab(minute=5),
        "options": {"expires": 60 * 60},
    },
    # The fleet-wide tiles counted ahead of the views once what they count has changed
    # (vectis/fleet_tiles.py; with a shared cache).
    "keep-fleet-tiles": {
        "task": "vectis.tasks.keep_fleet_tiles",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    # History past its retention (vectis/retention.py), in batches.
    "prune-history": {
        "task": "vectis.tasks.prune_history",
        "schedule": timedelta(hours=24),
        "options": {"expires": 60 * 60},
    },
}

# --- Providers ----------------------------------------------------------------------------
# The backup vendors Vectis can connect: kind -> dotted path of its Provider class. The
# registry (integrations/registry.py) imports them from here, so the framework imports
# no provider. A second vendor is one more line (and a sibling app of keepit/).
VECTIS_PROVIDERS: dict[str, str] = {
    "keepit": "keepit.provider.KeepitProvider",
}
# Sent as User-Agent to vendors.
VECTIS_VERSION: str = __version__

# --- Keepit -----------------------------------------------------------------------------
KEEPIT_BASE_URL_TEMPLATE: str = env.str(
    "KEEPIT_BASE_URL_TEMPLATE", default="https://{region}.keepit.com"
)
if "{region}" not in KEEPIT_BASE_URL_TEMPLATE:
    raise ImproperlyConfigured("KEEPIT_BASE_URL_TEMPLATE must contain {region}.")
KEEPIT_CONNECT_TIMEOUT: float = env.float("KEEPIT_CONNECT_TIMEOUT", default=5.0)
KEEPIT_READ_TIMEOUT: float = env.float("KEEPIT_READ_TIMEOUT", default=30.0)
KEEPIT_MAX_ATTEMPTS: int = env.int("KEEPIT_MAX_ATTEMPTS", default=4)
KEEPIT_RETRY_BUDGET_SECONDS: float = env.float("KEEPIT_RETRY_BUDGET_SECONDS", default=60.0)
KEEPIT_HTTP_CONCURRENCY: int = env.int("KEEPIT_HTTP_CONCURRENCY", default=8)
# Audit history read on a first sync, and the overlap re-read before the stored cursor.
KEEPIT_AUDIT_WINDOW_DAYS: int = env.int("KEEPIT_AUDIT_WINDOW_DAYS", default=14)
KEEPIT_AUDIT_OVERLAP_MINUTES: int = env.int("KEEPIT_AUDIT_OVERLAP_MINUTES", default=60)
# Cap on the size of one Keepit answer, enforced while it is read (a hostile or broken
# answer is refused before it can fill memory).
KEEPIT_MAX_RESPONSE_MB: float = env.float("KEEPIT_MAX_RESPONSE_MB", default=20.0)
if KEEPIT_MAX_RESPONSE_MB <= 0:
    raise ImproperlyConfigured("KEEPIT_MAX_RESPONSE_MB must be a positive number of megabytes.")
# The audit window is read in slices of this many hours, oldest first; the cursor advances
# after each, so a sync stopped half-way resumes where it stopped.
KEEPIT_AUDIT_SLICE_HOURS: int = env.int("KEEPIT_AUDIT_SLICE_HOURS", default=6)
if KEEPIT_AUDIT_SLICE_HOURS < 1:
    raise ImproperlyConfigured("KEEPIT_AUDIT_SLICE_HOURS must be a whole number of hours >= 1.")
# Audit slices read at once by one sync (its share of the connection's request budget).
KEEPIT_AUDIT_CONCURRENCY: int = env.int("KEEPIT_AUDIT_CONCURRENCY", default=8)
if KEEPIT_AUDIT_CONCURRENCY < 1:
    raise ImproperlyConfigured("KEEPIT_AUDIT_CONCURRENCY must be at least 1.")
# Keepit logs every API call, Vectis's own reads included; off stops storing those.
KEEPIT_STORE_OWN_READS: bool = env.bool("KEEPIT_STORE_OWN_READS", default=True)
# Backup-job outcomes are kept per connector per UTC day. A day is read one last time
# (closed) by the first sync this many minutes after it ended, so jobs that ran over
# midnight are counted finished.
KEEPIT_JOB_DAY_SETTLE_MINUTES: int = env.int("KEEPIT_JOB_DAY_SETTLE_MINUTES", default=60)
# Past days (of the last 28) each sync also reads per account until the outcome history
# is complete: after connecting, the 28-day strip fills in 27 syncs. 0: only from now on.
KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC: int = env.int("KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC", default=1)
# Each account's seat usage is read this often (its seat-limit violations every sync).
KEEPIT_SEATS_REFRESH_HOURS: int = env.int("KEEPIT_SEATS_REFRESH_HOURS", default=24)
# Each account's connector list (names, accessibility, deletion schedule) is read once in
# this period, at the account's own moment of it (keepit.inventory.list_due); in between
# only when its connectors' health, backup summary or job counts show a connector added or
# gone, and at Sync now. 0: every sync.
KEEPIT_CONNECTORS_REFRESH_MINUTES: int = env.int("KEEPIT_CONNECTORS_REFRESH_MINUTES", default=60)
if (
    min(
        KEEPIT_JOB_DAY_SETTLE_MINUTES,
        KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC,
        KEEPIT_CONNECTORS_REFRESH_MINUTES,
    )
    < 0
):
    raise ImproperlyConfigured(
        "KEEPIT_JOB_DAY_SETTLE_MINUTES, KEEPIT_JOB_BACKFILL_DAYS_PER_SYNC and "
        "KEEPIT_CONNECTORS_REFRESH_MINUTES cannot be negative."
    )
# A running sync writes its heartbeat this often, on a timer, whatever Keepit is doing.
VECTIS_SYNC_HEARTBEAT_SECONDS: float = env.float("VECTIS_SYNC_HEARTBEAT_SECONDS", default=15.0)
# A running sync whose heartbeat is older than this is taken as crashed (abandoned).
VECTIS_SYNC_STALE_SECONDS: int = env.int("VECTIS_SYNC_STALE_SECONDS", default=300)
if VECTIS_SYNC_HEARTBEAT_SECONDS <= 0:
    raise ImproperlyConfigured("VECTIS_SYNC_HEARTBEAT_SECONDS must be a positive number.")
if VECTIS_SYNC_STALE_SECONDS < 3 * VECTIS_SYNC_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        f"VECTIS_SYNC_STALE_SECONDS ({VECTIS_SYNC_STALE_SECONDS}) must be at least three "
        f"heartbeats (3 x VECTIS_SYNC_HEARTBEAT_SECONDS = {3 * VECTIS_SYNC_HEARTBEAT_SECONDS:g}"
        " s): with less, a live but slow sync would be taken as crashed and run twice."
    )
# A connection whose last N runs were all partial is Degraded, and alerts like a stale sync.
VECTIS_DEGRADED_AFTER_PARTIAL_RUNS: int = env.int("VECTIS_DEGRADED_AFTER_PARTIAL_RUNS", default=3)
# A sync is split into parts of this many accounts (plus one for the audit log), each a
# Celery task, so several workers share one large MSP; a part whose worker died is queued
# again up to this many times, then the run ends partial naming its accounts.
VECTIS_SYNC_CHUNK_ACCOUNTS: int = env.int("VECTIS_SYNC_CHUNK_ACCOUNTS", default=500)
# A sync run in one process (the keepit_sync command) reads the audit log in a second
# process, so parsing it does not slow the accounts (PostgreSQL only).
VECTIS_SYNC_AUDIT_PROCESS: bool = env.bool("VECTIS_SYNC_AUDIT_PROCESS", default=True)
VECTIS_SYNC_CHUNK_ATTEMPTS: int = env.int("VECTIS_SYNC_CHUNK_ATTEMPTS", default=3)
if VECTIS_SYNC_CHUNK_ACCOUNTS < 1 or VECTIS_SYNC_CHUNK_ATTEMPTS < 1:
    raise ImproperlyConfigured(
        "VECTIS_SYNC_CHUNK_ACCOUNTS and VECTIS_SYNC_CHUNK_ATTEMPTS must be at least 1."
    )

# --- History retention (vectis/retention.py: the prune_history command, daily beat task) --
VECTIS_AUDIT_RETENTION_DAYS: int = env.int("VECTIS_AUDIT_RETENTION_DAYS", default=400)
VECTIS_JOB_DAY_RETENTION_DAYS: int = env.int("VECTIS_JOB_DAY_RETENTION_DAYS", default=400)
VECTIS_SYNC_RUN_RETENTION_DAYS: int = env.int("VECTIS_SYNC_RUN_RETENTION_DAYS", default=90)
VECTIS_ALERT_RETENTION_DAYS: int = env.int("VECTIS_ALERT_RETENTION_DAYS", default=365)
VECTIS_PRUNE_BATCH: int = env.int("VECTIS_PRUNE_BATCH", default=10_000)
# Pruned audit events must be older than what a first sync reads, or it would bring them
# back; job days back the 28-day outcome strips.
if VECTIS_AUDIT_RETENTION_DAYS <= KEEPIT_AUDIT_WINDOW_DAYS:
    raise ImproperlyConfigured(
        f"VECTIS_AUDIT_RETENTION_DAYS ({VECTIS_AUDIT_RETENTION_DAYS}) must be more than the "
        f"audit window a first sync reads (KEEPIT_AUDIT_WINDOW_DAYS = {KEEPIT_AUDIT_WINDOW_DAYS})."
    )
if (
    VECTIS_JOB_DAY_RETENTION_DAYS < 29
    or min(VECTIS_SYNC_RUN_RETENTION_DAYS, VECTIS_ALERT_RETENTION_DAYS, VECTIS_PRUNE_BATCH) < 1
):
    raise ImproperlyConfigured(
        "VECTIS_JOB_DAY_RETENTION_DAYS must be at least 29 (the 28-day outcome strips); the "
        "other retention settings and VECTIS_PRUNE_BATCH at least 1."
    )

# --- Alert e-mail delivery ----------------------------------------------------------------
# A message the SMTP server keeps refusing with a temporary error is retried with backoff
# up to this many attempts or this many hours, then marked failed (and shown as such).
VECTIS_EMAIL_MAX_ATTEMPTS: int = env.int("VECTIS_EMAIL_MAX_ATTEMPTS", default=20)
VECTIS_EMAIL_MAX_AGE_HOURS: int = env.int("VECTIS_EMAIL_MAX_AGE_HOURS", default=24)
# A notification channel (Teams, Slack, webhook …) that fails this many deliveries in a
# row disables itself and tells the admins.
VECTIS_CHANNEL_MAX_FAILURES: int = env.int("VECTIS_CHANNEL_MAX_FAILURES", default=5)

# --- Sign-in ----------------------------------------------------------------------------
# django-axes: after this many wrong passwords in a row for a user, or from an address,
# further attempts are refused (even with the right password) until the cool-off ends.
AXES_FAILURE_LIMIT: int = env.int("VECTIS_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("VECTIS_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "vectis.signin.lockout_response"
# The client address (django-ipware): REMOTE_ADDR, or, behind VECTIS_PROXY_COUNT trusted
# reverse proxies, X-Forwarded-For — never trusted without a proxy, as clients can forge it.
VECTIS_PROXY_COUNT: int = env.int("VECTIS_PROXY_COUNT", default=0)
AXES_IPWARE_META_PRECEDENCE_ORDER: tuple[str, ...]
if VECTIS_PROXY_COUNT:
    AXES_IPWARE_PROXY_COUNT = VECTIS_PROXY_COUNT
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR")
else:
    AXES_IPWARE_META_PRECEDENCE_ORDER = ("REMOTE_ADDR",)

# django-allauth: Vectis's sign-in page (the admin's redirects there), no self sign-up.
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/admin/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/admin/"
ACCOUNT_ADAPTER = "access.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "access.adapters.SocialAccountAdapter"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_SESSION_REMEMBER = False
# django-axes counts wrong passwords (above); allauth's own counter would answer first.
ACCOUNT_RATE_LIMITS: dict[str, str | bool] = {"login_failed": False}
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
# Second factors. VECTIS_REQUIRE_MFA (default on in production) sends a staff user
# without one to enrolment before any page; in DEBUG (the demo) it is offered, not forced.
VECTIS_REQUIRE_MFA: bool = env.bool("VECTIS_REQUIRE_MFA", default=not DEBUG)
MFA_ADAPTER = "access.adapters.MFAAdapter"  # TOTP secrets encrypted at rest
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes", "webauthn"]
MFA_TOTP_ISSUER = "Vectis"
MFA_PASSKEY_LOGIN_ENABLED = False
# Passkeys need HTTPS; on http://127.0.0.1 (the demo) allauth must be told it may.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN: bool = DEBUG

# --- Single sign-on ---------------------------------------------------------------------
# Microsoft Entra ID (or any OpenID Connect provider: set VECTIS_SSO_SERVER_URL). With a
# tenant id, only that tenant's users get in (the ID token's `tid`). See the README.
VECTIS_SSO_CLIENT_ID: str = env.str("VECTIS_SSO_CLIENT_ID", default="")
VECTIS_SSO_CLIENT_SECRET: str = env.str("VECTIS_SSO_CLIENT_SECRET", default="")
VECTIS_SSO_TENANT_ID: str = env.str("VECTIS_SSO_TENANT_ID", default="")
VECTIS_SSO_SERVER_URL: str = env.str(
    "VECTIS_SSO_SERVER_URL",
    default=(
        f"https://login.microsoftonline.com/{VECTIS_SSO_TENANT_ID}/v2.0"
        if VECTIS_SSO_TENANT_ID
        else ""
    ),
)
VECTIS_SSO_NAME: str = env.str("VECTIS_SSO_NAME", default="Microsoft")
# Create a Vectis user for a first SSO sign-in with a verified e-mail nobody has yet.
VECTIS_SSO_AUTO_CREATE: bool = env.bool("VECTIS_SSO_AUTO_CREATE", default=False)
VECTIS_SSO_DEFAULT_ROLE: str = env.str("VECTIS_SSO_DEFAULT_ROLE", default="Read-only")
SOCIALACCOUNT_PROVIDERS: dict[str, Any] = {
    "openid_connect": {
        # (access/sso.py checks the ID token's signature against the provider's keys.)
        "APPS": (
            [
                {
                    "provider_id": "sso",
                    "name": VECTIS_SSO_NAME,
                    "client_id": VECTIS_SSO_CLIENT_ID,
                    "secret": VECTIS_SSO_CLIENT_SECRET,
                    "settings": {
                        "server_url": VECTIS_SSO_SERVER_URL,
                        "oauth_pkce_enabled": True,
                        # The (verified) ID token's claims, not the userinfo endpoint's:
                        # Entra's userinfo lacks `tid` and `amr`.
                        "fetch_userinfo": False,
                        "token_auth_method": "client_secret_post",
                    },
                }
            ]
            if VECTIS_SSO_CLIENT_ID and VECTIS_SSO_SERVER_URL
            else []
        ),
    }
}
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_AUTO_SIGNUP = True

# --- Sessions ---------------------------------------------------------------------------
# Signed out after this many hours without a request; everywhere at once when a user's
# role or password changes (access/sessions.py).
VECTIS_SESSION_IDLE_HOURS: int = env.int("VECTIS_SESSION_IDLE_HOURS", default=8)
SESSION_COOKIE_AGE = VECTIS_SESSION_IDLE_HOURS * 3600
# Not every request: access.sessions.IdleTimeoutMiddleware saves a used session once a
# minute (a save per request could write a stale copy over a message just stored).
SESSION_SAVE_EVERY_REQUEST = False

# --- Logging ----------------------------------------------------------------------------
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # django-axes reports every successful sign-in at INFO; lockouts come at WARNING.
    "loggers": {
        "axes": {"level": "WARNING"},
        # A chat webhook's URL is its secret: apprise and urllib3 name it at DEBUG/INFO.
        "apprise": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # WeasyPrint reports each step of every PDF at INFO.
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
    },
}
# Messages live server-side with the session: a webhook's signing secret, shown once
# after saving, must not travel in a (signed, not encrypted) cookie.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- HTTPS in production ------------------------------------------------------------------
# Safe defaults when DEBUG is off: HTTPS only, HSTS for a year, cookies never sent in
# clear. Behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER (see the README).
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_HSTS_SECONDS: int = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS: bool = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
# Sends the "preload" flag only; a site joins browsers' preload lists when submitted by hand.
SECURE_HSTS_PRELOAD: bool = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_SSL_REDIRECT: bool = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Load balancers and docker compose probe /healthz over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE: bool = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE: bool = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# "HTTP_X_FORWARDED_PROTO,https": trust the proxy's header that the request came over HTTPS.
_proxy_ssl_header: list[str] = env.list("SECURE_PROXY_SSL_HEADER", default=[])
SECURE_PROXY_SSL_HEADER: tuple[str, str] | None = None
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be a header and a value, e.g. "
            "HTTP_X_FORWARDED_PROTO,https"
        )
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])
