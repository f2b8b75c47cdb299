"""`make bench`: InfiniTrain against raw Celery running the same `true` jobs.

Measures, for each side in turn (the other one stopped, so each has the machine to
itself): start latency on an idle system, throughput of a burst of jobs, and the
worker's memory. Prints a table of ratios and writes it to bench/results/latest.json.
See bench/README.md.
"""

import argparse
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

# `make bench` runs this file as a script: the project root is not on the path yet.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import infinitrain_side, raw_side, report  # noqa: E402
from bench.measure import Result, measure  # noqa: E402
from bench.services import BenchError  # noqa: E402

logger = logging.getLogger("bench")

RESULTS = ROOT / "bench" / "results" / "latest.json"

# An idle machine is a few percent busy; above this, other work shares it.
BUSY_SHARE = 0.15


def main() -> int:
    options = _arguments()
    _log_to_stderr()
    # A SIGTERM ends the run through the finally blocks that stop its processes.
    signal.signal(signal.SIGTERM, _exit)
    busy = _cpu_busy()
    _warn_if_busy(busy)

    try:
        with tempfile.TemporaryDirectory(prefix="infinitrain-bench-") as scratch:
            database_url = _database_url(Path(scratch))
            results = _run_both(options, database_url, Path(scratch))
    except BenchError as error:
        logger.error("Benchmark failed: %s", error)
        return 1

    metrics = report.compare(results["InfiniTrain"], results["raw Celery"])
    print(report.table(metrics))
    report.write_json(RESULTS, metrics, _context(options, database_url, busy))
    logger.info("Results written to %s", RESULTS.relative_to(ROOT))
    return 0


def _run_both(
    options: argparse.Namespace, database_url: str, scratch: Path
) -> dict[str, Result]:
    """InfiniTrain first (its setup is what fails, if anything does), then raw
    Celery; each side's processes end before the next side's start."""
    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    sample = (run_id, options.latency_samples, options.jobs, options.submitters)

    with infinitrain_side.running(database_url, options.concurrency, scratch) as it:
        infinitrain_result = measure(it, *sample)

    with raw_side.running(options.concurrency, scratch) as raw:
        raw_result = measure(raw, *sample)

    return {"raw Celery": raw_result, "InfiniTrain": infinitrain_result}


def _database_url(scratch: Path) -> str:
    """DATABASE_URL when set; otherwise a fresh SQLite file for this run."""
    return os.environ.get("DATABASE_URL") or f"sqlite:///{scratch / 'bench.sqlite3'}"


def _context(
    options: argparse.Namespace, database_url: str, busy: float
) -> dict[str, Any]:
    scheme = database_url.partition(":")[0]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": "sqlite" if scheme == "sqlite" else "postgresql",
        "jobs": options.jobs,
        "latency_samples": options.latency_samples,
        "concurrency": options.concurrency,
        "submitters": options.submitters,
        "cpus": os.cpu_count(),
        "cpu_busy_before_run": round(busy, 2),
        "python": platform.python_version(),
        **_code_version(),
    }


def _code_version() -> dict[str, Any]:
    """The commit measured, and whether uncommitted changes were measured with it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    # The results file is tracked and rewritten by every run: it does not count.
    status = subprocess.run(
        [
            *git,
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--",
            ":!bench/results",
        ],
        capture_output=True,
        text=True,
    )
    return {
        "commit": head.stdout.strip() or None,
        "uncommitted_changes": bool(status.stdout.strip()),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs", type=_at_least(1), default=500, help="jobs in the throughput run"
    )
    parser.add_argument(
        "--latency-samples",
        type=_at_least(2),
        default=50,
        help="sequential jobs timed on the idle system",
    )
    parser.add_argument(
        "--concurrency",
        type=_at_least(1),
        default=8,
        help="worker threads, on both sides",
    )
    parser.add_argument(
        "--submitters",
        type=_at_least(1),
        default=8,
        help="threads submitting the throughput run's jobs",
    )
    return parser.parse_args()


def _at_least(lowest: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a whole number"
            ) from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, not {value}")
        return value

    return parse


def _cpu_busy(seconds: float = 1.0) -> float:
    """The share of the machine's CPU time that was busy over the next `seconds`."""

    def sample() -> tuple[int, int]:
        # The first line of /proc/stat: "cpu user nice system idle iowait irq ...".
        ticks = [int(n) for n in Path("/proc/stat").read_text().split()[1:9]]
        return sum(ticks), ticks[3] + ticks[4]

    total, idle = sample()
    time.sleep(seconds)
    total_after, idle_after = sample()
    return 1 - (idle_after - idle) / max(1, total_after - total)


def _warn_if_busy(busy: float) -> None:
    # Other work takes CPU from whichever side runs meanwhile, unevenly.
    if busy > BUSY_SHARE:
        logger.warning(
            "The machine is %.0f%% busy before the run: the numbers will be noisy; "
            "run again when it is idle",
            busy * 100,
        )


def _log_to_stderr() -> None:
    # The bench's own logger: Django's logging setup, done when the bench reads the
    # database, must not reformat or silence it.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _exit(signum: int, frame: object) -> NoReturn:
    sys.exit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
