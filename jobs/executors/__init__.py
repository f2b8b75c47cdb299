"""The one registry of job types: a new type is one new module and one line here."""

from jobs.executors import command, http, script
from jobs.executors.base import Executor

EXECUTORS: dict[str, Executor] = {
    "command": command.run,
    "script": script.run,
    "http": http.run,
}


def get_executor(job_type: str) -> Executor:
    """The executor for `job_type`; raises KeyError naming the known types."""
    try:
        return EXECUTORS[job_type]
    except KeyError:
        known = ", ".join(sorted(EXECUTORS))
        raise KeyError(
            f"no executor for job type {job_type!r} (known: {known})"
        ) from None
