"""The worker's canary task (see liveness.py)."""

from celery import shared_task

from .heartbeat import canary_answered
from .liveness import CANARY_TASK


@shared_task(name=CANARY_TASK, ignore_result=True)
def canary() -> None:
    canary_answered()
