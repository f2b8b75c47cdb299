"""Workers that die, stop, or lose their broker: every job still ends exactly once.

Real `celery worker` and `manage.py monitor` processes, real signals (kill -9,
SIGSTOP), default heartbeat settings but a 1 s beat (a loss threshold of 3 s).
"""

import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from django.db import connection

from infinitrain_project.celery import app
from jobs.models import Job

from . import conftest
from .conftest import Api, WorkerFleet, WorkerProcess, survivors, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FINAL = {"succeeded", "failed", "cancelled"}


def marker() -> str:
    """A unique sleep length, to find a job's processes by their command line."""
    return f"600.{uuid.uuid4().int % 10**9}"


def first_attempt_sleeps(mark: str) -> str:
    """A command whose first attempt sleeps 'forever' and whose later ones succeed."""
    return (
        f'if [ "$INFINITRAIN_ATTEMPT" = 1 ]; then sleep {mark}; '
        'else echo "attempt $INFINITRAIN_ATTEMPT"; fi'
    )


def worker_named(workers: list[WorkerProcess], job: dict[str, Any]) -> WorkerProcess:
    name = job["worker"].split("@")[0]
    return next(w for w in workers if w.name == name)


def children_of(pid: int, mark: str) -> list[int]:
    return [p for p in survivors(mark) if _parent(p) == pid]


def _parent(pid: int) -> int:
    try:
        stat = open(f"/proc/{pid}/stat", "rb").read()  # noqa: SIM115
    except OSError:
        return -1
    return int(stat.rpartition(b")")[2].split()[1])


def priority_lists(queue: str) -> list[str]:
    """The Redis lists of a queue: one per priority (see CELERY_BROKER_TRANSPORT_OPTIONS)."""
    return [queue] + [f"{queue}:{p}" for p in range(1, 10)]


def queued(client: redis.Redis, queue: str) -> int:
    return sum(int(client.llen(key)) for key in priority_lists(queue))


