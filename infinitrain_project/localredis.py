"""Finding a Redis for local runs and tests, starting one when it is installed."""

import logging
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

logger = logging.getLogger(__name__)

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
INSTALL_HINT = "Install Redis (sudo apt-get install redis-server) or set REDIS_URL to a running one."


class RedisUnavailable(Exception):
    pass


def reachable(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def ensure_redis(url: str, data_dir: Path) -> str:
    """Return how `url` was made reachable; raise RedisUnavailable with a hint if not.

    A local URL with no server behind it gets a redis-server of its own (append-only
    file on, data under `data_dir`) when one is installed.
    """
    if reachable(url):
        return "already running"
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        raise RedisUnavailable(f"No Redis answers at {url}. {INSTALL_HINT}")
    server = shutil.which("redis-server")
    if server is None:
        raise RedisUnavailable(f"No Redis answers at {url}. {INSTALL_HINT}")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = str(parts.port or 6379)
    subprocess.run(
        [
            server, "--port", port, "--bind", "127.0.0.1", "--daemonize", "yes",
            "--dir", str(data_dir), "--appendonly", "yes", "--save", "",
            "--logfile", str(data_dir / f"redis-{port}.log"),
        ],
        check=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not reachable(url):
        if time.monotonic() > deadline:
            raise RedisUnavailable(
                f"Started redis-server on port {port}, but it does not answer."
            )
        time.sleep(0.1)
    logger.info("Started a local redis-server on port %s (data in %s)", port, data_dir)
    return f"started redis-server on port {port}"
