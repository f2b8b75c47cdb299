"""Publishing wake-ups: a message carries a job id and an attempt number, nothing else."""

import logging

from django.db import transaction

from infinitrain_project.celery import app

logger = logging.getLogger(__name__)

RUN_TASK = "jobs.run_job"


def publish(
    job_id: str, attempt: int, priority: int, queue: str, countdown: float = 0
) -> None:
    """Send the message that lets a worker claim `attempt` of the job.

    The Redis transport serves priority 0 first, so the job's priority (9 the most
    urgent) is inverted.
    """
    app.send_task(
        RUN_TASK,
        args=(job_id, attempt),
        queue=queue,
        priority=9 - priority,
        countdown=countdown or None,
    )
    logger.debug("Job %s attempt %s: published to queue %s", job_id, attempt, queue)


def publish_on_commit(
    job_id: str, attempt: int, priority: int, queue: str, countdown: float = 0
) -> None:
    """Publish once the current transaction commits, so no worker sees an unsaved job."""
    transaction.on_commit(
        lambda: publish(job_id, attempt, priority, queue, countdown), robust=True
    )
