"""Settings for the test suite: the project's settings, pointed at test-only services.

The suite empties its Redis database, so it never uses REDIS_URL: it takes
INFINITRAIN_TEST_REDIS_URL, which the plugin tests/redis_server.py sets to a
redis-server of the test run's own (default: database 15 of the local Redis).
"""

import os

from .settings import *  # noqa: F403
from .settings import DATABASES, VAR_DIR

REDIS_URL = os.environ.get("INFINITRAIN_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_BROKER_URL = REDIS_URL

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Worker processes must open the test database too, so it is a file, not memory.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
