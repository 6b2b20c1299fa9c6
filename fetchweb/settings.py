"""fetchweb's one settings module.

Every value comes from the environment (or a ``.env`` file beside manage.py) through
django-environ, and every value has a default that runs on a fresh machine with no
services: a SQLite file and a broker kept in files under ``var/``. Production safety
comes from the system checks in ``fetchweb/checks.py``, not from missing defaults.
``.env.example`` lists each variable with its default.
"""

from __future__ import annotations

from pathlib import Path

import environ

from fetchweb import localsecrets

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def env_bool(name: str, *, default: bool) -> bool:
    """Strict booleans: a typo such as DEBUG=flase must not silently mean True."""
    raw = env.str(name, default="").strip().lower()
    if not raw:
        return default
    if raw in {"true", "1", "yes", "on"}:
        return True
    if raw in {"false", "0", "no", "off"}:
        return False
    raise environ.ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def env_secret(name: str, default: str = "") -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker secrets)."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return env.str(name, default=default)


# No longer used as a default (see the secrets file below); kept so that the
# system checks can still refuse it when someone sets it explicitly.
DEV_SECRET_KEY = "dev-insecure-fetchweb-secret-key-change-me"

DEBUG = env_bool("DEBUG", default=True)

# SECRET_KEY and FIELD_ENCRYPTION_KEYS come from the environment; whichever is not
# set there comes from a private file generated on first start (mode 0600), so that
# a zero-configuration install has keys nobody else knows. Production sets both in
# the environment (the system checks insist): every process and host must share them.
SECRETS_FILE = Path(
    env.str("FETCHWEB_SECRETS_FILE", default=str(VAR_DIR / "secrets.json"))
)
if not SECRETS_FILE.is_absolute():  # relative to the project, like var/
    SECRETS_FILE = BASE_DIR / SECRETS_FILE
_env_secret_key = env_secret("SECRET_KEY")
_env_field_keys = env_secret("FIELD_ENCRYPTION_KEYS")
_generated: dict[str, str] = {}
if not _env_secret_key or not _env_field_keys:
    try:
        _generated = localsecrets.load_or_create(SECRETS_FILE)
    except (OSError, ValueError) as exc:
        raise environ.ImproperlyConfigured(
            f"SECRET_KEY or FIELD_ENCRYPTION_KEYS is not set and the secrets file "
            f"cannot be used: {exc}"
        ) from exc
SECRET_KEY = _env_secret_key or _generated["SECRET_KEY"]
SECRET_KEY_GENERATED = not _env_secret_key
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "fetchweb.apps.FetchwebAdminConfig",  # the admin, for superusers only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "fetchweb.apps.FetchwebConfig",
    "accounts",
    "retrieval",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served by us: no CDN
]

MIDDLEWARE = [
    # First, so that every response (static files and errors too) gets the headers.
    "fetchweb.middleware.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Who acted, for the audit log of changes (accounts/audit.py).
    "accounts.audit.AuditContextMiddleware",
    # The person's time zone for the times the pages show (accounts/timezones.py).
    "accounts.timezones.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "fetchweb.urls"
WSGI_APPLICATION = "fetchweb.wsgi.application"

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
                "accounts.timezones.context",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'fetchweb.sqlite3'}"
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers and the web process write at the same time; wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The console's queries run a per-mailbox subquery over thousands of rows,
    # which crosses the JIT's cost threshold: compiling took 70-110 ms of a
    # 10,000-mailbox page and saved nothing (bench/console.py).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
