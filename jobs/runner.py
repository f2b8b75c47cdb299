"""The worker side of one attempt: claim, run, report.

The worker keeps a table of the attempts it is running, so its heartbeat can report
them and a stop request (cancellation, lost lease) can reach the running executor.
"""

import logging
import threading

from django.conf import settings

from . import lifecycle
from .executors import get_executor
from .executors.base import Outcome, RunContext

logger = logging.getLogger(__name__)

_running: dict[str, RunContext] = {}
_running_lock = threading.Lock()


def running_attempts() -> list[RunContext]:
    """The attempts this worker process runs right now."""
    with _running_lock:
        return list(_running.values())


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

    return lifecycle.finish(lease, outcome)


def _execute(lease: lifecycle.Lease, context: RunContext) -> Outcome:
    try:
        return get_executor(lease.job_type)(lease.spec, context)
    except Exception as error:
        # A bug in an executor must end the attempt, not leave the job running forever.
        logger.exception(
            "Job %s attempt %s: executor crashed", lease.job_id, lease.attempt
        )
        return Outcome(succeeded=False, error=f"internal error: {error!r}")
