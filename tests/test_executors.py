"""The executors, called directly: real child processes and a real local HTTP server."""

import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jobs.durations import format_duration
from jobs.executors import EXECUTORS, command, get_executor, http, script
from jobs.executors.base import RunContext


def make_context(**overrides: Any) -> RunContext:
    values: dict[str, Any] = {
        "job_id": "job-42",
        "attempt": 3,
        "timeout": 5.0,
        "output_limit": 10_000,
        "kill_grace": 0.5,
    }
    values.update(overrides)
    return RunContext(**values)


def run_command(line: str, **spec: Any) -> Any:
    context = spec.pop("context", None) or make_context()
    return command.run({"command": line, **spec}, context)


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose command line holds `marker` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # not a process, or gone while we looked
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique `sleep` duration that tells this test's processes apart."""
    value = f"600.{uuid.uuid4().int % 10**9}"
    yield value
    for pid in processes_with(value):  # leave nothing behind, even when a test fails
        os.kill(pid, signal.SIGKILL)


# Command jobs


def test_command_output_and_exit_code_are_captured() -> None:
    outcome = run_command("echo out; echo err >&2; exit 3")

    assert (outcome.stdout, outcome.stderr) == ("out\n", "err\n")
    assert outcome.exit_code == 3
    assert not outcome.succeeded
    assert outcome.error == "exit code 3"


def test_command_that_exits_zero_succeeds() -> None:
    outcome = run_command("echo hello")

    assert outcome.succeeded
    assert (outcome.exit_code, outcome.error, outcome.stdout) == (0, "", "hello\n")


def test_command_killed_by_a_signal_says_which() -> None:
    outcome = run_command("kill -9 $$")

    assert outcome.exit_code == -9
    assert outcome.error == "killed by signal 9 (SIGKILL)"


def test_env_and_cwd_are_applied_and_the_job_identity_is_set(tmp_path: Path) -> None:
    line = 'echo "$GREETING $INFINITRAIN_JOB_ID $INFINITRAIN_ATTEMPT"; pwd'

    outcome = run_command(line, env={"GREETING": "hi"}, cwd=str(tmp_path))

    assert outcome.stdout.splitlines() == ["hi job-42 3", str(tmp_path)]


def test_job_env_cannot_override_the_job_identity() -> None:
    env = {"INFINITRAIN_JOB_ID": "someone-else", "INFINITRAIN_ATTEMPT": "99"}

    outcome = run_command('echo "$INFINITRAIN_JOB_ID $INFINITRAIN_ATTEMPT"', env=env)

    assert outcome.stdout == "job-42 3\n"


def test_worker_secrets_do_not_reach_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DJANGO_SECRET_KEY", "very-secret-key")
    monkeypatch.setenv("DATABASE_URL", "postgres://app:hunter2@db/app")

    outcome = run_command("env")

    assert "very-secret-key" not in outcome.stdout
    assert "hunter2" not in outcome.stdout
    assert "PATH=" in outcome.stdout


def test_missing_cwd_fails_with_a_clear_error() -> None:
    outcome = run_command("true", cwd="/nonexistent/infinitrain")

    assert not outcome.succeeded
    assert outcome.error == "cwd /nonexistent/infinitrain does not exist"


def test_output_over_the_limit_keeps_the_tail() -> None:
    line = "echo first-line; head -c 50000 /dev/zero | tr '\\0' x; echo; echo last-line"

    outcome = run_command(line, context=make_context(output_limit=100))

    assert outcome.stdout_truncated
    assert len(outcome.stdout) == 100
    assert outcome.stdout.endswith("x\nlast-line\n")
    assert "first-line" not in outcome.stdout
    assert not outcome.stderr_truncated


def test_timed_out_command_is_killed_with_its_children(marker: str) -> None:
    context = make_context(timeout=1)
    started = time.monotonic()

    outcome = run_command(f"sleep {marker} & sleep {marker}", context=context)

    assert outcome.timed_out and not outcome.succeeded
    assert outcome.error == "timed out after 1s"
    assert time.monotonic() - started < 1 + context.kill_grace + 1
    assert processes_with(marker) == []


def test_background_child_of_a_finished_command_is_killed_promptly(
    marker: str,
) -> None:
    # The background sleep holds the output pipes open: reading them to the end
    # would hang for ten minutes if it were left running.
    started = time.monotonic()

    outcome = run_command(f"sleep {marker} & echo started")

    assert outcome.succeeded
    assert outcome.stdout == "started\n"
    assert time.monotonic() - started < 3
    assert processes_with(marker) == []


