"""A worker's own registration and heartbeat, hooked to Celery's worker signals.

When a `celery worker` process is ready it registers itself (name, host, pid, queues,
concurrency, version), then a thread records a heartbeat every HEARTBEAT_INTERVAL
seconds with the number of attempts it runs, and stops any attempt whose lease it has
lost. A clean shutdown marks it offline at once.
"""

import logging
import os
import socket
import threading
from typing import Any

import celery
from celery.signals import task_prerun, worker_ready, worker_shutdown
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from jobs.runner import running_attempts, stop_lost_leases, totals

from .liveness import CANARY_QUEUE_PREFIX, Liveness, canary_queue
from .models import Worker, WorkerStatus
from .recovery import recover_previous_life

logger = logging.getLogger(__name__)

_stop = threading.Event()
_state: dict[str, Any] = {}


@worker_ready.connect
def register(sender: Any, **kwargs: Any) -> None:
    """Record this worker as online and start its heartbeat thread."""
    name = str(sender.hostname)
    controller = getattr(sender, "controller", None)
    concurrency = getattr(controller, "concurrency", 0) or 0
    _state.update(name=name, concurrency=concurrency, liveness=Liveness(name))
    sender.add_task_queue(canary_queue(name))
    queues = sender.app.amqp.queues.consume_from.values()
    Worker.objects.update_or_create(
        name=name,
        defaults={
            **_identity(),
            "queues": sorted(
                q.name for q in queues if not q.name.startswith(CANARY_QUEUE_PREFIX)
            ),
            "concurrency": concurrency,
            "status": WorkerStatus.ONLINE,
            "started_at": timezone.now(),
            "last_heartbeat": timezone.now(),
            "running": 0,
            "consuming": True,
            "processed": 0,
            "failed": 0,
        },
    )
    logger.info("Worker %s: registered (pid %s)", name, os.getpid())
    recovered = recover_previous_life(name)
    if recovered:
        logger.warning(
            "Worker %s: handed back %s attempts of its last run", name, recovered
        )
    _stop.clear()
    threading.Thread(
        target=_beat_forever, args=(name,), name="heartbeat", daemon=True
    ).start()


@worker_shutdown.connect
def unregister(sender: Any = None, **kwargs: Any) -> None:
    """Mark the worker offline; Celery sends this once its pool has stopped."""
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
    """Record one heartbeat, then stop any attempt whose lease this worker lost.

    Re-registers the row if it vanished; a worker that is shutting down stays
    offline. A worker the monitor marked lost (it was stopped or cut off) comes back
    online here; its attempts were taken over, and stop_lost_leases() kills their
    processes.
    """
    close_old_connections()
    running = len(running_attempts())
    fields = {
        "last_heartbeat": timezone.now(),
        "running": running,
        "consuming": _state["liveness"].check(running, _state["concurrency"]),
        "processed": totals["processed"],
        "failed": totals["failed"],
    }
    workers = Worker.objects.filter(name=name)
    if not workers.filter(status=WorkerStatus.ONLINE).update(**fields):
        if workers.filter(status=WorkerStatus.LOST).update(
            status=WorkerStatus.ONLINE, **fields
        ):
            logger.warning("Worker %s: was marked lost; back online", name)
        elif not workers.update(**fields):  # offline: shutting down, still beating
            Worker.objects.create(name=name, **_identity(), **fields)
    stop_lost_leases()


@task_prerun.connect
def took_message(**kwargs: Any) -> None:
    if "liveness" in _state:
        _state["liveness"].took_message()


def canary_answered() -> None:
    if "liveness" in _state:
        _state["liveness"].canary_answered()


def _identity() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "version": celery.__version__,
    }


def _beat_forever(name: str) -> None:
    interval = settings.INFINITRAIN["HEARTBEAT_INTERVAL"]
    while not _stop.wait(interval):
        try:
            beat(name)
        except DatabaseError as error:
            # The database may be restarting; the next beat tries again.
            logger.warning("Worker %s: heartbeat not recorded: %s", name, error)
