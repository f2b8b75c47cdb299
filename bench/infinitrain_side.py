"""InfiniTrain under test: the API under gunicorn and one worker, on their own database.

Jobs go in over HTTP like any client's; the bench reads their attempts back from the
database with the Django ORM, so waiting for them puts no load on the API.
"""

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import psycopg
import redis
import requests
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bench.measure import Run, Submission
from bench.services import (
    READY_SECONDS,
    ROOT,
    BenchError,
    Service,
    celery_worker,
    free_port,
    start,
    wait_ready,
    wait_until,
)

logger = logging.getLogger("bench")

# Database 14 is the bench's own: it is emptied at the start. 0 is the default of a
# development system and 15 the test suite's.
REDIS_URL = "redis://127.0.0.1:6379/14"
USERNAME = "bench"


class InfiniTrain:
    name = "InfiniTrain"

    def __init__(self, worker: Service, api: Service, api_url: str, token: str) -> None:
        self.worker = worker
        self.api = api
        self.jobs_url = f"{api_url}/api/v1/jobs"
        self._token = token
        # requests.Session is not thread-safe: each submitting thread keeps its own.
        self._local = threading.local()

    def submit(self, key: str) -> Submission:
        session = self._session()
        job = {"id": key, "type": "command", "command": "true"}

        sent = time.time()
        response = session.post(self.jobs_url, json=job, timeout=30)
        answered = time.time()

        if response.status_code != 201:
            # A 500 says nothing more with DEBUG off; the traceback is in the log.
            raise BenchError(
                f"InfiniTrain refused job {key}: {response.status_code} "
                f"{response.text[:500]}\nThe end of the API's log:\n"
                f"{self.api.output()[-3000:]}"
            )
        return Submission(sent, answered)

    def finished(self, keys: Sequence[str]) -> list[Run]:
        from jobs.models import Attempt, Outcome

        attempts = Attempt.objects.filter(
            job_id__in=keys, number=1, finished_at__isnull=False
        ).values_list("started_at", "finished_at", "outcome")
        return [
            _run(started, finished, outcome == Outcome.SUCCEEDED)
            for started, finished, outcome in attempts
        ]

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["Authorization"] = f"Token {self._token}"
            self._local.session = session
        return session


@contextmanager
def running(database_url: str, concurrency: int, logs: Path) -> Iterator[InfiniTrain]:
    """The API, a worker and the monitor on a migrated database, stopped on the way out.

    Sets DATABASE_URL, REDIS_URL and DJANGO_SETTINGS_MODULE in this process too and
    sets Django up with them, so the bench can read the jobs back: use it once per
    process.
    """
    env = _environment(database_url)
    redis.Redis.from_url(REDIS_URL).flushdb()
    _create_database(database_url)
    logger.info(
        "InfiniTrain: migrating %s, starting the API and a worker (Redis %s, "
        "emptied first)",
        _safe(database_url),
        REDIS_URL,
    )
    _migrate(env)
    token = _token(env)

    with ExitStack() as stack:
        # Callbacks run last first: the processes stop, then their Redis is emptied.
        stack.callback(redis.Redis.from_url(REDIS_URL).flushdb)
        worker = celery_worker(
            "infinitrain", "infinitrain_project", concurrency, env, logs
        )
        stack.callback(worker.stop)
        port = free_port()
        api = start("gunicorn", _gunicorn(port), env, logs)
        stack.callback(api.stop)
        # The monitor is part of the system as users run it: its queries count.
        monitor = start("monitor", [sys.executable, "manage.py", "monitor"], env, logs)
        stack.callback(monitor.stop)

        wait_ready(worker)
        api_url = f"http://127.0.0.1:{port}"
        _wait_healthy(api_url, api, worker)
        yield InfiniTrain(worker, api, api_url, token)


def _run(started: datetime, finished: datetime | None, succeeded: bool) -> Run:
    assert finished is not None  # the query asks for finished attempts only
    return Run(started.timestamp(), finished.timestamp(), succeeded)


def _environment(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "infinitrain_project.settings",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LOG_LEVEL": "INFO",
    }


def _create_database(database_url: str) -> None:
    """Create the PostgreSQL database named in the URL if it does not exist."""
    config = dj_database_url.parse(database_url)
    if config["ENGINE"] != "django.db.backends.postgresql":
        return
    # The maintenance database: the one named in the URL may not exist yet.
    server = make_conninfo(
        dbname="postgres",
        user=config.get("USER") or None,
        password=config.get("PASSWORD") or None,
        host=config.get("HOST") or None,
        port=config.get("PORT") or None,
    )
    try:
        connection = psycopg.connect(server, autocommit=True)
    except psycopg.OperationalError as error:
        raise BenchError(
            f"cannot reach PostgreSQL for {_safe(database_url)}: {error}\n"
            "Start it, or unset DATABASE_URL to benchmark on SQLite."
        ) from None

    with connection:
        name = config["NAME"]
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [name]
        ).fetchone()
        if not exists:
            logger.info("InfiniTrain: creating PostgreSQL database %s", name)
            connection.execute(
                sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            )


def _migrate(env: dict[str, str]) -> None:
    command = [sys.executable, "manage.py", "migrate", "--verbosity", "0"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise BenchError(f"manage.py migrate failed:\n{done.stdout}{done.stderr}")


def _token(env: dict[str, str]) -> str:
    """Set Django up in this process with `env` and return the bench user's token."""
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    user, _ = User.objects.get_or_create(username=USERNAME)
    token, _ = Token.objects.get_or_create(user=user)
    return str(token.key)


def _gunicorn(port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "infinitrain_project.wsgi",
        "--bind", f"127.0.0.1:{port}", "--workers", "2", "--threads", "4",
    ]  # fmt: skip


def _wait_healthy(api_url: str, api: Service, worker: Service) -> None:
    """Wait until /health answers 200 and counts the worker as live."""
    last_answer = "nothing"

    def healthy() -> bool:
        nonlocal last_answer
        try:
            response = requests.get(f"{api_url}/api/v1/health", timeout=5)
        except requests.ConnectionError:
            return False
        last_answer = f"{response.status_code} {response.text[:300]}"
        return response.status_code == 200 and response.json()["live_workers"] > 0

    try:
        wait_until(healthy, READY_SECONDS, "the API's /health", [api, worker], 0.1)
    except BenchError as error:
        raise BenchError(
            f"{error}; it last answered {last_answer}. The end of the API's log:\n"
            f"{api.output()[-3000:]}"
        ) from None


def _safe(database_url: str) -> str:
    """The URL without its password, for the log."""
    parts = urlsplit(database_url)
    if parts.password is None:
        return database_url
    return parts._replace(netloc=parts.netloc.replace(parts.password, "***")).geturl()
