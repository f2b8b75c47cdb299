"""The one small interface every job type implements.

An executor turns a job's stored spec into an attempt's outcome. It never touches the
database: the worker claims the attempt, hands the executor a RunContext, and records
the Outcome it gets back (or discards it, when the attempt's lease was taken).
"""

import threading
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

# Why an attempt ended before its work did: its time was up, or context.stop was set.
Interruption = Literal["timeout", "stop"]


@dataclass(frozen=True)
class RunContext:
    """What an executor needs to run one attempt.

    `stop` is set by the worker when the attempt must end early (the job was cancelled
    or its lease was taken by another worker); the executor then stops its process group
    or request and returns promptly with `Outcome.stopped` set.
    """

    job_id: str
    attempt: int
    timeout: float
    output_limit: int
    kill_grace: float
    stop: threading.Event = field(default_factory=threading.Event)

    def child_env(self) -> dict[str, str]:
        return {
            "INFINITRAIN_JOB_ID": self.job_id,
            "INFINITRAIN_ATTEMPT": str(self.attempt),
        }


@dataclass
class Outcome:
    """The result of one attempt, as the API shows it.

    Command and script jobs fill exit_code, stdout and stderr; HTTP jobs fill
    status_code, headers and body. `error` is a one-line human reason when the attempt
    did not succeed ("exit code 1", "timed out after 2s", "connection refused").
    """

    succeeded: bool
    error: str = ""
    timed_out: bool = False
    stopped: bool = False
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    status_code: int | None = None
    headers: dict[str, str] | None = None
    body: str = ""
    body_truncated: bool = False


class Executor(Protocol):
    """Runs one attempt of one job type; `spec` is the job's validated type fields."""

    def __call__(self, spec: dict[str, Any], context: RunContext) -> Outcome: ...
