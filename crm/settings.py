"""The one settings module (DESIGN.md habit 7).

Everything comes from the environment (or `.env`) through django-environ; every variable is
documented with its default in `.env.example`. With no environment at all the project runs the
embedded default: SQLite in WAL mode, a file-based cache, Celery on kombu's filesystem
transport and an in-memory channel layer, all under `var/`. Setting `DATABASE_URL` and
`REDIS_URL` switches to the production stack with the same code.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ
from csp.constants import NONE, SELF, UNSAFE_INLINE

from crm.localenv import ensure_generated_secrets

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = Path(os.environ.get("CRM_ENV_FILE", BASE_DIR / ".env"))
ensure_generated_secrets(ENV_FILE, present=set(os.environ))
env.read_env(ENV_FILE)

VAR_DIR = Path(env.str("CRM_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

# --- Core -------------------------------------------------------------------------------------
SECRET_KEY = env.str("SECRET_KEY")
FIELD_ENCRYPTION_KEY = env.str("FIELD_ENCRYPTION_KEY")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_NAME = env.str("SITE_NAME", default="Support CRM")
DEMO_ADMIN_PASSWORD = env.str("DEMO_ADMIN_PASSWORD", default="")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.microsoft",
    "rest_framework",
    "django_filters",
    "django_htmx",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "crm",
    "mailsync",
    "calendars",
    "cases",
    "activesync",
]

MIDDLEWARE = [
    "crm.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "crm.middleware.AgentTimezoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "crm.middleware.SyncMiddlewareChain",  # keep last: see its docstring
]

ROOT_URLCONF = "crm.urls"
ASGI_APPLICATION = "crm.asgi.application"
AUTH_USER_MODEL = "crm.User"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
                "crm.context_processors.site",
                "crm.alerts.admin_notices",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------------
DATABASE_URL = env.str("DATABASE_URL", default="")
if DATABASE_URL:
    DATABASES = {"default": env.db_url_config(DATABASE_URL)}
    if env.bool("DATABASE_POOL", default=True):
        # Django's psycopg pool: CONN_MAX_AGE > 0 leaks connections under ASGI (DESIGN.md).
        DATABASES["default"]["OPTIONS"] = {
            "pool": {
                "min_size": env.int("DATABASE_POOL_MIN_SIZE", default=2),
                "max_size": env.int("DATABASE_POOL_MAX_SIZE", default=10),
                "timeout": env.int("DATABASE_POOL_TIMEOUT", default=10),
            }
        }
    if not env.bool("DATABASE_JIT", default=False):
        # PostgreSQL's JIT spends up to a second compiling the aggregates of a report that
        # then runs in a fraction of that (measured in bench/cases_api.py); off by default.
        DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "crm.sqlite3",
            "OPTIONS": {
                # Writers take the lock up front instead of failing mid-transaction, and wait.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }

# --- Cache, broker, channel layer -------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "crm",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 reads with a 5 s socket timeout by default, which is the length of
            # channels_redis's blocking BZPOPMIN: an idle socket's read then failed with
            # "Timeout reading" and dropped the consumer. A longer timeout keeps dead
            # connections detectable.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 10}],
                "prefix": "crm:channels",
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": VAR_DIR / "cache",
        }
    }
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Live updates: how often the web process polls the database for changes made by other
# processes (0 = never). Unset: 5 s with the in-memory channel layer, 0 with Redis.
LIVE_POLL_SECONDS = env.float("LIVE_POLL_SECONDS", default=None)

# Cached dashboard and report figures (cases.analytics_cache) are recomputed once older than
# this even when no change moved their change numbers, and kept this long to answer with.
ANALYTICS_MAX_AGE_SECONDS = env.int("ANALYTICS_MAX_AGE_SECONDS", default=3600)
ANALYTICS_KEEP_SECONDS = env.int("ANALYTICS_KEEP_SECONDS", default=7 * 24 * 3600)
# The worker recomputes the dashboard and first report of agents who signed in this recently
# (days), on its schedule "cases: analytics warm-up" (every 5 minutes), so pages rarely wait.
ANALYTICS_WARM_DAYS = env.int("ANALYTICS_WARM_DAYS", default=1)
# Once a change moved them on, answer with the figures as they were and recompute them in a
# background thread (off: the viewer waits for the recomputation).
ANALYTICS_REFRESH_IN_BACKGROUND = env.bool("ANALYTICS_REFRESH_IN_BACKGROUND", default=True)

# Airtable export (cases.airtable). The API's address (tests and the benchmark point it at
# `airtablesim`). After a 429 Airtable refuses the base for 30 s; pyairtable's default retry
# gives up after about 3 s, so ours waits this long. At most this many requests per second
# per base across all processes, each turn counted until a window (plus the margin, slack for
# Airtable's own clock) after its answer. Transient failures (dropped connections, 5xx, 429)
# are retried this often per request, backing off from this factor (urllib3: 0, 2x, 4x, ... s).
# A run's hold on its export lasts this long without renewal (renewed after every upsert).
AIRTABLE_API_URL = env.str("AIRTABLE_API_URL", default="https://api.airtable.com")
AIRTABLE_LOCKOUT_SECONDS = env.float("AIRTABLE_LOCKOUT_SECONDS", default=30.0)
AIRTABLE_REQUESTS_PER_SECOND = env.int("AIRTABLE_REQUESTS_PER_SECOND", default=5)
AIRTABLE_RATE_MARGIN_SECONDS = env.float("AIRTABLE_RATE_MARGIN_SECONDS", default=0.05)
AIRTABLE_MAX_RETRIES = env.int("AIRTABLE_MAX_RETRIES", default=5)
AIRTABLE_BACKOFF_SECONDS = env.float("AIRTABLE_BACKOFF_SECONDS", default=1.0)
AIRTABLE_CONNECT_TIMEOUT_SECONDS = env.float("AIRTABLE_CONNECT_TIMEOUT_SECONDS", default=10.0)
AIRTABLE_READ_TIMEOUT_SECONDS = env.float("AIRTABLE_READ_TIMEOUT_SECONDS", default=60.0)
AIRTABLE_LEASE_SECONDS = env.float("AIRTABLE_LEASE_SECONDS", default=600.0)

CELERY_QUEUE_DIR = VAR_DIR / "celery"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in ("queue", "processed"):
        (CELERY_QUEUE_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_QUEUE_DIR / "queue"),
        "data_folder_out": str(CELERY_QUEUE_DIR / "queue"),
        "processed_folder": str(CELERY_QUEUE_DIR / "processed"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_TASK_DEFAULT_QUEUE", default="crm")
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_METRICS_PORT = env.int("CELERY_METRICS_PORT", default=0)
HEARTBEAT_INTERVAL_SECONDS = env.int("HEARTBEAT_INTERVAL_SECONDS", default=60)

# --- Auth: django-allauth ---------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if env.bool("TEST_FAST_PASSWORD_HASHER", default=False):
    # Tests only: hashing with PBKDF2's 1,000,000 rounds would dominate the suite's run time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_ADAPTER = "crm.auth.AgentAccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
SOCIALACCOUNT_ADAPTER = "crm.auth.AgentSocialAccountAdapter"
SOCIALACCOUNT_ONLY = False
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = SITE_NAME

MS_CLIENT_ID = env.str("MS_CLIENT_ID", default="")
MS_CLIENT_SECRET = env.str("MS_CLIENT_SECRET", default="")
MS_TENANT_ID = env.str("MS_TENANT_ID", default="")
MS_AUTHORITY_HOST = env.str("MS_AUTHORITY_HOST", default="https://login.microsoftonline.com")
GRAPH_API_URL = env.str("GRAPH_API_URL", default="https://graph.microsoft.com/v1.0")
MS_CA_BUNDLE = env.str("MS_CA_BUNDLE", default="")
# What an agent consents to when connecting their own mailbox (delegated Graph permissions).
MS_DELEGATED_SCOPES = env.list(
    "MS_DELEGATED_SCOPES", default=["Mail.ReadWrite", "Mail.Send", "User.Read"]
)
GRAPH_TIMEOUT_SECONDS = env.int("GRAPH_TIMEOUT_SECONDS", default=30)
GRAPH_MAX_RETRIES = env.int("GRAPH_MAX_RETRIES", default=6)
GRAPH_RETRY_BASE_SECONDS = env.float("GRAPH_RETRY_BASE_SECONDS", default=1.0)
GRAPH_RETRY_MAX_SECONDS = env.float("GRAPH_RETRY_MAX_SECONDS", default=60.0)
# Limits shared by every process (crm.graph.limits, crm.graph.breaker): Graph requests in flight
# per mailbox, how long a slot's lease outlives a crashed holder (keep it well above
# GRAPH_TIMEOUT_SECONDS), how long to wait for a slot before GraphBusy; the circuit breaker
# opens after this many consecutive failed requests for this many seconds.
GRAPH_MAILBOX_CONCURRENCY = env.int("GRAPH_MAILBOX_CONCURRENCY", default=4)
GRAPH_SLOT_LEASE_SECONDS = env.float("GRAPH_SLOT_LEASE_SECONDS", default=120.0)
GRAPH_SLOT_WAIT_SECONDS = env.float("GRAPH_SLOT_WAIT_SECONDS", default=60.0)
GRAPH_BREAKER_THRESHOLD = env.int("GRAPH_BREAKER_THRESHOLD", default=5)
GRAPH_BREAKER_COOLDOWN_SECONDS = env.float("GRAPH_BREAKER_COOLDOWN_SECONDS", default=60.0)
# Mail sync (mailsync): page size of delta queries, how long a folder's sync lease lasts
# without renewal, and how often beat starts a round for every mailbox.
MAIL_DELTA_PAGE_SIZE = env.int("MAIL_DELTA_PAGE_SIZE", default=100)
MAIL_SYNC_LEASE_SECONDS = env.int("MAIL_SYNC_LEASE_SECONDS", default=600)
MAIL_SYNC_INTERVAL_SECONDS = env.int("MAIL_SYNC_INTERVAL_SECONDS", default=300)
# The attachments of one message sent from the CRM may add up to this many bytes (Graph takes
# 150 MB through upload sessions; most relays and recipients refuse far less).
MAIL_SEND_MAX_BYTES = env.int("MAIL_SEND_MAX_BYTES", default=35 * 1024 * 1024)
# A CA certificate file trusted for the SMTP relay's TLS in addition to the system's (a relay
# with a certificate of a company CA).
SMTP_RELAY_CA_BUNDLE = env.str("SMTP_RELAY_CA_BUNDLE", default="")
# Hot pages of the mail API are cached under their mailboxes' change numbers (never stale);
# this only bounds how long an unused page takes memory in Redis.
MAIL_PAGE_CACHE_SECONDS = env.int("MAIL_PAGE_CACHE_SECONDS", default=300)
# One process applies a mailbox's write-back outbox at a time; a crashed one's lease runs out
# after this long (keep it above the longest Retry-After Graph sends, typically minutes).
MAIL_OUTBOX_LEASE_SECONDS = env.int("MAIL_OUTBOX_LEASE_SECONDS", default=300)
# Admins get an email when a Microsoft 365 mailbox has not synced without errors for this
# long; agents' own mailboxes redeem their refresh token at least this often (keeps it alive
# and finds a revoked one before the agent notices).
MAILBOX_SYNC_ALERT_MINUTES = env.int("MAILBOX_SYNC_ALERT_MINUTES", default=60)
DELEGATED_REFRESH_HOURS = env.int("DELEGATED_REFRESH_HOURS", default=24)
# Graph change notifications (crm.graph.subscriptions): they are subscribed only when the
# CRM has a public https address Graph can call (`PUBLIC_BASE_URL`); lifetime in minutes (the
# longest Graph allows for Outlook resources); a notification's round starts after the
# coalescing delay, and every notification until it starts joins it; folders without a
# working subscription are polled.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")
GRAPH_SUBSCRIPTION_MINUTES = env.int("GRAPH_SUBSCRIPTION_MINUTES", default=10_080)
GRAPH_NOTIFICATION_COALESCE_SECONDS = env.float("GRAPH_NOTIFICATION_COALESCE_SECONDS", default=2.0)
GRAPH_POLL_INTERVAL_SECONDS = env.int("GRAPH_POLL_INTERVAL_SECONDS", default=60)
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1_048_576)
WEBHOOK_RATE_PER_SECOND = env.int("WEBHOOK_RATE_PER_SECOND", default=5_000)
# SMTP listener (mailsync.smtp): the largest message (aiosmtpd answers 552 beyond; 60 MiB
# leaves room for a 50 MB attachment in base64), recipients per message (452 beyond),
# STARTTLS when a certificate and key are given, SMTP AUTH for agents (only after STARTTLS
# unless SMTP_AUTH_REQUIRE_TLS=false), and the name in the banner (default: the host's).
SMTP_MAX_MESSAGE_BYTES = env.int("SMTP_MAX_MESSAGE_BYTES", default=62_914_560)
SMTP_MAX_RECIPIENTS = env.int("SMTP_MAX_RECIPIENTS", default=1000)
SMTP_TLS_CERT = env.str("SMTP_TLS_CERT", default="")
SMTP_TLS_KEY = env.str("SMTP_TLS_KEY", default="")
SMTP_AUTH_ENABLED = env.bool("SMTP_AUTH_ENABLED", default=False)
SMTP_AUTH_REQUIRE_TLS = env.bool("SMTP_AUTH_REQUIRE_TLS", default=True)
SMTP_HOSTNAME = env.str("SMTP_HOSTNAME", default="")
MICROSOFT_ENABLED = bool(MS_CLIENT_ID and MS_CLIENT_SECRET and MS_TENANT_ID)
SOCIALACCOUNT_PROVIDERS = {"microsoft": {"APPS": []}}
if MICROSOFT_ENABLED:
    SOCIALACCOUNT_PROVIDERS["microsoft"]["APPS"] = [
        {
            "client_id": MS_CLIENT_ID,
            "secret": MS_CLIENT_SECRET,
            "settings": {
                "tenant": MS_TENANT_ID,
                "login_url": MS_AUTHORITY_HOST,
                "graph_url": GRAPH_API_URL.rsplit("/v1.0", 1)[0],
            },
        }
    ]

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="support-crm@localhost")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
# A mail server that stops answering must not hold a worker (or a row lock) forever.
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
# Alerts to admins (crm.alerts.email_admins) go to every active superuser plus these addresses.
ADMINS = [(address, address) for address in env.list("ADMINS", default=[])]
EMAIL_SUBJECT_PREFIX = env.str("EMAIL_SUBJECT_PREFIX", default=f"[{SITE_NAME}] ")
# Days before an app secret's expiry (entered in admin) at which admins are emailed, once each.
APP_SECRET_WARN_DAYS = env.list("APP_SECRET_WARN_DAYS", cast=int, default=[30, 7, 1])

# Email intake (cases): a sender opening more new cases than this in an hour is a flood;
# further messages are recorded without opening cases.
INTAKE_MAX_NEW_CASES_PER_SENDER_HOUR = env.int("INTAKE_MAX_NEW_CASES_PER_SENDER_HOUR", default=20)

# Triage of new cases (cases.services.triage): the built-in rules always run in intake; with
# TRIAGE_LLM_URL set, an OpenAI-compatible model (POST {url}/chat/completions) re-triages each
# new case in the worker. A timeout or a bad answer keeps the rules' result.
TRIAGE_LLM_URL = env.str("TRIAGE_LLM_URL", default="")
TRIAGE_LLM_MODEL = env.str("TRIAGE_LLM_MODEL", default="gpt-4o-mini")
TRIAGE_LLM_API_KEY = env.str("TRIAGE_LLM_API_KEY", default="")
TRIAGE_LLM_TIMEOUT_SECONDS = env.float("TRIAGE_LLM_TIMEOUT_SECONDS", default=20.0)

# --- API: DRF + drf-spectacular ---------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that an unauthenticated request gets 401 with a Token challenge.
        "crm.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "crm.api.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="6000/min"),
    },
    "SEARCH_PARAM": "q",
    "EXCEPTION_HANDLER": "crm.api.exceptions.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"{SITE_NAME} API",
    "DESCRIPTION": "REST API of the support CRM: cases, tasks, customers, mail and calendars.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CaseStatusEnum": "cases.choices.CaseStatus",
        "TaskStatusEnum": "cases.choices.TaskStatus",
    },
}

# --- Static files, security -------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env.str(
            "STATICFILES_BACKEND",
            default="whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=False)
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

SECURE_COOKIES = env.bool("SECURE_COOKIES", default=False)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
if env.bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        # Django admin and Swagger UI set style attributes; scripts stay strictly same-origin.
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF, MS_AUTHORITY_HOST] if MICROSOFT_ENABLED else [SELF],
        "frame-ancestors": [NONE],
    }
}

# --- I18n -------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Logging ----------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "celery": {"level": LOG_LEVEL},
    },
}