@pytest.fixture
def pair(fleet: WorkerFleet, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Two workers on a queue of this test's own; stopped (or continued) afterwards."""
    queue = f"q-{request.node.name[:40]}"
    workers = [fleet.start(f"{queue}-{n}", queue=queue, concurrency=2) for n in (1, 2)]
    fleet.wait_ready(*workers)
    yield queue, workers
    for worker in workers:
        if worker.process.poll() is None:
            os.kill(worker.process.pid, signal.SIGCONT)
        worker.stop()


def worker_record(api: Api, name: str) -> dict[str, Any]:
    response = api.session.get(f"{api.base}/workers/{name}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def start_on_pair(
    api: Api, pair: Any, mark: str, retries: int
) -> tuple[dict[str, Any], dict[str, Any], WorkerProcess]:
    """Submit a first-attempt-sleeps job to the pair; return it, running, and its worker."""
    queue, workers = pair
    job = api.submit(
        type="command", command=first_attempt_sleeps(mark), retries=retries, queue=queue
    )
    running = wait_for(
        lambda: (j := api.job(job["id"]))["status"] == "running" and j, 30, "start"
    )
    worker = worker_named(workers, running)
    wait_for(lambda: children_of(worker.process.pid, mark), 10, "the job's process")
    return job, running, worker


def test_killed_worker_is_lost_and_its_job_runs_again_elsewhere_once(
    api: Api, monitor: WorkerProcess, pair: Any
) -> None:
    mark = marker()
    job, running, victim = start_on_pair(api, pair, mark, retries=2)
    registry = worker_record(api, running["worker"])
    assert registry["status"] == "online"
    assert registry["queues"] == [pair[0]]
    assert registry["pid"] == victim.process.pid
    assert [a["job"] for a in registry["running_attempts"]] == [job["id"]]

    killed_at = time.monotonic()
    victim.process.send_signal(signal.SIGKILL)
    wait_for(lambda: api.job(job["id"])["attempts_made"] == 2, 15, "the second attempt")
    recovered_in = time.monotonic() - killed_at
    print(f"kill -9 to the job's next attempt: {recovered_in:.2f}s")

    done = api.wait_final(job["id"])
    assert recovered_in < 10
    assert done["status"] == "succeeded"
    assert [a["outcome"] for a in done["attempts"]] == ["worker_lost", "succeeded"]
    assert done["attempts"][0]["error"].startswith("worker lost")
    assert done["attempts"][1]["worker"] != running["worker"]
    assert done["result"]["stdout"] == "attempt 2\n"
    # The dead worker's reaper ended the first attempt's process.
    wait_for(lambda: not survivors(mark), 5, "the dead worker's job process to end")
    assert worker_record(api, running["worker"])["status"] == "lost"


def test_stopped_worker_comes_back_to_find_its_attempt_taken_and_killed(
    api: Api, monitor: WorkerProcess, pair: Any
) -> None:
    mark = marker()
    job, running, frozen = start_on_pair(api, pair, mark, retries=1)

    os.kill(frozen.process.pid, signal.SIGSTOP)
    done = api.wait_final(job["id"], timeout=30)
    assert children_of(frozen.process.pid, mark)  # still running while frozen
    os.kill(frozen.process.pid, signal.SIGCONT)

    wait_for(
        lambda: not survivors(mark), 10, "the taken attempt's process to be killed"
    )
    wait_for(lambda: "result discarded" in frozen.output(), 10, "the late result")
    after = api.job(job["id"])
    assert done["status"] == after["status"] == "succeeded"
    assert after["attempts_made"] == 2
    assert [a["outcome"] for a in after["attempts"]] == ["worker_lost", "succeeded"]
    assert after["result"]["stdout"] == "attempt 2\n"
    wait_for(
        lambda: (
            api.session.get(f"{api.base}/workers/{running['worker']}").json()["status"]
            == "online"
        ),
        10,
        "the worker to come back online",
    )


def test_poison_job_that_kills_its_worker_stops_at_its_attempt_limit(
    api: Api, monitor: WorkerProcess, fleet: WorkerFleet
) -> None:
    workers = [
        fleet.start(f"poison-{n}", queue="poison", concurrency=1) for n in (1, 2, 3)
    ]
    fleet.wait_ready(*workers)
    job = api.submit(type="command", command="kill -9 $PPID", retries=2, queue="poison")

    done = api.wait_final(job["id"], timeout=60)

    assert done["status"] == "failed"
    assert done["attempts_made"] == 3
    assert [a["outcome"] for a in done["attempts"]] == ["worker_lost"] * 3
    assert done["error"].startswith("worker lost")
    assert len({a["worker"] for a in done["attempts"]}) == 3
    assert all(w.process.poll() is not None for w in workers)


def test_cancel_kills_a_running_command_and_a_script_with_children(
    api: Api, default_workers: list[WorkerProcess]
) -> None:
    command_mark, script_mark = marker(), marker()
    jobs = [
        api.submit(type="command", command=f"sleep {command_mark}", retries=3),
        api.submit(
            type="script",
            script=f"#!/bin/sh\nsleep {script_mark} &\nsleep {script_mark} &\nwait\n",
            retries=3,
        ),
    ]
    wait_for(lambda: survivors(command_mark), 20, "the command to start")
    wait_for(lambda: len(survivors(script_mark)) == 2, 20, "the script's children")

    for job in jobs:
        response = api.session.post(f"{api.base}/jobs/{job['id']}/cancel", timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
    cancelled_at = time.monotonic()
    wait_for(
        lambda: not survivors(command_mark) and not survivors(script_mark),
        2,
        "every process of the cancelled jobs to end",
    )
    print(f"cancel to no process left: {time.monotonic() - cancelled_at:.2f}s")

    logs = lambda: "".join(w.output() for w in default_workers)  # noqa: E731
    for job in jobs:
        # The worker stopped the attempt and dropped its result; nothing else follows.
        wait_for(
            lambda j=job: f"Job {j['id']} attempt 1: lease was taken" in logs(), 10
        )
        after = api.job(job["id"])
        assert after["status"] == "cancelled"
        assert after["attempts_made"] == 1
        assert after["attempts"][0]["outcome"] == "cancelled"


def test_cancelled_queued_job_never_starts(
    api: Api, fleet: WorkerFleet, redis_client: redis.Redis
) -> None:
    job = api.submit(type="command", command="echo ran", queue="late")

    response = api.session.post(f"{api.base}/jobs/{job['id']}/cancel", timeout=10)
    late = fleet.start("late", queue="late", concurrency=1)
    fleet.wait_ready(late)
    wait_for(lambda: queued(redis_client, "late") == 0, 10, "the message to be taken")
    wait_for(lambda: "not claimable" in late.output(), 10, "the message to be dropped")
    late.stop()
    # A clean shutdown marks the worker offline at once, not lost later.
    assert _worker_name(api, "late@") is not None
    assert worker_record(api, str(_worker_name(api, "late@")))["status"] == "offline"

    assert response.status_code == 200
    after = api.job(job["id"])
    assert after["status"] == "cancelled"
    assert after["attempts_made"] == 0


def test_cancelling_a_finished_job_is_a_409_that_says_why(
    api: Api, default_workers: list[WorkerProcess]
) -> None:
    job = api.submit(type="command", command="true")
    api.wait_final(job["id"])

    response = api.session.post(f"{api.base}/jobs/{job['id']}/cancel", timeout=10)

    assert response.status_code == 409
    assert "is succeeded" in response.json()["detail"]
    assert "can be cancelled" in response.json()["detail"]
    missing = api.session.post(f"{api.base}/jobs/nope/cancel", timeout=10)
    assert missing.status_code == 404


def test_failed_job_runs_again_on_request_with_its_retry_policy(
    api: Api, default_workers: list[WorkerProcess], tmp_path: Any
) -> None:
    flag = tmp_path / "fixed"
    job = api.submit(type="command", command=f"test -e {flag}", retries=1)
    assert api.wait_final(job["id"])["attempts_made"] == 2
    flag.touch()

    response = api.session.post(f"{api.base}/jobs/{job['id']}/retry", timeout=10)
    done = api.wait_final(job["id"])

    assert response.status_code == 200
    assert done["status"] == "succeeded"
    assert [a["outcome"] for a in done["attempts"]] == ["failed", "failed", "succeeded"]
    again = api.session.post(f"{api.base}/jobs/{job['id']}/retry", timeout=10)
    assert again.status_code == 409
    assert "failed or cancelled" in again.json()["detail"]


def test_two_monitors_recover_each_lost_attempt_once(
    api: Api, monitor: WorkerProcess, fleet: WorkerFleet
) -> None:
    second = fleet.start_monitor("monitor-2")
    doomed = fleet.start("doomed", queue="twice", concurrency=4)
    fleet.wait_ready(doomed)
    mark = marker()
    jobs = [
        api.submit(
            type="command", command=first_attempt_sleeps(mark), retries=1, queue="twice"
        )
        for _ in range(4)
    ]
    wait_for(
        lambda: all(api.job(j["id"])["status"] == "running" for j in jobs),
        20,
        "all four jobs to run",
    )

    doomed.process.send_signal(signal.SIGKILL)
    wait_for(
        lambda: all(api.job(j["id"])["status"] == "retrying" for j in jobs),
        15,
        "every attempt to be recovered",
    )
    second.stop()

    logs = monitor.output() + second.output()
    for job in jobs:
        assert logs.count(f"Job {job['id']} attempt 1: recovered (") == 1
    for job in jobs:
        attempts = api.job(job["id"])["attempts"]
        assert [a["outcome"] for a in attempts] == ["worker_lost"]


def test_jobs_whose_messages_were_wiped_are_published_again(
    api: Api, monitor: WorkerProcess, fleet: WorkerFleet, redis_client: redis.Redis
) -> None:
    jobs = [
        api.submit(type="command", command="true", queue="wiped") for _ in range(20)
    ]
    wait_for(lambda: queued(redis_client, "wiped") == 20, 10, "the messages")
    redis_client.delete(*priority_lists("wiped"))

    wait_for(lambda: queued(redis_client, "wiped") == 20, 15, "reconciliation")
    worker = fleet.start("wiped", queue="wiped", concurrency=4)
    fleet.wait_ready(worker)
    finished = [api.wait_final(job["id"]) for job in jobs]
    worker.stop()

    assert {job["status"] for job in finished} == {"succeeded"}
    assert all(job["attempts_made"] == 1 for job in finished)


@pytest.mark.skipif(conftest.REDIS is None, reason="needs the suite's own redis-server")
def test_redis_restart_under_load_loses_no_job_and_every_worker_consumes_after(
    api: Api, monitor: WorkerProcess, default_workers: list[WorkerProcess]
) -> None:
    assert conftest.REDIS is not None
    with ThreadPoolExecutor(8) as pool:
        submitted = pool.map(
            lambda _: api.submit(type="command", command="sleep 8"), range(200)
        )
        ids = [job["id"] for job in submitted]
    unfinished = Job.objects.filter(id__in=ids, status__in=("queued", "running"))
    assert unfinished.count() == 200  # every one is queued or running when Redis goes

    conftest.REDIS.restart()

    finished = [api.wait_final(job_id, timeout=120) for job_id in ids]
    assert {job["status"] for job in finished} == {"succeeded"}
    assert all(job["attempts_made"] == 1 for job in finished)
    # Each worker takes a job from a queue only it consumes.
    probes = {
        w.name: api.submit(type="command", command="true", queue=f"only-{w.name}")
        for w in default_workers
    }
    for name, probe in probes.items():
        done = api.wait_final(probe["id"], timeout=30)
        assert done["status"] == "succeeded"
        assert done["worker"].startswith(f"{name}@")


def test_worker_that_stops_consuming_is_not_counted_live(
    api: Api, fleet: WorkerFleet
) -> None:
    deaf = fleet.start(
        "deaf",
        queue="deaf",
        concurrency=2,
        INFINITRAIN_CANARY_INTERVAL="0.5",
        INFINITRAIN_CANARY_TIMEOUT="2",
    )
    fleet.wait_ready(deaf)
    name = wait_for(lambda: _worker_name(api, "deaf@"), 10, "the worker to register")

    def worker() -> dict[str, Any]:
        return dict(api.session.get(f"{api.base}/workers/{name}", timeout=10).json())

    def live() -> int:
        return int(
            api.session.get(f"{api.base}/health", timeout=10).json()["live_workers"]
        )

    wait_for(lambda: worker()["status"] == "online", 10, "the worker to be online")
    before = live()
    # The worker keeps running and heartbeating, but takes nothing any more.
    for queue in ("deaf", f"canary.{name}"):
        app.control.cancel_consumer(queue, destination=[name], reply=True, timeout=5)

    wait_for(lambda: worker()["consuming"] is False, 15, "the canary to go unanswered")
    assert worker()["status"] == "online"  # it still heartbeats
    assert live() == before - 1

    app.control.add_consumer(
        f"canary.{name}", destination=[name], reply=True, timeout=5
    )
    wait_for(lambda: worker()["consuming"] is True, 15, "the canary to be answered")
    deaf.stop()


def _worker_name(api: Api, prefix: str) -> str | None:
    workers = api.session.get(f"{api.base}/workers", timeout=10).json()["results"]
    return next((w["name"] for w in workers if w["name"].startswith(prefix)), None)


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="drops PostgreSQL server connections"
)
def test_result_is_recorded_when_the_database_drops_the_workers_connections(
    api: Api, default_workers: list[WorkerProcess]
) -> None:
    mark = marker()
    job = api.submit(
        type="command", command=f"sleep {mark.replace('600', '2')}; echo done"
    )
    wait_for(lambda: api.job(job["id"])["status"] == "running", 20, "the job to start")

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] > 0

    done = api.wait_final(job["id"])
    assert done["status"] == "succeeded"
    assert done["attempts_made"] == 1
    assert done["result"]["stdout"] == "done\n"
