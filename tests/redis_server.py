"""A Redis of the test run's own, with its append-only file on, that tests can restart."""

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import pytest
import redis


class RedisServer:
    """A redis-server process owned by the test run; it can be restarted in place."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="infinitrain-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise pytest.UsageError(
                "redis-server is not installed: sudo apt-get install redis-server, "
                "or set INFINITRAIN_TEST_REDIS_URL to a Redis the tests may empty."
            )
        self.process = subprocess.Popen(
            [
                executable, "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.directory), "--appendonly", "yes",
                "--appendfsync", "everysec", "--save", "",
                "--logfile", str(self.directory / "redis.log"),
            ]
        )  # fmt: skip
        self._wait_until_answering()

    def close(self) -> None:
        """Stop for good and remove the data."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def stop(self) -> None:
        """Shut down cleanly: Redis syncs its append-only file first."""
        if self.process is None:
            return
        client = redis.Redis.from_url(self.url)
        # Shutting down closes the connection as it succeeds.
        with suppress(redis.ConnectionError):
            client.shutdown()
        self.process.wait(timeout=30)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_until_answering(self) -> None:
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