def test_stop_kills_the_process_group(marker: str) -> None:
    context = make_context(timeout=60)
    threading.Timer(0.3, context.stop.set).start()
    started = time.monotonic()

    outcome = run_command(f"sleep {marker} & sleep {marker}", context=context)

    assert outcome.stopped and not outcome.timed_out
    assert outcome.error == "stopped"
    assert time.monotonic() - started < 3
    assert processes_with(marker) == []


def test_child_ignoring_sigterm_is_killed_after_the_grace(marker: str) -> None:
    context = make_context(timeout=1, kill_grace=0.5)
    started = time.monotonic()

    outcome = run_command(f"trap '' TERM; sleep {marker}", context=context)

    elapsed = time.monotonic() - started
    assert outcome.exit_code == -signal.SIGKILL
    assert outcome.timed_out
    assert context.timeout + context.kill_grace <= elapsed < 4
    assert processes_with(marker) == []


# Script jobs


def test_script_with_a_shebang_runs_under_that_interpreter() -> None:
    source = (
        "#!/usr/bin/env python3\nimport sys\nprint('python', sys.version_info[0])\n"
    )

    outcome = script.run({"script": source}, make_context())

    assert outcome.succeeded, outcome.stderr
    assert outcome.stdout == "python 3\n"


def test_script_without_a_shebang_runs_under_sh() -> None:
    outcome = script.run({"script": 'word=sh; echo "run by $word"\n'}, make_context())

    assert outcome.succeeded, outcome.stderr
    assert outcome.stdout == "run by sh\n"


def test_script_file_is_private_and_removed_afterwards() -> None:
    source = 'echo "$0"; stat -c %a "$0"; exit 4\n'

    outcome = script.run({"script": source}, make_context())

    path, mode = outcome.stdout.splitlines()
    assert mode == "700"
    assert outcome.exit_code == 4
    assert not Path(path).exists()


def test_script_with_a_missing_interpreter_fails_clearly() -> None:
    outcome = script.run(
        {"script": "#!/nonexistent/python\nprint(1)\n"}, make_context()
    )

    assert not outcome.succeeded
    assert "/nonexistent/python not found" in outcome.error


def test_script_gets_env_cwd_and_job_identity(tmp_path: Path) -> None:
    spec = {
        "script": 'echo "$COLOUR $INFINITRAIN_JOB_ID"; pwd\n',
        "env": {"COLOUR": "blue"},
        "cwd": str(tmp_path),
    }

    outcome = script.run(spec, make_context())

    assert outcome.stdout.splitlines() == ["blue job-42", str(tmp_path)]


# HTTP jobs


class Handler(BaseHTTPRequestHandler):
    """Routes by path; `release` (set at teardown) ends requests that hang."""

    release: threading.Event

    def do_GET(self) -> None:
        if self.path == "/hello":
            self.reply(200, b"hello", {"X-Greeting": "yes"})
        elif self.path.startswith("/status/"):
            self.reply(int(self.path.rsplit("/", 1)[1]), b"status body")
        elif self.path == "/big":
            self.reply(200, b"HEAD" + b"x" * 100_000)
        elif self.path == "/hang":
            self.release.wait()
        elif self.path == "/drip":
            self.drip()
        elif self.path == "/stall":
            self.stall()

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        received = {
            "content_type": self.headers["Content-Type"],
            "body": self.rfile.read(length).decode("utf-8"),
        }
        self.reply(200, json.dumps(received).encode(), {"Content-Type": "text/json"})

    def reply(
        self, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drip(self) -> None:
        """A body that never ends: one byte every 100 ms, each well inside timeouts."""
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        while not self.release.wait(0.1):
            try:
                self.wfile.write(b".")
                self.wfile.flush()
            except OSError:
                return  # the client gave up, as it should

    def stall(self) -> None:
        """Part of a body, then silence."""
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"partial")
        self.wfile.flush()
        self.release.wait()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