# A connection serves many requests and polls: opening one costs PostgreSQL a
# process and a few milliseconds of CPU to warm its caches, which was a third of
# its work per poll (bench/throughput.py). Checked before reuse, so a restarted
# database costs one failed check, not a failed poll; a worker skips the check
# for a connection its previous task used under 2 s before (fetchweb/celery.py),
# so a restart within those 2 s can fail one task per worker.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Behind a pooler in transaction mode (PgBouncer's pool_mode = transaction) each
# transaction may reach another server connection: Django then must not use
# server-side cursors, and the ledger does not prepare its statements
# (retrieval/services/pipelined.py) but sends them whole each time.
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool(
    "DATABASE_TRANSACTION_POOLING", default=False
)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Parameters sent apart from the statement (server-side binding), and a
    # statement run for the fifth time on a connection prepared: PostgreSQL then
    # parses and plans a poll's dozen statements once per connection, not on
    # every poll, which was half of its CPU per poll (bench/poll_cpu.py: 2.9 ->
    # 1.3 ms with new mail), and psycopg no longer quotes the values into the
    # text. Behind a pooler in transaction mode a prepared statement may not be
    # on the next transaction's server connection: there, nothing is prepared.
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = True
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = (
        None if DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] else 5
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
# The model backend, refusing throttled accounts (accounts/throttle.py).
AUTHENTICATION_BACKENDS = ["accounts.backends.ThrottledModelBackend"]
# Sign-in throttling: past either limit within the window, sign-ins for that
# account / from that address are refused, the right password included.
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_FAILURES_PER_ADDRESS = env.int("LOGIN_FAILURES_PER_ADDRESS", default=20)
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", default=900)  # seconds
# Password reset requests (accounts/throttle.py): per email address typed and per
# client address, within the window, whether or not the address has an account.
RESET_REQUESTS_PER_EMAIL = env.int("RESET_REQUESTS_PER_EMAIL", default=3)
RESET_REQUESTS_PER_ADDRESS = env.int("RESET_REQUESTS_PER_ADDRESS", default=5)
RESET_REQUEST_WINDOW = env.int("RESET_REQUEST_WINDOW", default=3600)  # seconds
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Hardening that `check --deploy` asks for; on by default once DEBUG is off.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# Health checks and Prometheus talk plain HTTP inside the deployment's network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG
)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https")
    if env_bool("BEHIND_PROXY", default=False)
    else None
)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Scripts, styles, images and fonts from this site only; no inline script or style,
# no eval, no plugins, no framing, forms post only here (fetchweb/middleware.py).
# The admin works under it: Django 5.2's admin has no inline script.
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default="; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    ),
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# Remote mailbox passwords are encrypted with these keys (comma-separated, the first
# encrypts, all decrypt; see `manage.py rotate_secrets`). Not set: the generated
# key of SECRETS_FILE, which the production checks refuse.
FIELD_ENCRYPTION_KEYS = [
    k.strip()
    for k in (_env_field_keys or _generated["FIELD_ENCRYPTION_KEYS"]).split(",")
    if k.strip()
]
FIELD_ENCRYPTION_KEYS_GENERATED = not _env_field_keys
# Installs made before the secrets file encrypted with a key derived from the
# SECRET_KEY of the time. That key still decrypts (never encrypts), so those
# passwords keep working until `manage.py rotate_secrets` moves them to the new key.
FIELD_ENCRYPTION_LEGACY_SECRET = (
    (_env_secret_key or DEV_SECRET_KEY) if FIELD_ENCRYPTION_KEYS_GENERATED else ""
)

# --- Celery ------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
BROKER_DIR = VAR_DIR / "broker"
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        # Longer than the hard time limit, or Redis hands a running poll to a second
        # worker (the lock would stop it, but it wastes a slot).
        "visibility_timeout": 3600,
    }
else:
    # A broker in plain files: no server to install, good for one host only.
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    # Any process may queue a task (a poll from `manage.py poll` queues its alert),
    # not only those `make run` starts after creating the folders.
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
# Three queues (retrieval.tasks.route_task): scheduled polls on "polls"; "Poll
# now" and connection tests on "interactive", served by a worker that runs no
# scheduled polls, so a person never waits behind them; polls started by new mail
# (IDLE) on "push". Beat's own tasks stay on the default "celery" queue.
# bin/run and docker-compose.yml start workers on these queues.
CELERY_TASK_ROUTES = ["retrieval.tasks.route_task"]
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery closes Django's connections around every task unless this is set; with it,
# only every this many tasks, and fetchweb.celery applies CONN_MAX_AGE and the
# health check itself before each task.
CELERY_DB_REUSE_MAX = 1000
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")

