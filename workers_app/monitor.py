"""The monitor: Celery's worker events, failure detection, recovery, reconciliation.

Run by `manage.py monitor`. Several may run at once (see recovery.py); each loop turn
is short and every write it makes is conditional.
"""

import logging
import threading
import time
from typing import Any

import redis
from celery import Celery
from django.conf import settings
from django.db import DatabaseError, close_old_connections

from .models import Worker, WorkerStatus, loss_threshold
from .reconcile import reconcile
from .recovery import mark_lost, recover_attempts

logger = logging.getLogger(__name__)


class Monitor:
    def __init__(self, app: Celery) -> None:
        config = settings.INFINITRAIN
        self.app = app
        self.interval = config["MONITOR_INTERVAL"]
        self.reconcile_interval = config["RECONCILE_INTERVAL"]
        self.stopping = threading.Event()
        self._next_reconcile = 0.0
        self._database_back_at = time.monotonic()
        self._redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10)

    def run(self) -> None:
        """Loop until stop() is called."""
        logger.info("Monitor: started (checks every %ss)", self.interval)
        threading.Thread(
            target=self._events_forever, name="events", daemon=True
        ).start()
        while not self.stopping.is_set():
            try:
                self.turn()
            except DatabaseError as error:
                # While the database is down no worker can record a heartbeat either:
                # give them a whole loss threshold after it returns before judging.
                logger.warning("Monitor: turn skipped: %s", error)
                self._database_back_at = time.monotonic() + self.interval
            except redis.RedisError as error:
                logger.warning("Monitor: turn skipped: %s", error)
            self.stopping.wait(self.interval)
        logger.info("Monitor: stopped")

    def stop(self) -> None:
        self.stopping.set()

    def turn(self) -> None:
        """One pass: mark silent workers lost, recover their attempts, reconcile."""
        close_old_connections()
        if time.monotonic() - self._database_back_at > loss_threshold().total_seconds():
            mark_lost()
        recover_attempts()
        if time.monotonic() >= self._next_reconcile:
            reconcile(self._redis)
            self._next_reconcile = time.monotonic() + self.reconcile_interval

    def _events_forever(self) -> None:
        while not self.stopping.is_set():
            try:
                self._capture_events()
            except Exception as error:
                # Redis went away; reconnect after a pause rather than die silently.
                logger.warning("Monitor: event stream broken (%s); reconnecting", error)
                self.stopping.wait(1)

    def _capture_events(self) -> None:
        handlers = {
            "worker-online": self._on_online,
            "worker-offline": self._on_offline,
            "worker-heartbeat": self._on_heartbeat,
        }
        with self.app.connection_for_read() as connection:
            receiver = self.app.events.Receiver(connection, handlers=handlers)
            receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_online(self, event: dict[str, Any]) -> None:
        logger.info("Worker %s: online (Celery event)", event["hostname"])

    def _on_offline(self, event: dict[str, Any]) -> None:
        """A worker that left cleanly is offline at once, not lost seconds later."""
        close_old_connections()
        name = event["hostname"]
        if Worker.objects.filter(name=name, status=WorkerStatus.ONLINE).update(
            status=WorkerStatus.OFFLINE
        ):
            logger.info("Worker %s: offline (Celery event)", name)

    def _on_heartbeat(self, event: dict[str, Any]) -> None:
        logger.debug("Worker %s: Celery heartbeat", event["hostname"])
