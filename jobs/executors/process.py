"""Running one attempt as a child process: the machinery command and script jobs share.

Environment. A child never inherits the worker's environment: that holds the worker's
secrets (DATABASE_URL, DJANGO_SECRET_KEY, broker credentials). It gets a minimal base
instead -- PATH (the worker's, or a default), HOME, and LANG, LC_ALL and TZ when the
worker has them -- then the job's own `env` on top, then INFINITRAIN_JOB_ID and
INFINITRAIN_ATTEMPT, which a job cannot override.

Process group. The child starts in a session of its own, so it and everything it spawns
share one process group that can be signalled as a whole. When the attempt ends -- by
timeout, by `context.stop`, or because the child exited -- every process still in the
group gets SIGTERM, then SIGKILL after `context.kill_grace` seconds.

Output. Two reader threads keep the last `context.output_limit` bytes of stdout and
stderr each; the tail of a log is where the error usually is.

Limitations: a process that leaves the group (setsid, daemonizing, `set -m` in a shell)
escapes the clean-up; confining it needs a cgroup per attempt. Checking which processes
are left reads /proc, so the clean-up waits out the whole grace on systems without it.
"""

import logging
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import IO

from jobs.durations import format_duration
from jobs.executors.base import Interruption, Outcome, RunContext
from jobs.executors.reaper import Reaper

logger = logging.getLogger(__name__)

PASSED_THROUGH = ("LANG", "LC_ALL", "TZ")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

# Short enough that `context.stop` ends an attempt without a noticeable delay, long
# enough that waiting costs nothing measurable.
POLL_SECONDS = 0.05

# Once the group is gone the pipes hold at most a pipe buffer each; anything slower
# means a process outside the group still holds them open.
DRAIN_SECONDS = 1.0

# How long to wait for SIGKILLed processes to disappear from /proc.
REAP_SECONDS = 1.0

READ_SIZE = 65536

# Ends this worker's job processes if the worker itself is killed.
REAPER = Reaper()


