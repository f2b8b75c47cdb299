"""InfiniTrain settings, read from the environment (12-factor).

Every setting an operator may change is an environment variable; the defaults give a
zero-setup development system: SQLite under var/, Redis on localhost, DEBUG off.
"""

import os
from pathlib import Path

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

# Lets Django's generic classes be subscripted at run time, as the type hints do.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("INFINITRAIN_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # Development only: the check `infinitrain.W001` warns while this key is in use.
    SECRET_KEY = "insecure-development-key-set-DJANGO_SECRET_KEY"  # noqa: S105
ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
    if host.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "jobs",
    "workers_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and the browsable API's static files under gunicorn.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "infinitrain_project.urls"
WSGI_APPLICATION = "infinitrain_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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


def database_config(url: str) -> dict[str, object]:
    config: dict[str, object] = dict(
        dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # Several worker processes write to one file: WAL lets readers run beside the
        # writer, IMMEDIATE transactions take the write lock up front (so a reader never
        # has to upgrade and deadlock), and the timeout waits out a busy writer instead of
        # failing with "database is locked". Persistent connections are kept off because
        # SQLite connections are cheap and must not outlive a thread.
        Path(str(config["NAME"])).parent.mkdir(parents=True, exist_ok=True)
        config["CONN_MAX_AGE"] = 0
        config["OPTIONS"] = {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    return config


DATABASE_URL = os.environ.get(
    "DATABASE_URL", f"sqlite:///{VAR_DIR / 'infinitrain.sqlite3'}"
)
DATABASES = {"default": database_config(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "jobs.pagination.JobPagination",
    "EXCEPTION_HANDLER": "jobs.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# Celery: the broker carries wake-ups only (job id and attempt number); the database is
# the source of truth. See ../shared/DESIGN.md.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT = "infinitrain_project.broker:Transport"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
# A worker whose process dies mid-task must not lose the message; the monitor and the
# fencing token decide whether the redelivered message may still run.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SEND_SENT_EVENT = False
# Task events cost a worker about 3 ms of CPU per job and only Flower reads them; run
# workers with --events (or set this) where Flower is used. Worker events (online,
# heartbeat, offline), which the monitor reads, are sent either way.
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("INFINITRAIN_TASK_EVENTS", False)
# Celery's Django fixup closes every database connection around every task unless
# this is set, which costs a new connection per job (about 10 ms on PostgreSQL). The
# task itself drops broken or expired connections instead (jobs/tasks.py).
CELERY_DB_REUSE_MAX = 1_000_000_000
# A job keeps running while the worker reconnects to Redis: its outcome goes to the
# database, and its message, no longer acknowledgeable, is refused when redelivered.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 5,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 3,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Ten priority lists, one per job priority, read most urgent first.
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
    # A backstop only: lost work is recovered from the database, not by redelivery.
    "visibility_timeout": 3600,
}

# Job execution.
INFINITRAIN = {
    # Bytes of stdout, stderr or HTTP body kept per attempt (the tail is kept).
    "OUTPUT_LIMIT": int(env_float("INFINITRAIN_OUTPUT_LIMIT", 64 * 1024)),
    # Seconds between SIGTERM and SIGKILL when a job's process group is stopped.
    "KILL_GRACE": env_float("INFINITRAIN_KILL_GRACE", 5.0),
    # Timeout of a job that does not name one, in seconds.
    "DEFAULT_TIMEOUT": env_float("INFINITRAIN_DEFAULT_TIMEOUT", 3600.0),
    # Retry backoff: base * 2**(attempt-1), capped, with full jitter on the upper half.
    "RETRY_BACKOFF_BASE": env_float("INFINITRAIN_RETRY_BACKOFF_BASE", 1.0),
    "RETRY_BACKOFF_MAX": env_float("INFINITRAIN_RETRY_BACKOFF_MAX", 300.0),
    # Seconds between a worker's heartbeats, and how many missed beats make it lost.
    "HEARTBEAT_INTERVAL": env_float("INFINITRAIN_HEARTBEAT_INTERVAL", 1.0),
    "HEARTBEAT_MISSES": int(env_float("INFINITRAIN_HEARTBEAT_MISSES", 3)),
    # A worker checks that it still takes messages by sending itself a canary every
    # CANARY_INTERVAL seconds; one not taken within CANARY_TIMEOUT, while the worker
    # had a free slot and took nothing else, means it has stopped consuming.
    "CANARY_INTERVAL": env_float("INFINITRAIN_CANARY_INTERVAL", 5.0),
    "CANARY_TIMEOUT": env_float("INFINITRAIN_CANARY_TIMEOUT", 10.0),
    # How often the monitor looks for lost workers, in seconds.
    "MONITOR_INTERVAL": env_float("INFINITRAIN_MONITOR_INTERVAL", 0.5),
    # How often the monitor looks for queued jobs whose message is gone, and how long
    # a job must have been waiting before its message counts as gone.
    "RECONCILE_INTERVAL": env_float("INFINITRAIN_RECONCILE_INTERVAL", 5.0),
    "RECONCILE_GRACE": env_float("INFINITRAIN_RECONCILE_GRACE", 10.0),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}

if not DEBUG and env_bool("INFINITRAIN_SECURE_COOKIES", False):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
