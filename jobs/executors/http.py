"""HTTP jobs: one request; its status, headers and the head of its body.

The request runs in a helper thread, so the attempt's deadline (context.timeout) and
context.stop hold whatever the server does: the caller gets its Outcome on time and the
helper is told to give up. The helper notices as soon as more data arrives, or else
when its connect or read timeout fires -- neither is ever longer than the attempt's
timeout, so an abandoned helper outlives its attempt by at most that much.

Only the first output_limit bytes of the body are kept: the head of a response is what
people read. Redirects are followed.

The request ignores the worker's environment (trust_env is off), for the reason child
processes do: ~/.netrc would otherwise add the worker's credentials to a job's request.
That also means proxy variables (HTTP_PROXY, ...) and REQUESTS_CA_BUNDLE are not used.
"""

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from jobs.durations import format_duration
from jobs.executors.base import Interruption, Outcome, RunContext

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT = 10.0
CHUNK_SIZE = 8192

# How often the caller looks at context.stop while the helper thread works.
POLL_SECONDS = 0.05


def run(spec: dict[str, Any], context: RunContext) -> Outcome:
    exchange = Exchange(spec, context)
    helper = threading.Thread(
        target=exchange.perform, name=f"job-{context.job_id}-http", daemon=True
    )
    helper.start()

    interruption = _wait(exchange.done, context)
    if interruption is None:
        assert exchange.outcome is not None  # set before done
        return exchange.outcome

    logger.info(
        "Job %s attempt %s: abandoning the HTTP request (%s)",
        context.job_id,
        context.attempt,
        interruption,
    )
    exchange.abandon()
    return _interrupted(interruption, context)


def _wait(done: threading.Event, context: RunContext) -> Interruption | None:
    deadline = time.monotonic() + context.timeout
    while not done.wait(max(0.0, min(POLL_SECONDS, deadline - time.monotonic()))):
        if context.stop.is_set():
            return "stop"
        if time.monotonic() >= deadline:
            return "timeout"
    return None


def _interrupted(interruption: Interruption, context: RunContext) -> Outcome:
    if interruption == "stop":
        return Outcome(succeeded=False, error="stopped", stopped=True)
    error = f"timed out after {format_duration(context.timeout)}"
    return Outcome(succeeded=False, error=error, timed_out=True)


class Exchange:
    """One request, performed by a helper thread, which the caller may abandon."""

    def __init__(self, spec: dict[str, Any], context: RunContext) -> None:
        self.spec = spec
        self.context = context
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        self._abandoned = threading.Event()

    def perform(self) -> None:
        """The helper thread's work: set `outcome`, then `done`; never raises."""
        try:
            self.outcome = self._perform()
        except requests.RequestException as exc:
            error, timed_out = _describe(exc, self.spec, self.context)
            self.outcome = Outcome(succeeded=False, error=error, timed_out=timed_out)
        except Exception as exc:
            # Raised in this thread it would vanish, and the caller would wait out
            # the whole timeout for nothing.
            logger.exception(
                "Job %s attempt %s: HTTP request crashed",
                self.context.job_id,
                self.context.attempt,
            )
            self.outcome = Outcome(succeeded=False, error=f"request failed: {exc!r}")
        finally:
            self.done.set()

    def abandon(self) -> None:
        self._abandoned.set()

    def _perform(self) -> Outcome:
        spec, context = self.spec, self.context
        logger.debug(
            "Job %s attempt %s: %s %s",
            context.job_id,
            context.attempt,
            spec.get("method") or "GET",
            _address(spec["url"]),
        )
        with requests.Session() as session:
            session.trust_env = False
            arguments = _request_arguments(spec, context)
            with session.request(**arguments) as response:
                return self._receive(response)

    def _receive(self, response: requests.Response) -> Outcome:
        outcome = _status_outcome(response, self.spec)
        body = bytearray()

        try:
            outcome.body_truncated = self._read_body(response, body)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
            outcome.succeeded = False
            outcome.error, outcome.timed_out = _describe(exc, self.spec, self.context)

        outcome.body = _decode(bytes(body), response.encoding)
        return outcome

    def _read_body(self, response: requests.Response, body: bytearray) -> bool:
        """Append the first output_limit bytes of the body; True if there was more.

        read1 returns whatever has arrived, so a slow server cannot keep the helper
        from seeing that it was abandoned (iter_content waits for whole chunks).
        """
        limit = self.context.output_limit
        while chunk := response.raw.read1(CHUNK_SIZE, decode_content=True):
            if self._abandoned.is_set():
                break
            room = limit - len(body)
            body += chunk[:room]
            if len(chunk) > room:
                return True
        return False


def _request_arguments(spec: dict[str, Any], context: RunContext) -> dict[str, Any]:
    body = spec.get("body")
    return {
        "method": spec.get("method") or "GET",
        "url": spec["url"],
        "headers": spec.get("headers") or {},
        # http.client would encode a str body as Latin-1; jobs are written in UTF-8.
        "data": body.encode("utf-8") if body is not None else None,
        "json": spec.get("json"),
        "timeout": _timeouts(spec, context),
        "stream": True,
    }


def _timeouts(spec: dict[str, Any], context: RunContext) -> tuple[float, float]:
    """(connect, read); neither outlasts the attempt, or an abandoned helper would."""
    connect = spec.get("connect_timeout") or DEFAULT_CONNECT_TIMEOUT
    read = spec.get("read_timeout") or context.timeout
    return min(connect, context.timeout), min(read, context.timeout)


def _status_outcome(response: requests.Response, spec: dict[str, Any]) -> Outcome:
    status = response.status_code
    expected = spec.get("expected_statuses")
    succeeded = status in expected if expected else 200 <= status < 300
    return Outcome(
        succeeded=succeeded,
        error="" if succeeded else f"HTTP {status}",
        status_code=status,
        headers=dict(response.headers),
    )


def _describe(
    exc: requests.RequestException | urllib3.exceptions.HTTPError,
    spec: dict[str, Any],
    context: RunContext,
) -> tuple[str, bool]:
    """A one-line reason for a failed request, and whether it was a timeout."""
    connect, read = _timeouts(spec, context)
    causes = list(_causes(exc))

    if isinstance(exc, requests.ConnectTimeout):
        return f"connect timed out after {format_duration(connect)}", True
    if any(
        isinstance(cause, TimeoutError | urllib3.exceptions.ReadTimeoutError)
        for cause in causes
    ):
        return f"timed out after {format_duration(read)} waiting for the server", True
    if any(isinstance(cause, ConnectionRefusedError) for cause in causes):
        return f"connection refused: {_address(spec['url'])}", False
    if isinstance(exc, requests.ConnectionError | urllib3.exceptions.ProtocolError):
        return f"connection to {_address(spec['url'])} failed: {causes[-1]}", False
    return f"request failed: {exc}", False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps, outermost first (urllib3 nests deeply)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _address(url: str) -> str:
    # Without any user:password@ part: error text is shown to whoever reads the job.
    return urlsplit(url).netloc.rpartition("@")[2] or url


def _decode(data: bytes, encoding: str | None) -> str:
    try:
        return data.decode(encoding or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")