@pytest.fixture
def server() -> Iterator[str]:
    release = threading.Event()
    handler = type("TestHandler", (Handler,), {"release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    serve = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    serve.start()

    yield f"http://127.0.0.1:{httpd.server_address[1]}"

    release.set()
    httpd.shutdown()
    httpd.server_close()


def test_http_get_captures_status_headers_and_body(server: str) -> None:
    outcome = http.run({"url": f"{server}/hello"}, make_context())

    assert outcome.succeeded
    assert (outcome.status_code, outcome.body) == (200, "hello")
    assert outcome.headers is not None and outcome.headers["X-Greeting"] == "yes"


def test_http_post_sends_json(server: str) -> None:
    spec = {"url": f"{server}/echo", "method": "POST", "json": {"answer": 42}}

    outcome = http.run(spec, make_context())

    received = json.loads(outcome.body)
    assert received["content_type"] == "application/json"
    assert json.loads(received["body"]) == {"answer": 42}


def test_http_text_body_is_sent_as_utf8(server: str) -> None:
    spec = {"url": f"{server}/echo", "method": "POST", "body": "grüße"}

    outcome = http.run(spec, make_context())

    assert json.loads(outcome.body)["body"] == "grüße"


def test_http_503_fails(server: str) -> None:
    outcome = http.run({"url": f"{server}/status/503"}, make_context())

    assert not outcome.succeeded
    assert (outcome.status_code, outcome.error) == (503, "HTTP 503")
    assert outcome.body == "status body"


def test_expected_statuses_make_a_404_succeed(server: str) -> None:
    spec = {"url": f"{server}/status/404", "expected_statuses": [404]}

    outcome = http.run(spec, make_context())

    assert outcome.succeeded
    assert outcome.status_code == 404


def test_expected_statuses_make_a_200_fail(server: str) -> None:
    spec = {"url": f"{server}/hello", "expected_statuses": [201]}

    outcome = http.run(spec, make_context())

    assert not outcome.succeeded
    assert outcome.error == "HTTP 200"


def test_connection_refused_fails_clearly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends

    outcome = http.run({"url": f"http://127.0.0.1:{port}/"}, make_context())

    assert not outcome.succeeded
    assert outcome.error == f"connection refused: 127.0.0.1:{port}"
    assert outcome.status_code is None


def test_server_that_never_answers_hits_the_read_timeout(server: str) -> None:
    spec = {"url": f"{server}/hang", "read_timeout": 0.5}
    started = time.monotonic()

    outcome = http.run(spec, make_context(timeout=10))

    assert outcome.timed_out and not outcome.succeeded
    assert outcome.error.startswith("timed out after 0.5s")
    assert time.monotonic() - started < 3


def test_body_that_stalls_hits_the_read_timeout_and_keeps_the_status(
    server: str,
) -> None:
    spec = {"url": f"{server}/stall", "read_timeout": 0.3}

    outcome = http.run(spec, make_context(timeout=10))

    assert outcome.timed_out and not outcome.succeeded
    assert outcome.error.startswith("timed out after 0.3s")
    assert (outcome.status_code, outcome.body) == (200, "partial")


def test_slow_drip_server_cannot_outlast_the_attempt_timeout(server: str) -> None:
    started = time.monotonic()

    outcome = http.run({"url": f"{server}/drip"}, make_context(timeout=1))

    assert outcome.timed_out
    assert outcome.error == "timed out after 1s"
    assert time.monotonic() - started < 1.5


def test_stop_aborts_a_request_promptly(server: str) -> None:
    context = make_context(timeout=60)
    threading.Timer(0.3, context.stop.set).start()
    started = time.monotonic()

    outcome = http.run({"url": f"{server}/hang"}, context)

    assert outcome.stopped and outcome.error == "stopped"
    assert time.monotonic() - started < 1.5


def test_large_body_is_truncated_keeping_the_head(server: str) -> None:
    outcome = http.run({"url": f"{server}/big"}, make_context(output_limit=1000))

    assert outcome.succeeded
    assert outcome.body_truncated
    assert outcome.body.startswith("HEAD")
    assert len(outcome.body) == 1000


# The registry and shared helpers


def test_every_job_type_has_an_executor() -> None:
    assert set(EXECUTORS) == {"command", "script", "http"}
    assert get_executor("command") is command.run


def test_unknown_job_type_raises_a_clear_key_error() -> None:
    with pytest.raises(KeyError, match="no executor for job type 'ftp'"):
        get_executor("ftp")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(2, "2s"), (1.5, "1.5s"), (300, "5m"), (90, "1m30s"), (5400, "1h30m")],
)
def test_durations_read_the_way_people_write_them(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
