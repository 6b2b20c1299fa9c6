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


DEV_SECRET_KEY = "dev-insecure-fetchweb-secret-key-change-me"

DEBUG = env_bool("DEBUG", default=True)
SECRET_KEY = env_secret("SECRET_KEY", DEV_SECRET_KEY)
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
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
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
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
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

# Remote mailbox passwords are encrypted with these keys (comma-separated, the first
# encrypts, all decrypt; see `manage.py rotate_secrets`). Empty: derived from
# SECRET_KEY, which the deploy checks refuse.
FIELD_ENCRYPTION_KEYS = [k for k in env_secret("FIELD_ENCRYPTION_KEYS").split(",") if k]

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
CELERY_TASK_IGNORE_RESULT = True
# Connection tests run on a queue of their own, served by a worker that runs no
# polls (bin/run, docker-compose.yml): see retrieval.tasks.probe_connection.
CELERY_TASK_ROUTES = {"retrieval.tasks.probe_connection": {"queue": "interactive"}}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
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
# "Poll now" and "Test connection" are rate-limited in the cache: one count for
# every web process through Redis when there is one, per process otherwise.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }

CELERY_BEAT_SCHEDULE = {
    "dispatch-due-polls": {
        "task": "retrieval.tasks.dispatch_due_polls",
        "schedule": FETCH_DISPATCH_INTERVAL,
        # A stalled broker must not replay a burst of dispatches later.
        "options": {"expires": max(FETCH_DISPATCH_INTERVAL - 1, 1)},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
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
}
