"""State changes of a job, each a conditional update that names the state it expects.

Whoever changes a job (a worker claiming or finishing an attempt, later a canceller or
the monitor) does so with an UPDATE whose WHERE clause names the status, attempt number
or lease token it believes current. An update that changes no row means another party
got there first, and the caller backs off. This is the fencing of ../shared/DESIGN.md.
"""

import logging
import random
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from .dispatch import publish_on_commit
from .executors.base import Outcome
from .models import Attempt, Job, Status
from .models import Outcome as AttemptOutcome

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lease:
    """A worker's claim on one attempt of a job."""

    job_id: str
    attempt: int
    token: str
    job_type: str
    spec: dict[str, Any]
    timeout: float
    max_retries: int
    priority: int
    queue: str


def claim(job_id: str, attempt: int, worker: str) -> Lease | None:
    """Take attempt `attempt` of the job for `worker`, or None if it is not ours to run.

    1. One UPDATE moves the job from queued/retrying with `attempt - 1` attempts made
       to running with `attempt` made and a fresh lease token. A duplicated message,
       a stale one, or one for a cancelled or deleted job changes no row.
    2. The Attempt row is inserted in the same transaction.
    3. The job's spec is read back for the executor.
    """
    now = timezone.now()
    token = uuid.uuid4().hex
    with transaction.atomic():
        claimed = (
            Job.objects.filter(
                id=job_id, status__in=Status.waiting(), attempts=attempt - 1
            )
            .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
            .update(
                status=Status.RUNNING,
                attempts=attempt,
                lease_token=token,
                worker=worker,
                started_at=Coalesce("started_at", now),
                not_before=None,
            )
        )
        if not claimed:
            # Another worker claimed it first, or this message is stale or early.
            logger.info(
                "Job %s attempt %s: not claimable, message dropped", job_id, attempt
            )
            return None
        Attempt.objects.create(
            job_id=job_id,
            number=attempt,
            lease_token=token,
            worker=worker,
            started_at=now,
        )
    job = Job.objects.values(
        "type", "spec", "timeout", "max_retries", "priority", "queue"
    ).get(id=job_id)
    logger.info("Job %s attempt %s: claimed by %s", job_id, attempt, worker)
    return Lease(
        job_id=job_id,
        attempt=attempt,
        token=token,
        job_type=job["type"],
        spec=job["spec"],
        timeout=job["timeout"],
        max_retries=job["max_retries"],
        priority=job["priority"],
        queue=job["queue"],
    )


def finish(lease: Lease, outcome: Outcome) -> str | None:
    """Record the attempt's outcome; return the job's new status, or None if fenced out.

    The job moves to succeeded, to retrying (and its next message is published after a
    backoff once this commits) or to failed. Both updates name the lease token: when
    the job was cancelled or its attempt taken over meanwhile, nothing is written and
    the result is discarded.
    """
    now = timezone.now()
    status = _next_status(lease, outcome)
    backoff = retry_backoff(lease.attempt) if status == Status.RETRYING else 0.0
    with transaction.atomic():
        updated = Job.objects.filter(
            id=lease.job_id, lease_token=lease.token, status=Status.RUNNING
        ).update(
            status=status,
            lease_token="",
            error=_text(outcome.error),
            finished_at=None if status == Status.RETRYING else now,
            not_before=now + timedelta(seconds=backoff) if backoff else None,
        )
        if not updated:
            logger.warning(
                "Job %s attempt %s: lease was taken meanwhile, result discarded",
                lease.job_id,
                lease.attempt,
            )
            return None
        Attempt.objects.filter(lease_token=lease.token).update(
            finished_at=now,
            outcome=_attempt_outcome(outcome),
            **_output_fields(outcome),
        )
        if status == Status.RETRYING:
            publish_on_commit(
                lease.job_id, lease.attempt + 1, lease.priority, lease.queue, backoff
            )
    logger.info(
        "Job %s attempt %s: %s%s",
        lease.job_id,
        lease.attempt,
        status,
        f" ({outcome.error})" if outcome.error else "",
    )
    return status


def retry_backoff(attempt: int) -> float:
    """Seconds before the retry that follows `attempt`: exponential, capped, jittered.

    The jitter spreads retries of jobs that failed together (a shared dependency went
    down) so they do not return as one burst.
    """
    config = settings.INFINITRAIN
    ceiling = min(
        config["RETRY_BACKOFF_MAX"], config["RETRY_BACKOFF_BASE"] * 2 ** (attempt - 1)
    )
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def _next_status(lease: Lease, outcome: Outcome) -> str:
    if outcome.succeeded:
        return Status.SUCCEEDED
    if lease.attempt <= lease.max_retries:
        return Status.RETRYING
    return Status.FAILED


def _attempt_outcome(outcome: Outcome) -> str:
    if outcome.succeeded:
        return AttemptOutcome.SUCCEEDED
    if outcome.timed_out:
        return AttemptOutcome.TIMED_OUT
    return AttemptOutcome.FAILED


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; a binary job's output must not fail the attempt.
    return value.replace("\x00", "\ufffd")


def _output_fields(outcome: Outcome) -> dict[str, Any]:
    return {
        "error": _text(outcome.error),
        "exit_code": outcome.exit_code,
        "stdout": _text(outcome.stdout),
        "stderr": _text(outcome.stderr),
        "stdout_truncated": outcome.stdout_truncated,
        "stderr_truncated": outcome.stderr_truncated,
        "status_code": outcome.status_code,
        "headers": outcome.headers,
        "body": _text(outcome.body),
        "body_truncated": outcome.body_truncated,
    }
