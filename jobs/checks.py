"""System checks: risky settings are reported where an operator will see them."""

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security, deploy=True)
def check_secret_key(
    app_configs: Any = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    if "insecure-development-key" not in settings.SECRET_KEY:
        return []
    return [
        checks.Warning(
            "DJANGO_SECRET_KEY is not set; a development key signs sessions.",
            hint="Set DJANGO_SECRET_KEY to a long random string in production.",
            id="infinitrain.W001",
        )
    ]


@checks.register(checks.Tags.database, deploy=True)
def check_database(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        return []
    return [
        checks.Warning(
            "SQLite is the zero-setup default and suits one host only.",
            hint="Set DATABASE_URL to a PostgreSQL database when workers run on "
            "several hosts or under sustained load.",
            id="infinitrain.W002",
        )
    ]
