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
from django.db.models import F, Q
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
    first_attempt: int
    priority: int
    queue: str

    @classmethod
    def of(cls, attempt: Attempt) -> "Lease":
        """The lease an open Attempt row stands for (its job must be loaded)."""
        job = attempt.job
        return cls(
            job_id=job.id,
            attempt=attempt.number,
            token=attempt.lease_token,
            job_type=job.type,
            spec=job.spec,
            timeout=job.timeout,
            max_retries=job.max_retries,
            first_attempt=job.first_attempt,
            priority=job.priority,
            queue=job.queue,
        )


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
        "type", "spec", "timeout", "max_retries", "first_attempt", "priority", "queue"
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
        first_attempt=job["first_attempt"],
        priority=job["priority"],
        queue=job["queue"],
    )


def finish(lease: Lease, outcome: Outcome) -> str | None:
    """Record the attempt's outcome; return the job's new status, or None if fenced out.

    When the job was cancelled or its attempt taken over meanwhile, nothing is written
    and the result is discarded.
    """
    fields = _output_fields(outcome)
    status = _close(lease, outcome.succeeded, _attempt_outcome(outcome), fields)
    if status is None:
        logger.warning(
            "Job %s attempt %s: lease was taken meanwhile, result discarded",
            lease.job_id,
            lease.attempt,
        )
    return status


def recover(lease: Lease, reason: str) -> str | None:
    """Close an attempt whose worker was lost, as a failure; None if fenced out.

    Called by the monitor. Two monitors may recover the same attempt at once: the
    update names the lease token, so only one of them changes the job.
    """
    status = _close(lease, False, AttemptOutcome.WORKER_LOST, {"error": reason})
    if status is not None:
        logger.warning(
            "Job %s attempt %s: recovered (%s), job is %s",
            lease.job_id,
            lease.attempt,
            reason,
            status,
        )
    return status


def close_attempt(token: str, reason: str) -> bool:
    """Close a still-open attempt row whose job no longer names its lease."""
    return bool(
        Attempt.objects.filter(lease_token=token, finished_at__isnull=True).update(
            finished_at=timezone.now(), outcome=AttemptOutcome.WORKER_LOST, error=reason
        )
    )


def _close(
    lease: Lease, succeeded: bool, attempt_outcome: str, attempt_fields: dict[str, Any]
) -> str | None:
    """End the attempt and move the job on: succeeded, retrying or failed.

    Both updates name the lease token. A retry's message is published after a
    backoff, once this commits.
    """
    now = timezone.now()
    status = Status.SUCCEEDED if succeeded else _after_failure(lease)
    retrying = status == Status.RETRYING
    backoff = retry_backoff(lease.attempt - lease.first_attempt + 1) if retrying else 0
    with transaction.atomic():
        updated = Job.objects.filter(
            id=lease.job_id, lease_token=lease.token, status=Status.RUNNING
        ).update(
            status=status,
            lease_token="",
            error=attempt_fields.get("error", ""),
            finished_at=None if retrying else now,
            not_before=now + timedelta(seconds=backoff) if retrying else None,
            queued_at=now if retrying else F("queued_at"),
        )
        if not updated:
            # Cancelled, or taken over by the monitor: the job is someone else's now.
            return None
        Attempt.objects.filter(lease_token=lease.token).update(
            finished_at=now, outcome=attempt_outcome, **attempt_fields
        )
        if retrying:
            publish_on_commit(
                lease.job_id, lease.attempt + 1, lease.priority, lease.queue, backoff
            )
    logger.info(
        "Job %s attempt %s: %s%s",
        lease.job_id,
        lease.attempt,
        status,
        f" ({attempt_fields['error']})" if attempt_fields.get("error") else "",
    )
    return status


def cancel(job_id: str, reason: str) -> str | None:
    """Cancel the job unless it is final; None on success, else its final status.

    A queued job's message finds it cancelled and is dropped; a running attempt's
    worker sees at its next heartbeat that its lease is gone and stops the process
    group. Raises Job.DoesNotExist for an unknown job.
    """
    now = timezone.now()
    with transaction.atomic():
        updated = Job.objects.filter(
            id=job_id, status__in=Status.waiting() | {Status.RUNNING}
        ).update(
            status=Status.CANCELLED,
            lease_token="",
            error=reason,
            finished_at=now,
            not_before=None,
        )
        if updated:
            Attempt.objects.filter(job_id=job_id, finished_at__isnull=True).update(
                finished_at=now, outcome=AttemptOutcome.CANCELLED, error=reason
            )
            logger.info("Job %s: cancelled (%s)", job_id, reason)
            return None
    return str(Job.objects.values_list("status", flat=True).get(id=job_id))


def rerun(job_id: str) -> str | None:
    """Queue a failed or cancelled job for a new run; None on success, else its status.

    The new run starts with the next attempt number and gets the job's whole retry
    policy again. Raises Job.DoesNotExist for an unknown job.
    """
    now = timezone.now()
    with transaction.atomic():
        updated = Job.objects.filter(
            id=job_id, status__in=(Status.FAILED, Status.CANCELLED)
        ).update(
            status=Status.QUEUED,
            first_attempt=F("attempts") + 1,
            error="",
            finished_at=None,
            not_before=None,
            queued_at=now,
        )
        job = Job.objects.values("status", "attempts", "priority", "queue").get(
            id=job_id
        )
        if not updated:
            return str(job["status"])
        publish_on_commit(job_id, job["attempts"] + 1, job["priority"], job["queue"])
    logger.info("Job %s: queued again as attempt %s", job_id, job["attempts"] + 1)
    return None


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


def _after_failure(lease: Lease) -> str:
    retries_made = lease.attempt - lease.first_attempt
    return Status.RETRYING if retries_made < lease.max_retries else Status.FAILED


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
