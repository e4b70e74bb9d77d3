"""icbridge settings: read only from the environment, each with an embedded default.

With no variable set the hub runs on a bare machine: SQLite and kombu's
filesystem broker under ICBRIDGE_DATA_DIR. DATABASE_URL and REDIS_URL switch
to PostgreSQL and Redis. Any variable NAME may instead be given as NAME_FILE,
the path of a file that holds the value (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

_DEV_SECRET_KEY = "icbridge-dev-only-secret-key-change-me-in-production-0123456789"
_DEV_ENCRYPTION_SALT = "icbridge-dev-only-field-encryption-salt"


def _read(name: str, parse: Callable[..., Any], default: Any) -> Any:
    """Parse one variable; a bad value fails at start and names the variable."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            os.environ[name] = Path(file_path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE: cannot read {file_path!r}: {exc.strerror}") from exc
    try:
        return parse(name, default=default)
    except ImproperlyConfigured:
        raise
    except Exception as exc:  # environ raises ValueError, KeyError… for bad values
        raise ImproperlyConfigured(f"{name}: invalid value {os.environ.get(name)!r} ({exc})") from exc


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _strict_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ImproperlyConfigured(f"{name}: expected true or false, got {raw!r}")


def _database_url(name: str, default: str) -> dict[str, Any]:
    url = os.environ.get(name, default)
    scheme = url.split("://", 1)[0]
    if scheme not in environ.Env.DB_SCHEMES:
        known = ", ".join(sorted(s for s in environ.Env.DB_SCHEMES if s in ("postgres", "postgresql", "sqlite")))
        raise ImproperlyConfigured(f"{name}: unsupported database scheme {scheme!r} (use one of {known})")
    return env.db_url(name, default=default)


def _positive(name: str, value: float) -> float:
    if value <= 0:
        raise ImproperlyConfigured(f"{name}: must be greater than 0, got {value}")
    return value


