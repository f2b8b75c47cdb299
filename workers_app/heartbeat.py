"""A worker's own registration and heartbeat, hooked to Celery's worker signals.

When a `celery worker` process is ready it registers itself (name, host, pid, queues,
concurrency, version), then a thread records a heartbeat every HEARTBEAT_INTERVAL
seconds with the number of attempts it runs. A clean shutdown marks it offline at once.
"""

import logging
import os
import socket
import threading
from typing import Any

import celery
from celery.signals import worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from jobs.runner import running_attempts

from .models import Worker, WorkerStatus

logger = logging.getLogger(__name__)

_stop = threading.Event()
_state: dict[str, str] = {}


@worker_ready.connect
def register(sender: Any, **kwargs: Any) -> None:
    """Record this worker as online and start its heartbeat thread."""
    name = str(sender.hostname)
    _state["name"] = name
    controller = getattr(sender, "controller", None)
    Worker.objects.update_or_create(
        name=name,
        defaults={
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "queues": sorted(
                q.name for q in sender.app.amqp.queues.consume_from.values()
            ),
            "concurrency": getattr(controller, "concurrency", 0) or 0,
            "version": celery.__version__,
            "status": WorkerStatus.ONLINE,
            "started_at": timezone.now(),
            "last_heartbeat": timezone.now(),
            "running": 0,
        },
    )
    logger.info("Worker %s: registered (pid %s)", name, os.getpid())
    _stop.clear()
    threading.Thread(
        target=_beat_forever, args=(name,), name="heartbeat", daemon=True
    ).start()


@worker_shutdown.connect
def unregister(sender: Any = None, **kwargs: Any) -> None:
    name = _state.get("name")
    if name is None:
        return
    _stop.set()
    close_old_connections()
    Worker.objects.filter(name=name).update(
        status=WorkerStatus.OFFLINE, running=0, last_heartbeat=timezone.now()
    )
    logger.info("Worker %s: offline", name)


def beat(name: str) -> None:
    """Record one heartbeat; re-register the row if it vanished."""
    close_old_connections()
    updated = Worker.objects.filter(name=name).update(
        status=WorkerStatus.ONLINE,
        last_heartbeat=timezone.now(),
        running=len(running_attempts()),
    )
    if not updated:
        Worker.objects.create(
            name=name,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            version=celery.__version__,
        )


def _beat_forever(name: str) -> None:
    interval = settings.INFINITRAIN["HEARTBEAT_INTERVAL"]
    while not _stop.wait(interval):
        try:
            beat(name)
        except DatabaseError as error:
            # The database may be restarting; the next beat tries again.
            logger.warning("Worker %s: heartbeat not recorded: %s", name, error)