# --- Retrieval ---------------------------------------------------------------------
FETCH_DISPATCH_INTERVAL = env.float("FETCH_DISPATCH_INTERVAL", default=10.0)  # seconds
FETCH_DEFAULT_INTERVAL = env.int("FETCH_DEFAULT_INTERVAL", default=300)  # seconds
FETCH_TIMEOUT = env.float("FETCH_TIMEOUT", default=120.0)  # seconds, every network wait
FETCH_SOFT_LIMIT = env.int("FETCH_SOFT_LIMIT", default=1500)  # seconds per poll task
FETCH_HARD_LIMIT = env.int("FETCH_HARD_LIMIT", default=1800)  # seconds per poll task
# A lease outlives the hard limit so a killed worker's mailbox frees itself.
FETCH_LEASE_SECONDS = env.int("FETCH_LEASE_SECONDS", default=FETCH_HARD_LIMIT + 60)
# Let mailboxes of non-superusers reach private and loopback addresses (labs only).
FETCH_ALLOW_PRIVATE_HOSTS = env_bool("FETCH_ALLOW_PRIVATE_HOSTS", default=False)
FETCH_TRANSCRIPT_MAX_CHARS = env.int("FETCH_TRANSCRIPT_MAX_CHARS", default=200_000)
# Sessions open at once to one remote host, across all workers (0: no limit); a
# poll that finds none free is postponed by FETCH_HOST_BUSY_DELAY seconds.
FETCH_MAX_SESSIONS_PER_HOST = env.int("FETCH_MAX_SESSIONS_PER_HOST", default=10)
FETCH_HOST_BUSY_DELAY = env.int("FETCH_HOST_BUSY_DELAY", default=30)
# Keep an IMAP mailbox's session logged in for up to this many idle seconds after
# a clean poll, for the next poll in the same worker process (0: log out after
# every poll); at most FETCH_KEEP_SESSIONS_MAX a process. Only without the host
# cap above (FETCH_MAX_SESSIONS_PER_HOST=0): a kept session stays open at the
# server. FETCH_POLL_SHARDS > 0 sends each mailbox's scheduled polls to queue
# "polls.<id modulo N>", so that they reach the same one-process worker of that
# shard (bin/run starts one per shard). The connection to the local listener is
# kept as long (with the cap too), for the next poll in the process delivering the
# same way; see retrieval/services/kept.py.
FETCH_KEEP_SESSIONS = env.int("FETCH_KEEP_SESSIONS", default=0)
FETCH_KEEP_SESSIONS_MAX = env.int("FETCH_KEEP_SESSIONS_MAX", default=1000)
FETCH_POLL_SHARDS = env.int("FETCH_POLL_SHARDS", default=0)
# Mailboxes claimed per statement by the dispatcher, and statements per tick.
FETCH_DISPATCH_BATCH = env.int("FETCH_DISPATCH_BATCH", default=500)
FETCH_DISPATCH_MAX_BATCHES = env.int("FETCH_DISPATCH_MAX_BATCHES", default=20)
# Failure handling (README "Failures and alerts"): a failing mailbox waits
# interval x 2^(failures-1), never longer than FETCH_BACKOFF_MAX seconds; after
# FETCH_PAUSE_AFTER failures that waiting cannot cure it is paused.
FETCH_BACKOFF_MAX = env.int("FETCH_BACKOFF_MAX", default=24 * 3600)
FETCH_PAUSE_AFTER = env.int("FETCH_PAUSE_AFTER", default=3)
# Alerts: by mail (Django's EMAIL_* settings) and, when a URL is set, by a POST
# signed with HMAC-SHA256 of the body under FETCH_WEBHOOK_SECRET.
FETCH_ALERT_MAIL = env_bool("FETCH_ALERT_MAIL", default=True)
FETCH_WEBHOOK_URL = env.str("FETCH_WEBHOOK_URL", default="")
FETCH_WEBHOOK_SECRET = env_secret("FETCH_WEBHOOK_SECRET")
EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend"
)
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="fetchweb@localhost")
# The address of the pages, for links in alerts.
FETCH_BASE_URL = env.str("FETCH_BASE_URL", default="http://localhost:8000").rstrip("/")
# Poll runs (transcripts, message results) older than this are deleted by a daily
# task, in batches; the last run of each mailbox is always kept.
FETCH_RUN_RETENTION_DAYS = env.int("FETCH_RUN_RETENTION_DAYS", default=30)
# The dashboard's counters: hourly rows older than FETCH_STATS_HOURLY_DAYS days
# (at least 2: the 24-hour chart reads hours) are added into daily rows by the
# daily cleanup, and daily rows are kept FETCH_STATS_RETENTION_DAYS days. The
# default keeps the 30-day charts on hourly rows (days cut in any zone).
FETCH_STATS_HOURLY_DAYS = max(env.int("FETCH_STATS_HOURLY_DAYS", default=32), 2)
FETCH_STATS_RETENTION_DAYS = env.int("FETCH_STATS_RETENTION_DAYS", default=365)
# Connection tests ("Test connection") queued or running at once per person; they
# run on the "interactive" Celery queue, apart from the polls.
FETCH_MAX_PROBES_PER_USER = env.int("FETCH_MAX_PROBES_PER_USER", default=2)
# Mailboxes a person who is not a superuser may create: per owner and per domain
# (0: no limit). A superuser's own creations are not counted against them.
FETCH_MAX_MAILBOXES_PER_USER = env.int("FETCH_MAX_MAILBOXES_PER_USER", default=50)
FETCH_MAX_MAILBOXES_PER_DOMAIN = env.int("FETCH_MAX_MAILBOXES_PER_DOMAIN", default=1000)
# Listeners non-superusers may deliver to when importing an rcfile ("host" or
# "host/port"; a bare host means port 25).
FETCH_ALLOWED_DELIVERY = env.list("FETCH_ALLOWED_DELIVERY", default=["localhost"])
# Where a mailbox added in the web pages delivers; only a superuser may change it.
FETCH_DEFAULT_DELIVERY_KIND = env.str("FETCH_DEFAULT_DELIVERY_KIND", default="smtp")
FETCH_DEFAULT_DELIVERY_HOST = env.str(
    "FETCH_DEFAULT_DELIVERY_HOST", default="localhost"
)
FETCH_DEFAULT_DELIVERY_PORT = env.int("FETCH_DEFAULT_DELIVERY_PORT", default=25)
if FETCH_DEFAULT_DELIVERY_KIND not in {"smtp", "lmtp"}:
    raise environ.ImproperlyConfigured(
        "FETCH_DEFAULT_DELIVERY_KIND must be smtp or lmtp"
    )
