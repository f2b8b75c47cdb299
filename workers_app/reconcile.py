"""Reconciliation: re-publish the message of a waiting job when the broker lost it.

A job that is queued or retrying and due needs a message for its next attempt in its
queue's Redis lists (one per priority). After Redis restarted without its append-only
file, or a queue was emptied by hand, it has none, and would wait forever. The database
knows every waiting job, so the monitor compares the two and publishes what is missing.

A message a worker has taken but not acknowledged does not count: workers claim what
they take at once, except a retry's delayed message, which they hold until the retry
is due. So a job still waiting a grace period after it became due has lost its message
(or the worker holding it died); either way a new one is published. A message that was
not really lost only becomes a duplicate, which the claim's fencing drops.
"""

import base64
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from jobs.dispatch import RUN_TASK, publish
from jobs.models import Job, Status

logger = logging.getLogger(__name__)


def reconcile(client: redis.Redis) -> int:
    """Publish the missing message of each job due longer than the grace period.

    Returns how many were published. The grace period covers a message still on its
    way (the job was committed a moment ago, the publish is in flight).
    """
    cutoff = timezone.now() - timedelta(seconds=settings.INFINITRAIN["RECONCILE_GRACE"])
    waiting = list(
        Job.objects.filter(status__in=Status.waiting(), queued_at__lt=cutoff)
        .filter(Q(not_before__isnull=True) | Q(not_before__lt=cutoff))
        .values("id", "attempts", "priority", "queue")
    )
    if not waiting:
        return 0
    present = set(messages_in_broker(client, {job["queue"] for job in waiting}))
    published = 0
    for job in waiting:
        attempt = job["attempts"] + 1
        if (job["id"], attempt) in present:
            continue
        publish(job["id"], attempt, job["priority"], job["queue"])
        logger.warning(
            "Job %s attempt %s: message missing from queue %s, published again",
            job["id"],
            attempt,
            job["queue"],
        )
        published += 1
    return published


def messages_in_broker(
    client: redis.Redis, queues: Iterable[str]
) -> Iterator[tuple[str, int]]:
    """(job id, attempt) of every run message queued in `queues`.

    Reads whole lists: a pass costs time in proportion to the messages queued.
    """
    separator = settings.CELERY_BROKER_TRANSPORT_OPTIONS["sep"]
    for queue in queues:
        keys = [queue] + [f"{queue}{separator}{p}" for p in range(1, 10)]
        for key in keys:
            for raw in client.lrange(key, 0, -1):
                yield from _job_of(raw)


def _job_of(raw: bytes | str) -> Iterator[tuple[str, int]]:
    try:
        message: dict[str, Any] = json.loads(raw)
        if message.get("headers", {}).get("task") != RUN_TASK:
            return
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        yield str(args[0]), int(args[1])
    except (ValueError, KeyError, IndexError, TypeError):
        # Not a message of ours, or not one we can read: it cannot stand for a job.
        return
