"""Does this worker still take messages? A canary answers what a heartbeat cannot.

A worker can keep heartbeating while its consumer takes nothing: Celery has had
several bugs where a worker reconnects to Redis and silently stops consuming. So each
worker consumes a queue of its own, `canary.<name>`, and every CANARY_INTERVAL seconds
sends itself a canary task there. If the canary is not taken within CANARY_TIMEOUT
while the worker had a free slot the whole time and took no other message, the
worker is not consuming, and its heartbeat says so (`consuming` false): the API and
/health stop counting it as live. A busy worker cannot take its canary (its slots
hold its prefetch), so it is judged only when it has room.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

from django.conf import settings

from infinitrain_project.celery import app

logger = logging.getLogger(__name__)

CANARY_TASK = "workers_app.canary"
CANARY_QUEUE_PREFIX = "canary."


def canary_queue(worker: str) -> str:
    return f"{CANARY_QUEUE_PREFIX}{worker}"


@dataclass
class Liveness:
    """One worker process's canary bookkeeping; times are time.monotonic()."""

    worker: str
    consuming: bool = True
    sent_at: float | None = None
    answered_at: float = field(default_factory=time.monotonic)
    last_taken: float = 0.0
    last_full: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, running: int, concurrency: int) -> bool:
        """Called by each heartbeat: send a canary when due, and judge; returns consuming."""
        now = time.monotonic()
        config = settings.INFINITRAIN
        with self.lock:
            if concurrency and running >= concurrency:
                self.last_full = now
            if self.sent_at is None:
                if now - self.answered_at >= config["CANARY_INTERVAL"]:
                    self.sent_at = now
                    app.send_task(CANARY_TASK, queue=canary_queue(self.worker))
                return self.consuming
            overdue = now - self.sent_at > config["CANARY_TIMEOUT"]
            idle = self.last_taken < self.sent_at and self.last_full < self.sent_at
            if overdue and idle and self.consuming:
                self.consuming = False
                logger.error(
                    "Worker %s: not consuming: its canary waits %.1fs with free slots",
                    self.worker,
                    now - self.sent_at,
                )
            return self.consuming

    def took_message(self) -> None:
        with self.lock:
            self.last_taken = time.monotonic()

    def canary_answered(self) -> None:
        with self.lock:
            self.sent_at = None
            self.answered_at = time.monotonic()
            if not self.consuming:
                logger.warning("Worker %s: consuming again", self.worker)
            self.consuming = True