# Rate limits ("Poll now", "Test connection") and sign-in throttling count in the
# cache, which every web process must share (gunicorn runs several): Redis when
# there is one, else files under var/cache (one host; local memory would give each
# process its own count). The "throttle" alias outlives a throttling window even
# where incr() re-sets the entry (file cache).
_THROTTLE_TIMEOUT = 2 * max(LOGIN_FAILURE_WINDOW, RESET_REQUEST_WINDOW) + 120
if REDIS_URL:
    # fetchweb.cache.RedisCache: Django's, keeping one Redis client instead of
    # building one per call (a poll's cache calls cost several times less).
    CACHES = {
        "default": {
            "BACKEND": "fetchweb.cache.RedisCache",
            "LOCATION": REDIS_URL,
        },
        "throttle": {
            "BACKEND": "fetchweb.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "throttle",
            "TIMEOUT": _THROTTLE_TIMEOUT,
        },
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache" / "default"),
        },
        "throttle": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache" / "throttle"),
            "TIMEOUT": _THROTTLE_TIMEOUT,
        },
    }

CELERY_BEAT_SCHEDULE = {
    "dispatch-due-polls": {
        "task": "retrieval.tasks.dispatch_due_polls",
        "schedule": FETCH_DISPATCH_INTERVAL,
        # A stalled broker must not replay a burst of dispatches later.
        "options": {"expires": max(FETCH_DISPATCH_INTERVAL - 1, 1)},
    },
    "delete-old-runs": {
        "task": "retrieval.tasks.delete_old_runs",
        # 03:17 every day: a crontab's fields, which fetchweb/celery.py makes a
        # celery.schedules.crontab (importing Celery here would cost every Django
        # process, ``manage.py poll`` and the pages too, a tenth of a second).
        "schedule": {"crontab": {"hour": 3, "minute": 17}},
        "options": {"expires": 3600},
    },
}

