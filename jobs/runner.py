"""The worker side of one attempt: claim, run, report.

The worker keeps a table of the attempts it is running, so its heartbeat can report
them and stop any whose lease it lost (the job was cancelled, or the monitor took the
attempt over while this worker was cut off).
"""

import logging
import threading
import time
from collections import Counter

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from . import lifecycle
from .executors import get_executor
from .executors.base import Outcome, RunContext
from .models import Job, Status

logger = logging.getLogger(__name__)

# How long a worker keeps trying to record a result while the database is down.
REPORT_RETRY_SECONDS = 300.0

_running: dict[str, RunContext] = {}
_running_lock = threading.Lock()
# Attempts this process finished ("processed") and how many of them failed.
totals: Counter[str] = Counter()


def running_attempts() -> dict[str, RunContext]:
    """The attempts this worker process runs right now, by lease token."""
    with _running_lock:
        return dict(_running)


def run_attempt(job_id: str, attempt: int, worker: str) -> str | None:
    """Run attempt `attempt` of the job on this worker; return the job's new status.

    1. Claim the attempt (a conditional update); a message that cannot claim is dropped.
    2. Run the job type's executor, with this worker's stop event for the attempt.
    3. Report the outcome through an update fenced by the lease token.
    Returns None when the message was dropped or the result discarded.
    """
    lease = lifecycle.claim(job_id, attempt, worker)
    if lease is None:
        return None

    context = RunContext(
        job_id=job_id,
        attempt=attempt,
        timeout=lease.timeout,
        output_limit=int(settings.INFINITRAIN["OUTPUT_LIMIT"]),
        kill_grace=settings.INFINITRAIN["KILL_GRACE"],
    )
    with _running_lock:
        _running[lease.token] = context
    try:
        outcome = _execute(lease, context)
    finally:
        with _running_lock:
            del _running[lease.token]

    status = _report(lease, outcome)
    _count(status)
    return status


def _report(lease: lifecycle.Lease, outcome: Outcome) -> str | None:
    """lifecycle.finish(), retried while the database cannot be reached.

    The attempt's work is done and its result exists only here: losing it would turn
    a finished attempt into a "worker lost" one. Gives up (raises) after
    REPORT_RETRY_SECONDS; the monitor then recovers the attempt.
    """
    deadline = time.monotonic() + REPORT_RETRY_SECONDS
    delay = 0.2
    while True:
        try:
            return lifecycle.finish(lease, outcome)
        except (OperationalError, InterfaceError) as error:
            if time.monotonic() + delay > deadline:
                raise
            logger.warning(
                "Job %s attempt %s: result not recorded yet (%s); retrying in %.1fs",
                lease.job_id,
                lease.attempt,
                error,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
            close_old_connections()  # drop the broken connection; the next try reconnects


def stop_lost_leases() -> None:
    """Stop each running attempt whose lease this worker no longer holds.

    One query. An attempt that finished between the snapshot and the query is
    stopped too, which does nothing.
    """
    running = running_attempts()
    if not running:
        return
    held = set(
        Job.objects.filter(lease_token__in=list(running)).values_list(
            "lease_token", flat=True
        )
    )
    for token, context in running.items():
        if token in held or context.stop.is_set():
            continue
        logger.warning(
            "Job %s attempt %s: lease lost (cancelled or taken over), stopping it",
            context.job_id,
            context.attempt,
        )
        context.stop.set()


def _execute(lease: lifecycle.Lease, context: RunContext) -> Outcome:
    try:
        return get_executor(lease.job_type)(lease.spec, context)
    except Exception as error:
        # A bug in an executor must end the attempt, not leave the job running forever.
        logger.exception(
            "Job %s attempt %s: executor crashed", lease.job_id, lease.attempt
        )
        return Outcome(succeeded=False, error=f"internal error: {error!r}")


def _count(status: str | None) -> None:
    if status is None:
        return
    totals["processed"] += 1
    if status != Status.SUCCEEDED:
        totals["failed"] += 1