DEBUG = _read("DEBUG", _strict_bool, False)
SECRET_KEY = _read("SECRET_KEY", env.str, _DEV_SECRET_KEY)
# Former keys, still accepted (sessions, and decrypting System secrets) while rotating: docs/security.md.
SECRET_KEY_FALLBACKS = _read("SECRET_KEY_FALLBACKS", env.list, [])
ALLOWED_HOSTS = _read("ALLOWED_HOSTS", env.list, ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", env.list, [])
DATA_DIR = Path(_read("ICBRIDGE_DATA_DIR", env.str, str(BASE_DIR / "var")))
PORT = _read("ICBRIDGE_PORT", env.int, 8000)
# Public base URL of this hub, used to build sandbox System URLs in the demo.
PUBLIC_URL = _read("ICBRIDGE_PUBLIC_URL", env.str, f"http://127.0.0.1:{PORT}").rstrip("/")

# Field encryption (System secrets): a Fernet key derived from SECRET_KEY and this salt.
SALT_KEY = _read("FIELD_ENCRYPTION_SALT", env.str, _DEV_ENCRYPTION_SALT)
USING_DEV_SECRETS = SECRET_KEY == _DEV_SECRET_KEY or SALT_KEY == _DEV_ENCRYPTION_SALT
# A hub on the embedded development secrets is the demo (`make run`, the test suite): plain HTTP on
# localhost, the sandbox mounted. Any deployment with real secrets gets the production defaults below.
DEMO = DEBUG or USING_DEV_SECRETS
# The emulators and their control API under /sandbox/ (anonymous writes by design): demo only by default.
ICBRIDGE_SANDBOX = _read("ICBRIDGE_SANDBOX", _strict_bool, DEMO)

# --- HTTPS (manage.py check --deploy is clean with the production defaults) -----------------------
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto, trust it (else the redirect loops).
if _read("ICBRIDGE_BEHIND_TLS_PROXY", _strict_bool, False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _read("SECURE_SSL_REDIRECT", _strict_bool, not DEMO)
# Probes and scrapers inside the network may speak plain HTTP to these.
SECURE_REDIRECT_EXEMPT = [r"^api/health$", r"^monitoring/health(/live|/ready)?$"]
SECURE_HSTS_SECONDS = _read("SECURE_HSTS_SECONDS", env.int, 0 if DEMO else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _read("SECURE_HSTS_INCLUDE_SUBDOMAINS", _strict_bool, not DEMO)
SECURE_HSTS_PRELOAD = _read("SECURE_HSTS_PRELOAD", _strict_bool, False)
SESSION_COOKIE_SECURE = _read("SESSION_COOKIE_SECURE", _strict_bool, not DEMO)
CSRF_COOKIE_SECURE = _read("CSRF_COOKIE_SECURE", _strict_bool, not DEMO)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Preloading is a choice the domain's owner makes at hstspreload.org, not a default; HSTS itself is on.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc served from our own static files: no CDN
    "django_celery_beat",
    "axes",  # failed-login lockout per (username, address): docs/security.md
    "integrations",
    "monitoring",
    "sandbox",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "integrations.api.middleware.ApiTrailingSlashMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "icbridge.urls"
WSGI_APPLICATION = "icbridge.wsgi.application"

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

DATABASES = {"default": _read("DATABASE_URL", _database_url, f"sqlite:///{DATA_DIR / 'icbridge.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # Web, worker and beat share one file: wait for locks, take write locks up front.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", _read("DATABASE_CONN_MAX_AGE", env.int, 60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out (username, address) before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = _read("TIME_ZONE", env.str, "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "admin:login"
FORMS_URLFIELD_ASSUME_HTTPS = True

EMAIL_BACKEND = _read("EMAIL_BACKEND", env.str, "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = _read("DEFAULT_FROM_EMAIL", env.str, "icbridge@localhost")

# --- Celery -----------------------------------------------------------------
REDIS_URL = _read("REDIS_URL", env.str, "")
if REDIS_URL and not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL: expected redis://host:port/db, got {REDIS_URL!r}")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # A task a killed worker held comes back after this; the sweeper is the real safety net.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    _queue_dir = DATA_DIR / "broker"
    # The filesystem transport needs its folders; creating them here keeps `make run` one command.
    for _folder in ("queue", "processed", "control"):
        (_queue_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
    }
# Throttle counters must be shared by every web process: Redis when configured, else files under
# ICBRIDGE_DATA_DIR (the single-machine demo runs several gunicorn workers too).
CACHE_URL = _read("ICBRIDGE_CACHE_URL", env.str, REDIS_URL)
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "icb",
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
CELERY_TASK_ALWAYS_EAGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = _read("CELERY_QUEUE", env.str, "icbridge")
# Beat's housekeeping (the sweeper, poll fan-out, alerts, retention) runs on its own queue, consumed by its
# own worker (Procfile `sweeper`): slow deliveries holding every delivery worker cannot stall the sweeper.
ICBRIDGE_SWEEP_QUEUE = _read("ICBRIDGE_SWEEP_QUEUE", env.str, f"{CELERY_TASK_DEFAULT_QUEUE}-sweep")
CELERY_TASK_ROUTES = {
    task: {"queue": ICBRIDGE_SWEEP_QUEUE}
    for task in (
        "integrations.tasks.sweep_messages",
        "integrations.tasks.poll_flows",
        "monitoring.tasks.evaluate_alerts",
        "monitoring.tasks.purge_payloads",
    )
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Celery's Django fixup closes the database connection around every task unless this is set,
# which costs a new PostgreSQL backend per task. icbridge.celery instead runs Django's own
# close_old_connections() around tasks: CONN_MAX_AGE and health checks decide, as in a request.
CELERY_DB_REUSE_MAX = 1_000_000_000

# --- Pipeline ---------------------------------------------------------------
# How often the beat sweeper looks for due and stuck messages.
ICBRIDGE_SWEEP_SECONDS = _positive("ICBRIDGE_SWEEP_SECONDS", _read("ICBRIDGE_SWEEP_SECONDS", env.float, 5.0))
# A queued message not picked up for this long is queued again (its task may be lost).
ICBRIDGE_REQUEUE_AFTER_SECONDS = _positive(
    "ICBRIDGE_REQUEUE_AFTER_SECONDS", _read("ICBRIDGE_REQUEUE_AFTER_SECONDS", env.float, 300.0)
)
# After the broker refused a task, a process's ingest leaves new messages to the sweeper for this long without
# trying the broker: a webhook answers 202 at once instead of waiting out the broker's connection timeout.
ICBRIDGE_BROKER_PAUSE_SECONDS = _positive(
    "ICBRIDGE_BROKER_PAUSE_SECONDS", _read("ICBRIDGE_BROKER_PAUSE_SECONDS", env.float, 5.0)
)
# An initial load's page is held by one worker this long; past it (a killed worker) the sweeper re-queues it.
ICBRIDGE_LOAD_LEASE_SECONDS = _positive(
    "ICBRIDGE_LOAD_LEASE_SECONDS", _read("ICBRIDGE_LOAD_LEASE_SECONDS", env.float, 120.0)
)
# A delivery lease is the target's timeout plus this margin; past it the message is stuck.
ICBRIDGE_LEASE_MARGIN_SECONDS = _positive(
    "ICBRIDGE_LEASE_MARGIN_SECONDS", _read("ICBRIDGE_LEASE_MARGIN_SECONDS", env.float, 30.0)
)
ICBRIDGE_SWEEP_BATCH = int(_positive("ICBRIDGE_SWEEP_BATCH", _read("ICBRIDGE_SWEEP_BATCH", env.int, 500)))
# How long a send may wait for its token or a free slot of the target (integrations.protocols.governor);
# a longer wait fails it unsent as throttled and the sweeper brings the message back.
ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS = _read("ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS", env.float, 5.0)
if ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS < 0:
    raise ImproperlyConfigured(
        f"ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS: must be 0 or more, got {ICBRIDGE_THROTTLE_MAX_WAIT_SECONDS}"
    )
# The longest Retry-After a target's answer may impose (integrations.errors.parse_retry_after): a longer
# one (1e12, a date in 2036) waits this long, so a message is never parked for years.
ICBRIDGE_RETRY_AFTER_MAX_SECONDS = _positive(
    "ICBRIDGE_RETRY_AFTER_MAX_SECONDS", _read("ICBRIDGE_RETRY_AFTER_MAX_SECONDS", env.float, 3600.0)
)
# An event time (a record version derived from it) may be this far ahead of the hub's clock; a later one
# is refused at ingest as 400, naming the field (integrations.protocols.events.iso_to_micros).
ICBRIDGE_MAX_CLOCK_SKEW_SECONDS = _positive(
    "ICBRIDGE_MAX_CLOCK_SKEW_SECONDS", _read("ICBRIDGE_MAX_CLOCK_SKEW_SECONDS", env.float, 300.0)
)

CELERY_BEAT_SCHEDULE = {
    "icbridge-sweep-messages": {
        "task": "integrations.tasks.sweep_messages",
        "schedule": ICBRIDGE_SWEEP_SECONDS,
    },
}
# AX 2012 has no push: poll flows ask AIF getChangedKeys this often; overlap re-asks a little of the last
# window so changes committed while the previous poll ran (or clock skew with the AOS) are not missed.
ICBRIDGE_POLL_SECONDS = _positive("ICBRIDGE_POLL_SECONDS", _read("ICBRIDGE_POLL_SECONDS", env.float, 30.0))
ICBRIDGE_POLL_OVERLAP_SECONDS = _read("ICBRIDGE_POLL_OVERLAP_SECONDS", env.float, 5.0)
CELERY_BEAT_SCHEDULE["icbridge-poll-flows"] = {
    "task": "integrations.tasks.poll_flows",
    "schedule": ICBRIDGE_POLL_SECONDS,
}
# Flows with trigger "schedule" are not here: each has its own PeriodicTask in the database, on its crontab,
# kept in step with the flow by integrations.polling.schedules (docs/operations.md, Schedules).

# --- Monitoring ---------------------------------------------------------------
# Payloads of finished messages older than this are blanked (the rows, attempts and audit stay).
ICBRIDGE_PAYLOAD_RETENTION_DAYS = int(
    _positive("ICBRIDGE_PAYLOAD_RETENTION_DAYS", _read("ICBRIDGE_PAYLOAD_RETENTION_DAYS", env.int, 30))
)
# Beat sends a heartbeat task this often; a worker writes it; /monitoring/health reads it.
ICBRIDGE_HEARTBEAT_SECONDS = _positive(
    "ICBRIDGE_HEARTBEAT_SECONDS", _read("ICBRIDGE_HEARTBEAT_SECONDS", env.float, 30.0)
)
ICBRIDGE_HEALTH_PING_SECONDS = _positive(
    "ICBRIDGE_HEALTH_PING_SECONDS", _read("ICBRIDGE_HEALTH_PING_SECONDS", env.float, 1.0)
)
# A retrying message needs an operator from this many attempts on, or once it waited this long.
ICBRIDGE_ATTENTION_ATTEMPTS = int(
    _positive("ICBRIDGE_ATTENTION_ATTEMPTS", _read("ICBRIDGE_ATTENTION_ATTEMPTS", env.int, 3))
)
ICBRIDGE_ATTENTION_MINUTES = _positive(
    "ICBRIDGE_ATTENTION_MINUTES", _read("ICBRIDGE_ATTENTION_MINUTES", env.float, 15.0)
)
# How often alert rules are evaluated.
ICBRIDGE_ALERTS_SECONDS = _positive("ICBRIDGE_ALERTS_SECONDS", _read("ICBRIDGE_ALERTS_SECONDS", env.float, 60.0))
# Window of the "recent" metrics (latency histogram, throttling, messages received).
ICBRIDGE_METRICS_WINDOW_SECONDS = _positive(
    "ICBRIDGE_METRICS_WINDOW_SECONDS", _read("ICBRIDGE_METRICS_WINDOW_SECONDS", env.int, 300)
)
# When set, /metrics requires "Authorization: Bearer <token>"; unset, /metrics is open only in the demo.
ICBRIDGE_METRICS_TOKEN = _read("ICBRIDGE_METRICS_TOKEN", env.str, "")
ICBRIDGE_METRICS_PUBLIC = _read("ICBRIDGE_METRICS_PUBLIC", _strict_bool, DEMO)
# /api/health details (which check failed) for anonymous callers; else only {"status": …} and the code.
ICBRIDGE_HEALTH_DETAILS_PUBLIC = _read("ICBRIDGE_HEALTH_DETAILS_PUBLIC", _strict_bool, DEMO)
CELERY_BEAT_SCHEDULE.update(
    {
        "icbridge-heartbeat": {"task": "monitoring.tasks.heartbeat", "schedule": ICBRIDGE_HEARTBEAT_SECONDS},
        "icbridge-evaluate-alerts": {"task": "monitoring.tasks.evaluate_alerts", "schedule": ICBRIDGE_ALERTS_SECONDS},
        "icbridge-purge-payloads": {"task": "monitoring.tasks.purge_payloads", "schedule": 3600.0},
    }
)

# --- API ----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    # Client address for throttles: REMOTE_ADDR unless this many proxies sit in front (their
    # X-Forwarded-For is trusted); DRF's default would trust a sender's own X-Forwarded-For.
    "NUM_PROXIES": _read("ICBRIDGE_NUM_PROXIES", env.int, 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "icbridge API",
    "DESCRIPTION": "Event ingress and operator API of the icbridge integration hub.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "PREPROCESSING_HOOKS": ["integrations.api.schema.api_paths_only"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Webhook ingress: largest accepted body (an InboundEndpoint may lower or raise it) and the default
# per-endpoint rate ("<n>/s", "/min", "/h"); the operator API's rate is per user.
ICBRIDGE_INGRESS_MAX_BODY_BYTES = int(
    _positive("ICBRIDGE_INGRESS_MAX_BODY_BYTES", _read("ICBRIDGE_INGRESS_MAX_BODY_BYTES", env.int, 1_048_576))
)
ICBRIDGE_INGRESS_THROTTLE_RATE = _read("ICBRIDGE_INGRESS_THROTTLE_RATE", env.str, "200/s")
ICBRIDGE_OPERATOR_THROTTLE_RATE = _read("ICBRIDGE_OPERATOR_THROTTLE_RATE", env.str, "20/s")
# Failed webhook authentications allowed per client address; past it the address hears 429.
ICBRIDGE_AUTH_FAILURE_RATE = _read("ICBRIDGE_AUTH_FAILURE_RATE", env.str, "20/min")
# Failed password logins (the admin login form; the operator API takes tokens or that session, no
# password) per (username, client address): after the limit, that pair is refused for the cool-off,
# counted from its last failure; a success resets the count (django-axes, docs/security.md).
ICBRIDGE_LOGIN_FAILURE_LIMIT = int(
    _positive("ICBRIDGE_LOGIN_FAILURE_LIMIT", _read("ICBRIDGE_LOGIN_FAILURE_LIMIT", env.int, 10))
)
ICBRIDGE_LOGIN_COOLOFF_MINUTES = _positive(
    "ICBRIDGE_LOGIN_COOLOFF_MINUTES", _read("ICBRIDGE_LOGIN_COOLOFF_MINUTES", env.float, 15.0)
)
AXES_FAILURE_LIMIT = ICBRIDGE_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=ICBRIDGE_LOGIN_COOLOFF_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Attempts while locked out are refused without being counted, so the lock ends by itself a cool-off
# after the failure that set it (and Retry-After says when), however often the form is sent meanwhile.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# The client address as the throttles see it (REMOTE_ADDR, or X-Forwarded-For only through
# ICBRIDGE_NUM_PROXIES trusted proxies); django-ipware is not installed, so axes' AXES_IPWARE_* are unused.
AXES_CLIENT_IP_CALLABLE = "integrations.api.auth.client_address"
AXES_LOCKOUT_CALLABLE = "integrations.api.logins.login_lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
# Masked in axes' log lines and in the request data it stores per attempt (the password always is):
# a password typed into the username field is not logged. The attempt rows (admin, Axes) name both.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]
# Synchronous calls to an ERP made for a user (/api/sync/…): per-user rate and the longest wait allowed.
ICBRIDGE_SYNC_THROTTLE_RATE = _read("ICBRIDGE_SYNC_THROTTLE_RATE", env.str, "30/min")
ICBRIDGE_SYNC_MAX_TIMEOUT_SECONDS = _positive(
    "ICBRIDGE_SYNC_MAX_TIMEOUT_SECONDS", _read("ICBRIDGE_SYNC_MAX_TIMEOUT_SECONDS", env.float, 15.0)
)
# Hosts (fnmatch patterns, e.g. *.dynamics.com) and networks (10.0.0.0/8) the hub may connect to;
# empty: any, except link-local (cloud metadata) addresses, which are always refused (integrations.egress).
ICBRIDGE_EGRESS_ALLOW = _read("ICBRIDGE_EGRESS_ALLOW", env.list, [])
# How long a web process reuses a flow's inbound settings before reading them again (a change made
# in another process — credentials, enabled — takes effect within this time).
ICBRIDGE_INGRESS_CONFIG_TTL = _read("ICBRIDGE_INGRESS_CONFIG_TTL", env.float, 5.0)

LOG_LEVEL = _read("LOG_LEVEL", env.str, "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # Structured logs (monitoring.logging): context ids on every record, secrets masked, JSON on request.
    "filters": {
        "context": {"()": "monitoring.logging.ContextFilter"},
        "redact": {"()": "monitoring.logging.RedactionFilter"},
    },
    "loggers": {
        # urllib3 logs full URLs at DEBUG, which may carry keys.
        "urllib3": {"level": "WARNING"},
        "zeep": {"level": "WARNING"},
        # Django's own handlers (console in DEBUG, runserver's request lines, mail_admins with the full
        # request) bypass the redaction: route them through ours only.
        "django": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
        "django.server": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}
# Filters sit on the handler: logger-level filters would miss records propagated from child loggers.
LOG_FORMAT = _read("LOG_FORMAT", env.str, "plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT: expected plain or json, got {LOG_FORMAT!r}")
LOGGING["formatters"].update(
    {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [msg=%(message_id)s corr=%(correlation_id)s] %(message)s"
        },
        "json": {"()": "monitoring.logging.JsonFormatter"},
    }
)
LOGGING["handlers"]["console"].update({"formatter": LOG_FORMAT, "filters": ["context", "redact"]})
