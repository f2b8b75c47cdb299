"""Job records: a Job and one Attempt row per run of it.

The database is the source of truth for every job (see ../shared/DESIGN.md); a broker
message only says "job X may start attempt N now".
"""

import uuid
from typing import Any

from django.db import models
from django.utils import timezone


def new_job_id() -> str:
    return uuid.uuid4().hex


class Status(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @classmethod
    def final(cls) -> frozenset[str]:
        return frozenset({cls.SUCCEEDED, cls.FAILED, cls.CANCELLED})

    @classmethod
    def waiting(cls) -> frozenset[str]:
        """Statuses in which a job waits for its next attempt to be claimed."""
        return frozenset({cls.QUEUED, cls.RETRYING})


class JobType(models.TextChoices):
    COMMAND = "command"
    SCRIPT = "script"
    HTTP = "http"


class Outcome(models.TextChoices):
    """How one attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    WORKER_LOST = "worker_lost"


class Job(models.Model):
    id = models.CharField(primary_key=True, max_length=128, default=new_job_id)
    type = models.CharField(max_length=16, choices=JobType.choices)
    # The type's own fields (command, env, cwd / script / url, method, ...), validated
    # by the API before they are stored.
    spec = models.JSONField()
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    priority = models.PositiveSmallIntegerField(default=0)
    queue = models.CharField(max_length=64, default="default")
    tags = models.JSONField(default=list, blank=True)
    timeout = models.FloatField(help_text="Seconds an attempt may run.")
    max_retries = models.PositiveIntegerField(default=0)

    # Number of the newest attempt claimed; the next claim must name this + 1.
    attempts = models.PositiveIntegerField(default=0)
    # Number of the first attempt of the current run: 1, or the attempt a re-run
    # (POST .../retry) started with. The retry policy counts from here.
    first_attempt = models.PositiveIntegerField(default=1)
    # When the job last became queued or retrying: reconciliation leaves a job alone
    # for a grace period after this, while its message is surely on its way.
    queued_at = models.DateTimeField(default=timezone.now)
    # Fencing token of the attempt that owns the job while it runs, else empty.
    lease_token = models.CharField(max_length=32, blank=True, default="")
    # A retry's message may be delivered early (a duplicate); it may not start before.
    not_before = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    error = models.TextField(blank=True, default="")

    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"])]

    def __str__(self) -> str:
        return f"{self.id} ({self.type}, {self.status})"

    @property
    def max_attempts(self) -> int:
        """Attempts the current run may make."""
        return self.max_retries + 1

    @property
    def is_final(self) -> bool:
        return self.status in Status.final()


class Attempt(models.Model):
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_set")
    number = models.PositiveIntegerField()
    lease_token = models.CharField(max_length=32, unique=True)
    worker = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(
        max_length=16, choices=Outcome.choices, blank=True, default=""
    )
    error = models.TextField(blank=True, default="")
    exit_code = models.IntegerField(null=True, blank=True)
    stdout = models.TextField(blank=True, default="")
    stderr = models.TextField(blank=True, default="")
    stdout_truncated = models.BooleanField(default=False)
    stderr_truncated = models.BooleanField(default=False)
    status_code = models.IntegerField(null=True, blank=True)
    headers = models.JSONField(null=True, blank=True)
    body = models.TextField(blank=True, default="")
    body_truncated = models.BooleanField(default=False)

    class Meta:
        ordering = ["job", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "number"], name="one_row_per_attempt"
            )
        ]

    def __str__(self) -> str:
        return f"{self.job_id} attempt {self.number}"

    def result(self, job_type: str) -> dict[str, Any]:
        """The attempt's output in the shape the API shows for its job type."""
        if job_type == JobType.HTTP:
            return {
                "status_code": self.status_code,
                "headers": self.headers,
                "body": self.body,
                "body_truncated": self.body_truncated,
            }
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "stdout_truncated": self.stdout_truncated,
            "stderr_truncated": self.stderr_truncated,
        }
