"""The processes a benchmark starts: each logs to a file of its own and is stopped
(SIGTERM, then SIGKILL) when the benchmark ends, however it ends."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# gunicorn and a warm-shutting-down celery worker both stop within a second or two
# when idle; a process that takes longer is stuck and gets SIGKILL.
STOP_SECONDS = 10.0
READY_SECONDS = 60.0


class BenchError(RuntimeError):
    """The benchmark cannot go on; the message says why and what the logs said."""


@dataclass(frozen=True)
class Memory:
    rss_mib: float
    peak_mib: float


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def check(self) -> None:
        """Raise BenchError, with the end of its log, if the process has exited."""
        if self.process.poll() is not None:
            raise BenchError(
                f"{self.name} exited with status {self.process.returncode}; "
                f"the end of its log:\n{self.output()[-3000:]}"
            )

    def memory(self) -> Memory:
        """Resident and peak resident memory, from /proc/PID/status."""
        fields = {}
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value
        return Memory(_mib(fields["VmRSS"]), _mib(fields["VmHWM"]))

    def cpu_seconds(self) -> float:
        """User and system CPU time of the process itself (not of its children)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_bytes()
        # The command name may hold spaces: the fields that matter follow its ")".
        fields = stat.rpartition(b")")[2].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            # SIGKILL would orphan gunicorn's workers if sent to the master alone;
            # the process leads a session of its own, so its group is exactly its
            # children.
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start(name: str, command: list[str], env: Mapping[str, str], logs: Path) -> Service:
    """Start `command` in the project root with exactly `env`, logging to logs/NAME.log.

    The process gets a session of its own, so a Ctrl-C at the terminal reaches only
    the benchmark, which then stops its processes in order.
    """
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(name, process, log)


def celery_worker(
    name: str, app: str, concurrency: int, env: Mapping[str, str], logs: Path
) -> Service:
    """One `celery worker` with the pool both sides of the benchmark use."""
    command = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "--pool", "threads", "--concurrency", str(concurrency), "-Q", "default",
        "--hostname", f"{name}@%h", "--without-mingle", "--without-gossip",
        "--loglevel", "INFO",
    ]  # fmt: skip
    return start(name, command, env, logs)


def wait_ready(worker: Service) -> None:
    """Wait for the worker's own "ready." log line: it consumes from then on."""
    wait_until(
        lambda: " ready." in worker.output(),
        READY_SECONDS,
        f"{worker.name} to start",
        [worker],
    )


def wait_until(
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    services: Sequence[Service] = (),
    poll: float = 0.05,
) -> None:
    """Poll `ready`; raise BenchError when a service dies or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not ready():
        for service in services:
            service.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(poll)


def free_port() -> int:
    """A port free right now; another process could take it before we bind it,
    which on a benchmark machine is unlikely enough."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _mib(value: str) -> float:
    kib = int(value.split()[0])  # "  123456 kB"
    return kib / 1024
