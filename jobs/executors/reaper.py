"""The reaper: kills a dead worker's job processes.

A job's processes run in process groups of their own, so when their worker process is
killed (kill -9, the OOM killer) nothing kills them, and an attempt the monitor has
already handed to another worker would go on running here. Each worker process starts
one reaper, a small child in a session of its own, and tells it over a pipe which
process groups it runs ("+PGID" when one starts, "-PGID" when it is done). When the
pipe reaches end-of-file the worker is gone: the reaper sends SIGTERM to every group
it still knows, SIGKILL after a grace period, and exits.

Run as a script (`python reaper.py GRACE`), it imports nothing of the project.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress

logger = logging.getLogger(__name__)


class Reaper:
    """The worker's side: starts the reaper on first use and keeps it informed."""

    def __init__(self) -> None:
        self._grace = 5.0
        self._groups: set[int] = set()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None

    def watch(self, pgid: int, grace: float) -> None:
        """Have the reaper end group `pgid` if this process dies; SIGKILL after `grace`."""
        with self._lock:
            self._grace = grace  # used when the reaper (re)starts
            self._groups.add(pgid)
            self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
            self._send(f"-{pgid}\n")

    def _send(self, line: str) -> None:
        try:
            self._write(line)
        except OSError as error:
            # The reaper died; a new one learns every group still running.
            logger.warning("Reaper gone (%s); starting another", error)
            self._process = None
            with suppress(OSError):
                self._write("".join(f"+{pgid}\n" for pgid in self._groups))

    def _write(self, text: str) -> None:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), str(self._grace)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        assert self._process.stdin is not None
        self._process.stdin.write(text.encode())
        self._process.stdin.flush()


def _reap(groups: set[int], grace: float) -> None:
    for pgid in groups:
        _signal(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        groups = {pgid for pgid in groups if _signal(pgid, 0)}
        time.sleep(0.05)
    for pgid in groups:
        _signal(pgid, signal.SIGKILL)


def _signal(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def main(grace: float) -> None:
    # The worker's Ctrl-C reaches its whole terminal group; the reaper must outlive
    # the worker to do its work, so it ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        sign, pgid = line[:1], line[1:].strip()
        if pgid.isdigit():
            (groups.add if sign == b"+" else groups.discard)(int(pgid))
    _reap(groups, grace)


if __name__ == "__main__":
    main(float(sys.argv[1]))
