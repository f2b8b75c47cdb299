"""Script jobs: the job's script text, written to a private file and executed.

A script that starts with "#!" is executed directly, so its interpreter line is
honoured; any other script runs under /bin/sh. The file is created by mkstemp, readable
and executable by the worker's user only (it may hold secrets), and removed when the
attempt ends, however it ends.

Limitation: executing a "#!" script directly needs a temp directory mounted without
noexec; point TMPDIR at one that allows execution.
"""

import logging
import os
import tempfile
from contextlib import suppress
from typing import Any

from jobs.executors.base import Outcome, RunContext
from jobs.executors.process import run_process

logger = logging.getLogger(__name__)


def run(spec: dict[str, Any], context: RunContext) -> Outcome:
    script: str = spec["script"]
    problem = _check_interpreter(script, spec.get("cwd") or tempfile.gettempdir())
    if problem:
        return Outcome(succeeded=False, error=problem)

    try:
        path = _write_private(script)
    except OSError as exc:
        logger.warning(
            "Job %s attempt %s: cannot write script: %s",
            context.job_id,
            context.attempt,
            exc,
        )
        return Outcome(succeeded=False, error=f"could not write script: {exc.strerror}")

    try:
        argv = [path] if script.startswith("#!") else ["/bin/sh", path]
        return run_process(argv, context, env=spec.get("env"), cwd=spec.get("cwd"))
    finally:
        with suppress(FileNotFoundError):
            os.unlink(path)


def _check_interpreter(script: str, workdir: str) -> str:
    """Name a missing interpreter, which exec would report as the script missing."""
    if not script.startswith("#!"):
        return ""
    words = script[2:].partition("\n")[0].split()
    if not words:
        return "the script's #! line names no interpreter"

    # The kernel resolves a relative interpreter against the child's cwd.
    interpreter = os.path.join(workdir, words[0])
    if not os.access(interpreter, os.X_OK):
        return f"script interpreter {words[0]} not found or not executable"
    return ""


def _write_private(script: str) -> str:
    fd, path = tempfile.mkstemp(prefix="infinitrain-script-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o700)  # owner only: a script may hold secrets
            file.write(script)
    except BaseException:
        os.unlink(path)
        raise
    return path