# --- Logs, metrics, health (docs/metrics.md, README "Monitoring") ----------------------
# text for people (make run), json for collectors (docker-compose.yml): one object
# per line, one line per poll and per delivery in the workers, never a secret.
FETCH_LOG_FORMAT = env.str("FETCH_LOG_FORMAT", default="text").strip().lower()
if FETCH_LOG_FORMAT not in {"text", "json"}:
    raise environ.ImproperlyConfigured("FETCH_LOG_FORMAT must be text or json")
FETCH_LOG_LEVEL = env.str(
    "FETCH_LOG_LEVEL", default=env.str("LOG_LEVEL", default="INFO")
).upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "fetchweb.logformat.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": FETCH_LOG_FORMAT}
    },
    "root": {"handlers": ["console"], "level": FETCH_LOG_LEVEL},
}
# /metrics: allowed to clients in these networks (default: loopback only) and to
# any client sending "Authorization: Bearer <FETCH_METRICS_TOKEN>" when it is set.
FETCH_METRICS_TOKEN = env_secret("FETCH_METRICS_TOKEN")
FETCH_METRICS_ALLOW = env.list("FETCH_METRICS_ALLOW", default=["127.0.0.0/8", "::1"])
# A mailbox due for longer than this many seconds counts as overdue.
FETCH_METRICS_OVERDUE_SECONDS = env.int("FETCH_METRICS_OVERDUE_SECONDS", default=300)
# Where the worker processes leave their metrics for /metrics (prometheus_client's
# multiprocess mode). Set by bin/run and docker-compose.yml, which empty it at start;
# the same directory for web and workers. Empty: each process sees only its own.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR:
    # prometheus_client fails at the first metric if the directory is missing.
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
# The IDLE process (python manage.py idle --health HOST:PORT) answers on
# http://HOST:PORT/healthz; /healthz checks that URL too when this is set.
FETCH_IDLE_HEALTH = env.str("FETCH_IDLE_HEALTH", default="")
# Seconds the IDLE process's reconcile waits between two reads of the mailboxes.
FETCH_IDLE_RECONCILE_SECONDS = env.float("FETCH_IDLE_RECONCILE_SECONDS", default=5.0)
# A push poll is queued at most once per mailbox until a poll of it starts; the
# mark expires after this many seconds should the task be lost.
FETCH_IDLE_PENDING_SECONDS = env.int("FETCH_IDLE_PENDING_SECONDS", default=600)