def child_environment(
    job_env: Mapping[str, str] | None, context: RunContext
) -> dict[str, str]:
    """The whole environment of a job's child; see the module docstring for why."""
    env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH}
    env["HOME"] = os.path.expanduser("~")
    env.update(
        {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    )

    env.update(job_env or {})
    env.update(context.child_env())
    return env


def run_process(
    argv: list[str],
    context: RunContext,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Outcome:
    """Run `argv` to the end of the attempt and describe how it went.

    Never raises for a problem of the job's own making (missing cwd, missing program):
    those come back as a failed Outcome. Blocks until every process of the child's
    group is gone, at most timeout + kill_grace plus a moment.
    """
    workdir = cwd or tempfile.gettempdir()
    problem = _check_workdir(workdir)
    if problem:
        return Outcome(succeeded=False, error=problem)

    try:
        child = _start(argv, child_environment(env, context), workdir)
    except (OSError, ValueError) as exc:
        logger.info(
            "Job %s attempt %s: could not start %s: %s", *_who(context), argv[0], exc
        )
        return Outcome(
            succeeded=False, error=f"could not start {argv[0]}: {_reason(exc)}"
        )

    logger.debug("Job %s attempt %s: started process %s", *_who(context), child.pid)
    REAPER.watch(child.pid, context.kill_grace)
    return _supervise(child, context)


def _check_workdir(workdir: str) -> str:
    if not os.path.exists(workdir):
        return f"cwd {workdir} does not exist"
    if not os.path.isdir(workdir):
        return f"cwd {workdir} is not a directory"
    return ""


def _start(
    argv: list[str], env: dict[str, str], workdir: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=workdir,
        env=env,
        start_new_session=True,
    )


def _supervise(child: subprocess.Popen[bytes], context: RunContext) -> Outcome:
    assert child.stdout is not None and child.stderr is not None
    stdout = Tail(child.stdout, context.output_limit, f"job-{context.job_id}-stdout")
    stderr = Tail(child.stderr, context.output_limit, f"job-{context.job_id}-stderr")

    interruption: Interruption | None = None
    try:
        interruption = _wait_for_leader(child.pid, context)
    finally:
        # Also on the way out of an exception (a worker's soft time limit, a shutdown):
        # a job's processes must never outlive its attempt.
        if _has_exited(child.pid):
            # Reaping first is safe: Linux reuses no pid that is still some group's
            # id, and with the leader gone the usual case (nothing left in the
            # group) is settled by one killpg, without reading /proc.
            child.wait()
        _end_group(child.pid, context, interruption)
        REAPER.forget(child.pid)
        returncode = child.wait()

    _drain(stdout, stderr, context)
    return _outcome(returncode, interruption, stdout, stderr, context)


def _wait_for_leader(pid: int, context: RunContext) -> Interruption | None:
    """Wait until the child exits, its time is up, or the worker asks it to stop.

    The child is left unreaped here: while its zombie exists its pid cannot be reused.
    """
    deadline = time.monotonic() + context.timeout
    with _exit_watch(pid, context.stop) as pause:
        while not _has_exited(pid):
            if context.stop.is_set():
                return "stop"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            pause(min(remaining, POLL_SECONDS))
    return None


@contextmanager
def _exit_watch(pid: int, stop: threading.Event) -> Iterator[Callable[[float], object]]:
    """A pause that ends when the child exits (with a pidfd), or else on stop."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        yield stop.wait
        return

    try:
        yield lambda seconds: select.select([pidfd], [], [], seconds)
    finally:
        os.close(pidfd)


def _has_exited(pid: int) -> bool:
    try:
        return (
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        )
    except ChildProcessError:
        return True  # reaped by someone else: gone either way


def _end_group(
    pgid: int, context: RunContext, interruption: Interruption | None
) -> None:
    """SIGTERM every process left in the group; SIGKILL what remains after the grace."""
    if not _group_alive(pgid):
        return

    if interruption is None:
        logger.info("Job %s attempt %s: ending processes left behind", *_who(context))
    else:
        logger.info(
            "Job %s attempt %s: ending its processes (%s)", *_who(context), interruption
        )
    _signal_group(pgid, signal.SIGTERM)

    if _wait_until_gone(pgid, context.kill_grace):
        return
    logger.warning(
        "Job %s attempt %s: processes outlived SIGTERM by %s, sending SIGKILL",
        *_who(context),
        format_duration(context.kill_grace),
    )
    _signal_group(pgid, signal.SIGKILL)
    _wait_until_gone(pgid, REAP_SECONDS)


def _signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _wait_until_gone(pgid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_SECONDS)
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs.

    Zombies don't count: our own unreaped leader is one, and an orphan's may linger
    where PID 1 does not reap. Without /proc any member, zombie or not, counts.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    if not os.path.isdir("/proc/self"):
        return True
    return any(_runs_in_group(entry.name, pgid) for entry in os.scandir("/proc"))


def _runs_in_group(pid: str, pgid: int) -> bool:
    if not pid.isdigit():
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name may hold spaces and ")": fields follow the last ")".
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return False  # exited while we looked
    return fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid


def _drain(stdout: "Tail", stderr: "Tail", context: RunContext) -> None:
    if stdout.finish(DRAIN_SECONDS) and stderr.finish(DRAIN_SECONDS):
        return
    logger.warning(
        "Job %s attempt %s: a process outside the job's group holds its output open; "
        "returning the output read so far",
        *_who(context),
    )


def _outcome(
    returncode: int,
    interruption: Interruption | None,
    stdout: "Tail",
    stderr: "Tail",
    context: RunContext,
) -> Outcome:
    logger.debug(
        "Job %s attempt %s: process exited with %s", *_who(context), returncode
    )
    return Outcome(
        succeeded=interruption is None and returncode == 0,
        error=_error(returncode, interruption, context),
        timed_out=interruption == "timeout",
        stopped=interruption == "stop",
        exit_code=returncode,
        stdout=stdout.text(),
        stderr=stderr.text(),
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
    )


def _error(
    returncode: int, interruption: Interruption | None, context: RunContext
) -> str:
    if interruption == "timeout":
        return f"timed out after {format_duration(context.timeout)}"
    if interruption == "stop":
        return "stopped"
    if returncode < 0:
        return f"killed by signal {-returncode}{_signal_name(-returncode)}"
    return f"exit code {returncode}" if returncode else ""


def _signal_name(signum: int) -> str:
    try:
        return f" ({signal.Signals(signum).name})"
    except ValueError:
        return ""


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _who(context: RunContext) -> tuple[str, int]:
    return context.job_id, context.attempt


class Tail:
    """The last `limit` bytes of a pipe, read to its end by a thread of its own."""

    def __init__(self, pipe: IO[bytes], limit: int, name: str) -> None:
        self.truncated = False
        self._limit = limit
        self._data = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._read, args=(pipe,), name=name, daemon=True
        )
        self._thread.start()

    def finish(self, timeout: float) -> bool:
        """Wait for the end of the pipe; False if it is still open after `timeout`."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def text(self) -> str:
        with self._lock:
            data = bytes(self._data)
        if self.truncated:
            # The cut may have split a character: drop its continuation bytes.
            data = data.lstrip(bytes(range(0x80, 0xC0)))
        return data.decode("utf-8", errors="replace")

    def _read(self, pipe: IO[bytes]) -> None:
        with pipe:
            while chunk := os.read(pipe.fileno(), READ_SIZE):
                self._keep(chunk)

    def _keep(self, chunk: bytes) -> None:
        with self._lock:
            self._data += chunk
            overflow = len(self._data) - self._limit
            if overflow > 0:
                del self._data[:overflow]
                self.truncated = True
