from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from infinitrain_project.localredis import RedisUnavailable, ensure_redis


class Command(BaseCommand):
    help = "Check that Redis answers; start a local redis-server if none does."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default=settings.REDIS_URL)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            how = ensure_redis(options["url"], settings.VAR_DIR / "redis")
        except RedisUnavailable as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Redis at {options['url']}: {how}")