# --- OAuth2 for the remote mailboxes (issue 16, retrieval/oauth.py) --------------------
# "Connect a Google / Microsoft account" on a mailbox page appears for each provider
# whose client id is set; the redirect URI to register with the provider is
# FETCH_OAUTH_REDIRECT_URI, by default FETCH_BASE_URL + /oauth/callback/.
FETCH_OAUTH_REDIRECT_URI = env.str("FETCH_OAUTH_REDIRECT_URI", default="")
# Seconds before an access token's expiry at which a poll refreshes it first.
FETCH_OAUTH_REFRESH_MARGIN = env.int("FETCH_OAUTH_REFRESH_MARGIN", default=120)
# Seconds a consent may take between "Connect" and the provider's answer.
FETCH_OAUTH_STATE_SECONDS = env.int("FETCH_OAUTH_STATE_SECONDS", default=900)
_ms_tenant = env.str("FETCH_OAUTH_MICROSOFT_TENANT", default="common")
FETCH_OAUTH_PROVIDERS = {
    "google": {
        "label": "Google",
        "client_id": env.str("FETCH_OAUTH_GOOGLE_CLIENT_ID", default=""),
        "client_secret": env_secret("FETCH_OAUTH_GOOGLE_CLIENT_SECRET"),
        "authorize_url": "https://accounts.google.com/o/oauth2/v2/auth",
        "token_url": "https://oauth2.googleapis.com/token",
        "revocation_url": "https://oauth2.googleapis.com/revoke",
        "scopes": ["https://mail.google.com/"],
        # Without these Google sends no refresh token on a second consent.
        "authorize_params": {"access_type": "offline", "prompt": "consent"},
    },
    "microsoft": {
        "label": "Microsoft",
        "client_id": env.str("FETCH_OAUTH_MICROSOFT_CLIENT_ID", default=""),
        "client_secret": env_secret("FETCH_OAUTH_MICROSOFT_CLIENT_SECRET"),
        "authorize_url": f"https://login.microsoftonline.com/{_ms_tenant}/oauth2/v2.0/authorize",
        "token_url": f"https://login.microsoftonline.com/{_ms_tenant}/oauth2/v2.0/token",
        "revocation_url": "",
        "scopes": [
            "https://outlook.office.com/IMAP.AccessAsUser.All",
            "https://outlook.office.com/POP.AccessAsUser.All",
            "offline_access",
        ],
        "authorize_params": {},
    },
    "generic": {
        "label": env.str("FETCH_OAUTH_GENERIC_LABEL", default="OAuth2 provider"),
        "client_id": env.str("FETCH_OAUTH_GENERIC_CLIENT_ID", default=""),
        "client_secret": env_secret("FETCH_OAUTH_GENERIC_CLIENT_SECRET"),
        # Either the endpoints, or an OpenID discovery document that names them.
        "discovery_url": env.str("FETCH_OAUTH_GENERIC_DISCOVERY_URL", default=""),
        "authorize_url": env.str("FETCH_OAUTH_GENERIC_AUTHORIZE_URL", default=""),
        "token_url": env.str("FETCH_OAUTH_GENERIC_TOKEN_URL", default=""),
        "revocation_url": env.str("FETCH_OAUTH_GENERIC_REVOCATION_URL", default=""),
        "scopes": env.list("FETCH_OAUTH_GENERIC_SCOPES", default=[]),
        "authorize_params": {},
    },
}

# --- the REST API (/api/v1/, retrieval/api/) -------------------------------------------
REST_FRAMEWORK = {
    # Token first: an unauthenticated call gets 401 with "WWW-Authenticate: Bearer".
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "retrieval.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "retrieval.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "retrieval.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "SCHEMA_COERCE_PATH_PK": False,  # the routes say {pk}; so does the schema
}
SPECTACULAR_SETTINGS = {
    "TITLE": "fetchweb API",
    "DESCRIPTION": "Mailboxes, polls, connection tests, multidrop rules and rcfiles "
    "of fetchweb. Authenticate with `Authorization: Bearer fw_<prefix>_<secret>` "
    "(a token made on /account/tokens/) or the browser's session.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The mailbox delivered into shares the source's choices (encryption, login).
    "ENUM_NAME_OVERRIDES": {
        "TlsModeEnum": "retrieval.models.Mailbox.TlsMode",
        "AuthEnum": "retrieval.models.Mailbox.Auth",
    },
}
