"""The bottom of :mod:`drn.doctor`: what every check shares. It imports no other module of the
package; all of them may import it.

It owns :class:`Result`, one line of the checklist (its name, one of the four statuses
``ok``/``warn``/``fail``/``skip``, what it found, and the fix for a miss), and :func:`command`,
the one helper through which every Slurm command runs with a short timeout (:data:`TIMEOUT_S`):
a command that hangs (``sacct`` without an accounting database) is itself the finding, never a
hang of doctor. :class:`Answer` is what a command said; :data:`Runner` is the type of
:func:`command`, which the checks take as an argument (the tests pass a fake Slurm).
:data:`HTTP_TIMEOUT_S` bounds the HTTP requests of the tracking and source checks.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
TIMEOUT_S = 10.0  # any one Slurm command; a command that takes longer is the finding
HTTP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Result:
    """One line of the checklist."""

    name: str
    status: str  # OK, WARN, FAIL or SKIP
    found: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)


# --- running commands -------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a command said: its exit code (None: it did not finish, or could not start)."""

    command: tuple[str, ...]
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    missing: bool = False
    timeout: float = TIMEOUT_S

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def why(self) -> str:
        """Why it did not answer, in one line."""
        shown = shlex.join(self.command)
        if self.missing:
            return f"{self.command[0]}: command not found"
        if self.timed_out:
            return f"`{shown}` did not answer within {self.timeout:g} s"
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return f"`{shown}` exited {self.returncode}" + (f": {lines[-1].strip()}" if lines else "")


Runner = Callable[[Sequence[str]], Answer]


def command(args: Sequence[str], timeout: float | None = None) -> Answer:
    """Run ``args`` (no shell) with a timeout; a command that does not finish in time is killed
    with its process group and answers ``timed_out``."""
    timeout = TIMEOUT_S if timeout is None else timeout
    args = tuple(str(a) for a in args)
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
    except FileNotFoundError:
        return Answer(args, None, missing=True, timeout=timeout)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        return Answer(args, None, out, err, timed_out=True, timeout=timeout)
    return Answer(args, process.returncode, out, err, timeout=timeout)
