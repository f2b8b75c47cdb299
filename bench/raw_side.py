"""Raw Celery under test: one `celery worker` running bench/raw_celery.py."""

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench import raw_celery
from bench.measure import Run, Submission
from bench.services import Service, celery_worker, wait_ready

logger = logging.getLogger("bench")


class RawCelery:
    name = "raw Celery"

    def __init__(self, worker: Service) -> None:
        self.worker = worker

    def submit(self, key: str) -> Submission:
        sent = time.time()
        raw_celery.run_command.apply_async((key, "true"), task_id=key)
        return Submission(sent, time.time())

    def finished(self, keys: Sequence[str]) -> list[Run]:
        records = raw_celery.runs.hmget(raw_celery.RUNS_KEY, list(keys))
        return [_run(json.loads(record)) for record in records if record is not None]


@contextmanager
def running(concurrency: int, logs: Path) -> Iterator[RawCelery]:
    """A raw Celery worker on an emptied Redis database, stopped on the way out."""
    logger.info(
        "raw Celery: starting a worker (Redis %s, emptied first)", raw_celery.REDIS_URL
    )
    raw_celery.runs.flushdb()
    env = _environment()
    worker = celery_worker("raw", "bench.raw_celery", concurrency, env, logs)
    try:
        wait_ready(worker)
        yield RawCelery(worker)
    finally:
        worker.stop()
        raw_celery.runs.flushdb()


def _environment() -> dict[str, str]:
    # With DJANGO_SETTINGS_MODULE set, Celery's Django fix-up would load InfiniTrain
    # into the baseline worker and close database connections around every task.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["BENCH_RAW_REDIS_URL"] = raw_celery.REDIS_URL
    return env


def _run(record: dict[str, float]) -> Run:
    return Run(record["started"], record["finished"], record["exit_code"] == 0)
