"""The baseline: a bare Celery app doing InfiniTrain's work without InfiniTrain.

It has the settings of InfiniTrain's that change how a message travels (JSON, late
acknowledgement, prefetch of one; the worker runs a thread pool of the same size), runs
the command the way a job runs it, output captured, and records when it started and
finished in a Redis hash, the way InfiniTrain records an attempt in its database.
What it leaves out -- validation, the database, fencing, process groups, heartbeats,
events -- is what the comparison prices.
"""

import json
import os
import subprocess
import time

import redis
from celery import Celery

REDIS_URL = os.environ.get("BENCH_RAW_REDIS_URL", "redis://127.0.0.1:6379/13")
RUNS_KEY = "bench:runs"

app = Celery("raw_bench", broker=REDIS_URL)
app.conf.update(
    accept_content=["json"],
    task_serializer="json",
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_ignore_result=True,
    task_default_queue="default",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)

# Thread-safe: redis-py hands each worker thread a pooled connection.
runs = redis.Redis.from_url(REDIS_URL)


@app.task(name="bench.run_command")
def run_command(key: str, command: str) -> None:
    """Run `command` with /bin/sh; record its start, finish and exit code under `key`."""
    started = time.time()
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, check=False)
    record = {"started": started, "finished": time.time(), "exit_code": done.returncode}
    runs.hset(RUNS_KEY, key, json.dumps(record))
