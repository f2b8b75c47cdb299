"""What the benchmark measures, the same way for InfiniTrain and for raw Celery.

Times come from the records each side keeps (when the worker started and finished the
job), compared with the wall clock of the moment the bench sent it: all processes run on
this machine, so they share the clock. How often the bench polls for completion changes
how long a run takes, not what it measures.
"""

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from bench.services import BenchError, Memory, Service

logger = logging.getLogger("bench")

# Jobs run before the latency samples and not counted: the first jobs a worker runs
# open its connections and import lazily loaded modules.
WARMUP_JOBS = 3

# Idle-system latency is tens of milliseconds, so a single job is polled often; a batch
# takes seconds, and polling it often would only take CPU from the worker.
POLL_ONE = 0.01
POLL_BATCH = 0.1


@dataclass(frozen=True)
class Submission:
    sent: float
    answered: float


@dataclass(frozen=True)
class Run:
    """One job as its worker recorded it: wall-clock seconds since the epoch."""

    started: float
    finished: float
    succeeded: bool


class Side(Protocol):
    """One system under test: submits `true` jobs and reports the finished ones."""

    name: str
    worker: Service

    def submit(self, key: str) -> Submission: ...

    def finished(self, keys: Sequence[str]) -> list[Run]: ...


@dataclass(frozen=True)
class Latency:
    """Milliseconds per sequential job on an otherwise idle system."""

    submit_ms: list[float]
    start_ms: list[float]
    run_ms: list[float]
    finish_ms: list[float]


@dataclass(frozen=True)
class Throughput:
    jobs: int
    submit_seconds: float
    total_seconds: float
    worker_cpu_seconds: float

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.total_seconds

    @property
    def submitted_per_second(self) -> float:
        return self.jobs / self.submit_seconds

    @property
    def worker_cpu_ms_per_job(self) -> float:
        return _ms(self.worker_cpu_seconds) / self.jobs


@dataclass(frozen=True)
class Result:
    latency: Latency
    throughput: Throughput
    memory: Memory


def measure(
    side: Side, run_id: str, samples: int, jobs: int, submitters: int
) -> Result:
    """Latency first, on the idle system; then throughput; then the worker's memory."""
    latency = measure_latency(side, f"{run_id}-lat", samples)
    throughput = measure_throughput(side, f"{run_id}-tp", jobs, submitters)
    memory = side.worker.memory()
    logger.info(
        "%s: worker RSS %.1f MiB after the throughput run (peak %.1f MiB)",
        side.name,
        memory.rss_mib,
        memory.peak_mib,
    )
    return Result(latency, throughput, memory)


def measure_latency(side: Side, prefix: str, samples: int) -> Latency:
    """Submit one job at a time and wait for it before the next."""
    logger.info(
        "%s: measuring latency, %d sequential `true` jobs (after %d warm-up jobs)",
        side.name,
        samples,
        WARMUP_JOBS,
    )
    for n in range(WARMUP_JOBS):
        _one_job(side, f"{prefix}-warmup-{n}")

    latency = Latency([], [], [], [])
    for n in range(samples):
        submission, run = _one_job(side, f"{prefix}-{n}")
        latency.submit_ms.append(_ms(submission.answered - submission.sent))
        latency.start_ms.append(_ms(run.started - submission.sent))
        latency.run_ms.append(_ms(run.finished - run.started))
        latency.finish_ms.append(_ms(run.finished - submission.sent))
    return latency


def measure_throughput(
    side: Side, prefix: str, jobs: int, submitters: int
) -> Throughput:
    """Submit `jobs` jobs from `submitters` threads at once; time until all finished."""
    logger.info(
        "%s: measuring throughput, %d `true` jobs submitted by %d threads",
        side.name,
        jobs,
        submitters,
    )
    keys = [f"{prefix}-{n}" for n in range(jobs)]

    cpu = side.worker.cpu_seconds()
    began = time.time()
    pool = ThreadPoolExecutor(submitters, thread_name_prefix="submit")
    try:
        submissions = list(pool.map(side.submit, keys))
    finally:
        # When the run is interrupted, the jobs not yet sent are dropped, not sent.
        pool.shutdown(cancel_futures=True)
    runs = _wait(side, keys, timeout=60 + jobs * 0.2, poll=POLL_BATCH)
    # Includes the worker's idle work (heartbeats, broker polls) while the bench waits.
    cpu = side.worker.cpu_seconds() - cpu

    submitted = max(s.answered for s in submissions) - began
    total = max(run.finished for run in runs) - began
    return Throughput(jobs, submitted, total, cpu)


def _one_job(side: Side, key: str) -> tuple[Submission, Run]:
    submission = side.submit(key)
    [run] = _wait(side, [key], timeout=30, poll=POLL_ONE)
    return submission, run


def _wait(side: Side, keys: Sequence[str], timeout: float, poll: float) -> list[Run]:
    """The runs of `keys` once all have finished; raises if one failed or is late."""
    deadline = time.monotonic() + timeout
    while len(runs := side.finished(keys)) < len(keys):
        side.worker.check()
        if time.monotonic() > deadline:
            raise BenchError(
                f"{side.name}: {len(runs)} of {len(keys)} jobs finished after "
                f"{timeout:g}s; the end of the worker's log:\n"
                f"{side.worker.output()[-3000:]}"
            )
        time.sleep(poll)

    failed = sum(not run.succeeded for run in runs)
    if failed:
        # A failed `true` means a broken setup, and its timing would mislead.
        raise BenchError(f"{side.name}: {failed} of {len(keys)} `true` jobs failed")
    return runs


def _ms(seconds: float) -> float:
    return seconds * 1000
