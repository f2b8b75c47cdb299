"""`manage.py runlocal`: the whole system on one machine, for trying InfiniTrain out.

Starts Redis if needed, migrates the database, makes sure an admin user and its API
token exist, then runs the API (gunicorn on 127.0.0.1:8080), a worker and the monitor
until Ctrl-C.
"""

import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rest_framework.authtoken.models import Token

from infinitrain_project.localredis import RedisUnavailable, ensure_redis


class Command(BaseCommand):
    help = "Run the API, a worker and a monitor locally, with an admin user and token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8080")
        parser.add_argument("--concurrency", type=int, default=8)

    def handle(self, *args: Any, **options: Any) -> None:
        settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
        try:
            ensure_redis(settings.REDIS_URL, settings.VAR_DIR / "redis")
        except RedisUnavailable as error:
            raise CommandError(str(error)) from None
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        password, token = self._admin()
        processes = self._start(options["bind"], options["concurrency"])
        self._banner(options["bind"], password, token)
        self._supervise(processes)

    def _admin(self) -> tuple[str | None, str]:
        """Create the admin user on first run; return its new password (or None) and token."""
        User = get_user_model()
        admin = User.objects.filter(username="admin").first()
        password = None
        if admin is None:
            password = secrets.token_urlsafe(12)
            admin = User.objects.create_superuser("admin", password=password)
        token, _ = Token.objects.get_or_create(user=admin)
        return password, token.key

    def _start(self, bind: str, concurrency: int) -> list[subprocess.Popen[bytes]]:
        python = sys.executable
        commands = [
            [python, "-m", "gunicorn", "infinitrain_project.wsgi", "--bind", bind,
             "--workers", "2", "--threads", "4", "--access-logfile", "-"],
            [python, "-m", "celery", "-A", "infinitrain_project", "worker",
             "--pool", "threads", "--concurrency", str(concurrency),
             "--hostname", "local@%h", "--without-mingle", "--without-gossip",
             "--loglevel", "INFO"],
            [python, "manage.py", "monitor"],
        ]  # fmt: skip
        return [
            subprocess.Popen(command, env=os.environ.copy()) for command in commands
        ]

    def _banner(self, bind: str, password: str | None, token: str) -> None:
        url = f"http://{bind}"
        login = (
            f"admin / {password}  (shown once; change it with manage.py changepassword)"
            if password
            else "admin (password set on first run; manage.py changepassword admin)"
        )
        self.stdout.write(
            f"\nInfiniTrain is running.\n"
            f"  API:        {url}/api/v1/jobs   (browsable; admin at {url}/admin/)\n"
            f"  Login:      {login}\n"
            f"  API token:  {token}\n\n"
            f"Try it:\n"
            f"  curl -s -H 'Authorization: Token {token}' -H 'Content-Type: application/json' \\\n"
            f'    -d \'{{"type": "command", "command": "echo Hello World"}}\' {url}/api/v1/jobs\n'
            f"  curl -s -H 'Authorization: Token {token}' {url}/api/v1/jobs\n\n"
            f"Press Ctrl-C to stop.\n"
        )

    def _supervise(self, processes: list[subprocess.Popen[bytes]]) -> None:
        """Wait until Ctrl-C or until a process dies, then stop them all."""
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.2)
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait()
        if not stopping:
            raise CommandError(
                "A process of the local system exited; see its log above."
            )
