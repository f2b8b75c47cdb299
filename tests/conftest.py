"""Fixtures for tests that run the whole system: real Redis, real `celery worker`
processes, the API served over HTTP by pytest-django's live server.

The suite runs against a redis-server of its own (append-only file on, a free port),
started when this module loads, so that reliability tests can restart it. Set
INFINITRAIN_TEST_REDIS_URL to use an existing Redis instead (its database is
emptied); the tests that restart Redis are then skipped.

pytest-celery's own worker fixtures run workers in Docker containers, which this
suite does not require; its workers are plain `celery worker` processes started here
against the test database and a test-only Redis database.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection

from infinitrain_project.celery import app

from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent

# Worker settings that make failure paths quick to test.
WORKER_ENV = {
    "INFINITRAIN_KILL_GRACE": "1",
    "INFINITRAIN_RETRY_BACKOFF_BASE": "0.2",
    "INFINITRAIN_RETRY_BACKOFF_MAX": "1",
    "INFINITRAIN_HEARTBEAT_INTERVAL": "1",
    "INFINITRAIN_RECONCILE_GRACE": "2",
    "INFINITRAIN_RECONCILE_INTERVAL": "1",
    "LOG_LEVEL": "INFO",
}


REDIS: RedisServer | None = None
if not os.environ.get("INFINITRAIN_TEST_REDIS_URL"):
    # Django's settings are loaded by now, but Celery reads its configuration lazily,
    # on first use, so pointing the settings at the new server is enough.
    REDIS = RedisServer()
    REDIS.start()
    settings.REDIS_URL = settings.CELERY_BROKER_URL = REDIS.url
    assert app.conf.broker_url == REDIS.url, "Celery read its broker URL too early"


def pytest_unconfigure(config: pytest.Config) -> None:
    if REDIS is not None:
        REDIS.close()


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_database_url() -> str:
    """A DATABASE_URL naming the test database pytest-django created."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class WorkerFleet:
    """Starts `celery worker` processes and stops them all at the end."""

    log_dir: Path
    database_url: str
    workers: list[WorkerProcess] = field(default_factory=list)

    def start(
        self, name: str, queue: str = "default", concurrency: int = 4, **env: str
    ) -> WorkerProcess:
        """Start a `celery worker` named `name`@host consuming `queue` (comma-separated)."""
        command = [
            sys.executable, "-m", "celery", "-A", "infinitrain_project", "worker",
            "--pool", "threads", "--concurrency", str(concurrency), "--queues", queue,
            "--hostname", f"{name}@%h", "--events", "--without-mingle",
            "--without-gossip", "--loglevel", "INFO",
        ]  # fmt: skip
        return self._spawn(name, command, env)

    def start_monitor(self, name: str = "monitor", **env: str) -> WorkerProcess:
        monitor = self._spawn(name, [sys.executable, "manage.py", "monitor"], env)
        wait_for(lambda: "Monitor: started" in monitor.output(), 60, f"{name} to start")
        return monitor

    def _spawn(
        self, name: str, command: list[str], env: dict[str, str]
    ) -> WorkerProcess:
        log = self.log_dir / f"{name}.log"
        environment = {
            **os.environ,
            **WORKER_ENV,
            "DJANGO_SETTINGS_MODULE": "infinitrain_project.settings",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": settings.REDIS_URL,
            **env,
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT
            )
        worker = WorkerProcess(name, process, log)
        self.workers.append(worker)
        return worker

    def wait_ready(self, *workers: WorkerProcess, timeout: float = 60) -> None:
        """Wait until each worker consumes, as its own log line "ready." says."""
        for worker in workers:
            wait_for(
                lambda w=worker: _ready(w),  # type: ignore[misc]
                timeout,
                f"worker {worker.name} to start",
            )

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()


def _ready(worker: WorkerProcess) -> bool:
    if worker.process.poll() is not None:
        pytest.fail(f"worker {worker.name} exited:\n{worker.output()[-3000:]}")
    return " ready." in worker.output()


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def fleet(
    django_db_setup: None,
    django_db_blocker: Any,
    redis_client: redis.Redis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerFleet]:
    with django_db_blocker.unblock():
        url = test_database_url()
    fleet = WorkerFleet(tmp_path_factory.mktemp("workers"), url)
    yield fleet
    fleet.stop_all()


@pytest.fixture(scope="session")
def default_workers(fleet: WorkerFleet) -> list[WorkerProcess]:
    """Five workers on the default queue, shared by the end-to-end tests.

    Each also consumes a queue of its own, `only-wN`, so a test can reach each one.
    """
    workers = [
        fleet.start(f"w{n}", queue=f"default,only-w{n}", concurrency=30)
        for n in range(1, 6)
    ]
    fleet.wait_ready(*workers)
    return workers


@pytest.fixture(scope="session")
def monitor(fleet: WorkerFleet) -> WorkerProcess:
    """A `manage.py monitor` shared by the tests that need one."""
    return fleet.start_monitor()


class Api:
    """A client of the API served over HTTP, authenticated with a user's token."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base = f"{base_url}/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def submit(self, **job: Any) -> dict[str, Any]:
        response = self.session.post(f"{self.base}/jobs", json=job, timeout=10)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.session.get(f"{self.base}/jobs/{job_id}", timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_final(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            job = self.job(job_id)
            return (
                job if job["status"] in ("succeeded", "failed", "cancelled") else None
            )

        return dict(wait_for(final, timeout, f"job {job_id} to finish"))


@pytest.fixture
def api(live_server: Any, django_user_model: Any) -> Api:
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_user("alice", password="pw-alice-123")
    token = Token.objects.create(user=user)
    return Api(live_server.url, token.key)


def survivors(marker: str) -> list[int]:
    """Pids of processes whose command line contains `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids
