"""The run command's Redis: use one that answers, start one, or say how to get one."""

from contextlib import suppress
from pathlib import Path

import pytest
import redis
from django.conf import settings

from infinitrain_project.localredis import RedisUnavailable, ensure_redis, reachable

from .redis_server import free_port


def test_a_redis_that_answers_is_used_as_it_is(tmp_path: Path) -> None:
    assert ensure_redis(settings.REDIS_URL, tmp_path) == "already running"
    assert list(tmp_path.iterdir()) == []


def test_a_local_redis_server_is_started_when_none_answers(tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    assert not reachable(url)

    how = ensure_redis(url, tmp_path)

    try:
        assert how.startswith("started redis-server")
        assert reachable(url)
        # Its append-only file keeps queued messages across a restart.
        assert redis.Redis.from_url(url).config_get("appendonly") == {
            "appendonly": "yes"
        }
    finally:
        with suppress(redis.ConnectionError):
            redis.Redis.from_url(url).shutdown(nosave=True)


def test_without_redis_server_installed_it_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    url = f"redis://127.0.0.1:{free_port()}/0"

    with pytest.raises(RedisUnavailable, match="apt-get install redis-server"):
        ensure_redis(url, tmp_path)
