"""The worker registry: one row per worker process, kept fresh by its heartbeat."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class WorkerStatus(models.TextChoices):
    ONLINE = "online"
    OFFLINE = "offline"  # left cleanly
    LOST = "lost"  # stopped heartbeating


def loss_threshold() -> timedelta:
    """How long without a heartbeat before a worker counts as lost."""
    config = settings.INFINITRAIN
    return timedelta(seconds=config["HEARTBEAT_INTERVAL"] * config["HEARTBEAT_MISSES"])


class WorkerQuerySet(models.QuerySet["Worker"]):
    def live(self) -> "WorkerQuerySet":
        cutoff = timezone.now() - loss_threshold()
        return self.filter(
            status=WorkerStatus.ONLINE, last_heartbeat__gte=cutoff, consuming=True
        )


class Worker(models.Model):
    name = models.CharField(primary_key=True, max_length=255)
    hostname = models.CharField(max_length=255, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    queues = models.JSONField(default=list, blank=True)
    concurrency = models.PositiveIntegerField(default=0)
    version = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(
        max_length=16, choices=WorkerStatus.choices, default=WorkerStatus.ONLINE
    )
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now)
    running = models.PositiveIntegerField(default=0)
    # False while the worker's canary shows it takes no messages (see liveness.py).
    consuming = models.BooleanField(default=True)
    # Attempts this worker process finished, and how many of them failed, since it
    # started; reported by its heartbeat so the hot path writes nothing extra.
    processed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.status})"

    @property
    def effective_status(self) -> str:
        """The status, with an online worker whose heartbeat stopped shown as lost."""
        stale = self.last_heartbeat < timezone.now() - loss_threshold()
        if self.status == WorkerStatus.ONLINE and stale:
            return WorkerStatus.LOST
        return self.status
