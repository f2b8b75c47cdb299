"""The claim/run/report path on its own: fencing, retries, and its database cost."""

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from jobs import lifecycle
from jobs.executors.base import Outcome
from jobs.models import Attempt, Job, Status
from jobs.runner import run_attempt

pytestmark = pytest.mark.django_db


def make_job(**fields: Any) -> Job:
    defaults: dict[str, Any] = {
        "type": "command",
        "spec": {"command": "echo hi"},
        "timeout": 10,
    }
    return Job.objects.create(**(defaults | fields))


def statements(queries: CaptureQueriesContext) -> list[str]:
    """The statements sent, less transaction control (BEGIN, COMMIT, savepoints)."""
    control = ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE SAVEPOINT")
    return [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].upper().startswith(control)
    ]


def test_a_job_costs_a_fixed_number_of_queries_from_submit_to_finish(
    django_user_model: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_user("carol"))

    with CaptureQueriesContext(connection) as submit:
        response = client.post(
            "/api/v1/jobs", {"type": "command", "command": "echo hi"}, format="json"
        )
    with CaptureQueriesContext(connection) as run:
        status = run_attempt(response.json()["id"], 1, "worker-a")

    assert status == Status.SUCCEEDED
    # submit: one INSERT; a new job has no attempts to read back.
    assert len(statements(submit)) == 1, statements(submit)
    # run: UPDATE to claim, INSERT attempt, SELECT spec, UPDATE job, UPDATE attempt.
    assert len(statements(run)) == 5, statements(run)


def test_second_delivery_of_a_message_is_dropped() -> None:
    job = make_job()

    first = run_attempt(job.id, 1, "worker-a")
    second = run_attempt(job.id, 1, "worker-b")

    assert first == Status.SUCCEEDED
    assert second is None
    assert Attempt.objects.filter(job=job).count() == 1


def test_a_stale_or_early_message_cannot_claim() -> None:
    job = make_job()

    assert lifecycle.claim(job.id, 2, "worker-a") is None  # attempt 1 never ran
    assert lifecycle.claim("no-such-job", 1, "worker-a") is None
    assert Job.objects.get(id=job.id).status == Status.QUEUED


def test_result_of_an_attempt_whose_lease_was_taken_is_discarded() -> None:
    job = make_job()
    lease = lifecycle.claim(job.id, 1, "worker-a")
    assert lease is not None
    # Someone else (a canceller, the monitor) took the job meanwhile.
    Job.objects.filter(id=job.id).update(status=Status.CANCELLED, lease_token="")

    status = lifecycle.finish(lease, Outcome(succeeded=True, stdout="late\n"))

    assert status is None
    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert Attempt.objects.get(job=job).stdout == ""


def test_failed_attempt_with_retries_left_waits_out_its_backoff(
    django_capture_on_commit_callbacks: Any,
) -> None:
    job = make_job(max_retries=1)
    lease = lifecycle.claim(job.id, 1, "worker-a")
    assert lease is not None

    with django_capture_on_commit_callbacks() as published:
        status = lifecycle.finish(lease, Outcome(succeeded=False, error="exit code 1"))

    assert status == Status.RETRYING
    assert len(published) == 1  # the next attempt's message
    job.refresh_from_db()
    assert job.not_before is not None
    # The retry's message may arrive early (a duplicate); it cannot start before time.
    assert lifecycle.claim(job.id, 2, "worker-b") is None


@pytest.mark.parametrize("attempt", [1, 2, 3, 10])
def test_retry_backoff_grows_and_stays_within_its_bounds(
    attempt: int, settings: Any
) -> None:
    settings.INFINITRAIN = settings.INFINITRAIN | {
        "RETRY_BACKOFF_BASE": 1.0,
        "RETRY_BACKOFF_MAX": 60.0,
    }
    ceiling = min(60.0, 2.0 ** (attempt - 1))

    delays = [lifecycle.retry_backoff(attempt) for _ in range(50)]

    assert all(ceiling / 2 <= d <= ceiling for d in delays)
