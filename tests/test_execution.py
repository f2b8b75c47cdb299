"""End to end: jobs submitted over HTTP run on real worker processes to one final state."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis

from jobs.dispatch import publish

from .conftest import Api, WorkerFleet, WorkerProcess, survivors, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server standing in for a webhook; records what it receives."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append({"path": self.path, "body": self.rfile.read(length)})
            payload = b'{"accepted": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_seed_examples_run_to_success_with_outputs(
    api: Api, default_workers: list[WorkerProcess], webhook: Any
) -> None:
    base_url, received = webhook
    command = api.submit(
        id="job-123",
        type="command",
        command="echo 'Hello World'",
        timeout="5m",
        retries=3,
        priority=1,
        tags=["example", "test"],
    )
    script = api.submit(
        type="script", script="#!/bin/bash\necho 'Running script'\ndate"
    )
    http = api.submit(type="http", url=f"{base_url}/webhook", method="POST")

    assert command["id"] == "job-123"
    assert command["timeout"] == 300
    assert command["status"] == "queued"

    done = api.wait_final("job-123")
    assert done["status"] == "succeeded"
    assert done["result"]["exit_code"] == 0
    assert done["result"]["stdout"] == "Hello World\n"
    assert done["attempts_made"] == 1
    assert done["worker"] in {a["worker"] for a in done["attempts"]}
    assert done["started_at"] and done["finished_at"]

    done = api.wait_final(script["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["stdout"].startswith("Running script\n")
    assert len(done["result"]["stdout"].splitlines()) == 2  # and the date

    done = api.wait_final(http["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["status_code"] == 200
    assert json.loads(done["result"]["body"]) == {"accepted": True}
    assert done["result"]["headers"]["Content-Type"] == "application/json"
    assert [r["path"] for r in received] == ["/webhook"]


def test_failing_command_is_retried_until_its_attempts_run_out(
    api: Api, default_workers: list[WorkerProcess]
) -> None:
    job = api.submit(type="command", command="echo trying; exit 1", retries=2)

    done = api.wait_final(job["id"])

    assert done["status"] == "failed"
    assert done["attempts_made"] == 3
    assert [a["number"] for a in done["attempts"]] == [1, 2, 3]
    assert {a["outcome"] for a in done["attempts"]} == {"failed"}
    assert done["error"] == "exit code 1"
    assert done["result"]["exit_code"] == 1
    assert done["result"]["stdout"] == "trying\n"


def test_command_that_fails_once_then_succeeds_on_its_retry(
    api: Api, default_workers: list[WorkerProcess], tmp_path: Path
) -> None:
    marker = tmp_path / "failed-once"
    job = api.submit(
        type="command",
        command=f"if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi",
        retries=3,
    )

    done = api.wait_final(job["id"])

    assert done["status"] == "succeeded"
    assert done["attempts_made"] == 2
    assert [a["outcome"] for a in done["attempts"]] == ["failed", "succeeded"]
    assert done["error"] == ""
    assert done["result"]["stdout"] == "ok\n"


def test_timed_out_job_fails_and_leaves_no_process_behind(
    api: Api, default_workers: list[WorkerProcess]
) -> None:
    marker = f"600.{uuid.uuid4().int % 10**9}"
    job = api.submit(
        type="command", command=f"sh -c 'sleep {marker} & sleep {marker}'", timeout="2s"
    )
    wait_for(lambda: survivors(marker), 20, "the job's processes to start")
    started = time.monotonic()

    done = api.wait_final(job["id"], timeout=30)

    assert done["status"] == "failed"
    assert done["attempts_made"] == 1
    assert done["attempts"][0]["outcome"] == "timed_out"
    assert "timed out after 2s" in done["error"]
    assert time.monotonic() - started < 10
    assert survivors(marker) == []


def test_150_concurrent_jobs_spread_over_5_workers_each_run_once(
    api: Api, default_workers: list[WorkerProcess]
) -> None:
    ids = [api.submit(type="command", command="sleep 2")["id"] for _ in range(150)]

    finished = [api.wait_final(job_id, timeout=120) for job_id in ids]

    assert {job["status"] for job in finished} == {"succeeded"}
    assert all(len(job["attempts"]) == 1 for job in finished)
    used = {job["attempts"][0]["worker"].split("@")[0] for job in finished}
    assert used == {w.name for w in default_workers}


def test_the_same_message_delivered_twice_runs_the_job_once(
    api: Api,
    default_workers: list[WorkerProcess],
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs"
    job = api.submit(type="command", command=f"echo ran >> {runs}; sleep 0.5")
    for _ in range(2):
        publish(job["id"], 1, priority=0, queue="default")

    done = api.wait_final(job["id"])
    # Every copy of the message has been taken and acknowledged by now.
    wait_for(lambda: _queue_drained(redis_client), 20, "the duplicates to be consumed")

    assert done["status"] == "succeeded"
    assert done["attempts_made"] == 1
    assert runs.read_text() == "ran\n"


def _queue_drained(client: redis.Redis) -> bool:
    queued = sum(int(client.llen(key)) for key in client.scan_iter("default*"))
    return queued == 0 and int(client.hlen("unacked")) == 0


@pytest.fixture
def single_slot_worker(fleet: WorkerFleet) -> Iterator[WorkerProcess]:
    worker = fleet.start("prio", queue="prio", concurrency=1)
    fleet.wait_ready(worker)
    yield worker
    worker.stop()


def test_priority_9_job_overtakes_twenty_waiting_priority_0_jobs(
    api: Api, single_slot_worker: WorkerProcess, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    blocker = api.submit(
        type="command",
        queue="prio",
        command=f"while [ ! -e {release} ]; do sleep 0.05; done",
    )
    wait_for(lambda: api.job(blocker["id"])["status"] == "running", 30, "the blocker")
    low = [api.submit(type="command", queue="prio", command="true") for _ in range(20)]
    urgent = api.submit(type="command", queue="prio", command="true", priority=9)
    release.touch()

    urgent_done = api.wait_final(urgent["id"])
    low_done = [api.wait_final(job["id"]) for job in low]

    urgent_start = started(urgent_done)
    assert all(urgent_start < started(job) for job in low_done)


def started(job: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(job["attempts"][0]["started_at"])
