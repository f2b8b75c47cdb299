"""Command jobs: one shell command line, run by /bin/sh -c in its own process group."""

from typing import Any

from jobs.executors.base import Outcome, RunContext
from jobs.executors.process import run_process


def run(spec: dict[str, Any], context: RunContext) -> Outcome:
    argv = ["/bin/sh", "-c", spec["command"]]
    return run_process(argv, context, env=spec.get("env"), cwd=spec.get("cwd"))
