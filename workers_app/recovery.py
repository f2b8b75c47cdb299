"""Failure detection and recovery: lost workers and the attempts they held.

Every step is a conditional update, so several monitors can run at once: two that
see the same silent worker both try to mark it lost and to close its attempts, and
the lease token lets exactly one of them change each job.
"""

import logging

from django.db.models import QuerySet
from django.utils import timezone

from jobs import lifecycle
from jobs.models import Attempt

from .models import Worker, WorkerStatus, loss_threshold

logger = logging.getLogger(__name__)


def mark_lost() -> list[str]:
    """Mark online workers whose heartbeat stopped as lost; return their names."""
    cutoff = timezone.now() - loss_threshold()
    silent = Worker.objects.filter(
        status=WorkerStatus.ONLINE, last_heartbeat__lt=cutoff
    )
    lost = []
    for name, last in silent.values_list("name", "last_heartbeat"):
        # The worker may have beaten since we read it, or another monitor got there.
        if silent.filter(name=name).update(status=WorkerStatus.LOST):
            seconds = (timezone.now() - last).total_seconds()
            logger.warning("Worker %s: lost (no heartbeat for %.1fs)", name, seconds)
            lost.append(name)
    return lost


def recover_attempts() -> int:
    """Close every open attempt of a lost or offline worker; return how many.

    Its job retries if attempts remain, else fails with "worker lost". A worker that
    is shutting down is offline but still beating while it finishes its attempts:
    those are left to it.
    """
    cutoff = timezone.now() - loss_threshold()
    gone = (
        Worker.objects.exclude(status=WorkerStatus.ONLINE)
        .filter(last_heartbeat__lt=cutoff)
        .values("name")
    )
    return _recover(Attempt.objects.filter(worker__in=gone), "stopped heartbeating")


def recover_previous_life(name: str) -> int:
    """Close the open attempts a worker of this name held before it (re)started.

    A worker killed and restarted under the same name within the loss threshold is
    never seen as lost, so it hands back its old attempts itself.
    """
    return _recover(Attempt.objects.filter(worker=name), "restarted")


def _recover(attempts: QuerySet[Attempt], why: str) -> int:
    recovered = 0
    for attempt in attempts.filter(finished_at__isnull=True).select_related("job"):
        reason = f"worker lost: {attempt.worker} {why}"
        if lifecycle.recover(lifecycle.Lease.of(attempt), reason) is not None:
            recovered += 1
        else:
            # The job moved on without closing this attempt (or another monitor is
            # closing it right now): close the row so it is not looked at again.
            lifecycle.close_attempt(attempt.lease_token, reason)
    return recovered
