"""The comparison as a table for the operator and as JSON for later runs to diff."""

import json
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.measure import Result


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    infinitrain: float
    raw_celery: float

    @property
    def ratio(self) -> float:
        """InfiniTrain over raw Celery: for times and memory, above 1 is worse; for
        rates, below 1 is."""
        return self.infinitrain / self.raw_celery if self.raw_celery else float("nan")


# name, unit, and how to read it from one side's result.
ROWS: list[tuple[str, str, Callable[[Result], float]]] = [
    ("submit call p50", "ms", lambda r: p50(r.latency.submit_ms)),
    ("submit -> start p50", "ms", lambda r: p50(r.latency.start_ms)),
    ("submit -> start p95", "ms", lambda r: p95(r.latency.start_ms)),
    ("start -> finish p50", "ms", lambda r: p50(r.latency.run_ms)),
    ("submit -> finish p50", "ms", lambda r: p50(r.latency.finish_ms)),
    ("submit -> finish p95", "ms", lambda r: p95(r.latency.finish_ms)),
    ("throughput", "jobs/s", lambda r: r.throughput.jobs_per_second),
    ("submit rate under load", "jobs/s", lambda r: r.throughput.submitted_per_second),
    ("worker CPU per job", "ms", lambda r: r.throughput.worker_cpu_ms_per_job),
    ("worker RSS after run", "MiB", lambda r: r.memory.rss_mib),
    ("worker peak RSS", "MiB", lambda r: r.memory.peak_mib),
]


def compare(infinitrain: Result, raw_celery: Result) -> list[Metric]:
    return [
        Metric(name, unit, read(infinitrain), read(raw_celery))
        for name, unit, read in ROWS
    ]


def table(metrics: list[Metric]) -> str:
    rows = [("metric", "InfiniTrain", "raw Celery", "ratio")]
    rows += [
        (
            f"{m.name} ({m.unit})",
            f"{m.infinitrain:.1f}",
            f"{m.raw_celery:.1f}",
            f"{m.ratio:.2f}x",
        )
        for m in metrics
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [_line(row, widths) for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    lines.append(
        "ratio = InfiniTrain / raw Celery (times, memory: lower is better; rates: higher is)."
    )
    return "\n".join(lines)


def write_json(path: Path, metrics: list[Metric], context: dict[str, Any]) -> None:
    document = {
        **context,
        "metrics": [_rounded(m) for m in metrics],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def p50(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18]


def _line(row: tuple[str, ...], widths: list[int]) -> str:
    first = row[0].ljust(widths[0])
    rest = [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
    return " | ".join([first, *rest])


def _rounded(metric: Metric) -> dict[str, Any]:
    # Run-to-run noise is far above a hundredth of a millisecond.
    fields = {**asdict(metric), "ratio": metric.ratio}
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in fields.items()}
