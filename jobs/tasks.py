"""Celery tasks. A task message holds a job id and an attempt number, nothing else."""

from celery import Task, shared_task
from django.db import close_old_connections

from .dispatch import RUN_TASK
from .runner import run_attempt


@shared_task(name=RUN_TASK, bind=True, acks_late=True, ignore_result=True)
def run_job(task: Task, job_id: str, attempt: int) -> None:  # type: ignore[type-arg]
    # Worker threads keep their connections between tasks (CELERY_DB_REUSE_MAX);
    # drop broken ones and those older than CONN_MAX_AGE.
    close_old_connections()
    run_attempt(str(job_id), int(attempt), str(task.request.hostname))
