"""Attempts: the profile's retries against the attempts a training needs, and ``--last``.

It owns :func:`check_attempts` (``plan.attempts``: on Slurm each attempt of a training trains
at most ``runtime - stop_before_limit``, so the profile's ``retries`` must cover the attempts
that the longest run needs by drn.pipeline.cost's projection), and ``drn doctor --last``:
:func:`last_attempts` reads the per-attempt records of the pipeline's jobs
(``{paths.results}/logs/**/*.attempts.jsonl``, one JSON object a line: ``attempt``, ``cause``,
``exit_code``, ``message``, ``log``) into :class:`Attempt` s, and :func:`render_last` lists the
jobs whose last attempt failed, with their logs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from drn.doctor.profile import Profile
from drn.doctor.result import OK, SKIP, WARN, Result

# --- retries against attempts ---------------------------------------------------------------


def check_attempts(params: dict[str, Any], cost: Any | None, profile: Profile) -> Result:
    """On Slurm each attempt of a training trains at most runtime - stop_before_limit: the
    profile's retries must cover the attempts the longest run needs."""
    name = "plan.attempts"
    if cost is None or not cost.runs:
        return Result(name, SKIP, "no projection of the runs' hours")
    if not params["resources"]["train"]["gpu"]:
        return Result(name, SKIP, "resources.train.gpu is 0: no projection of CPU training")
    spec = params["resources"]["train"]
    per_attempt = spec["runtime"] * 60 - spec["stop_before_limit"]
    longest = max(cost.runs, key=lambda c: c.hours)
    attempts = math.ceil(longest.hours * 3600 / per_attempt)
    allowed = profile.retries + 1
    text = (f"the longest run, {longest.run}, needs about {attempts} attempt(s) of "
            f"{per_attempt / 60:g} min ({longest.hours:.1f} h projected); retries: "
            f"{profile.retries} allows {allowed}")  # fmt: skip
    if attempts > allowed:
        return Result(name, WARN, text, f"set retries: {attempts - 1} or more in "
                      f"{profile.config} (each attempt resumes from the checkpoint), or a "
                      "longer resources.train.runtime where the partition allows")  # fmt: skip
    return Result(name, OK, text)


# --- drn doctor --last -------------------------------------------------------------------------


FINE_CAUSES = {"ok", "success", "succeeded", "completed", "done"}
RUNNING_CAUSES = {"running", "started", "submitted", "pending"}


@dataclass(frozen=True)
class Attempt:
    """The last attempt of one job, as its record says (the record's last line: it is appended
    to, attempt by attempt, over every run of the workflow)."""

    job: str  # the record's path under the logs folder, without .attempts.jsonl
    attempt: int | None
    cause: str | None
    exit_code: int | None
    message: str
    log: str
    scheduler_log: str | None  # Slurm's output file of that attempt, where the record has one
    records: str  # the .attempts.jsonl file

    @property
    def running(self) -> bool:
        """Not finished as far as the record says (or its supervisor died with it, which the
        workflow's next attempt resolves)."""
        return self.exit_code is None and (self.cause or "").lower() in RUNNING_CAUSES

    @property
    def failed(self) -> bool:
        """A non-zero exit code, or without one a cause other than success or running."""
        if self.exit_code is not None:
            return self.exit_code != 0
        cause = (self.cause or "").lower()
        return bool(cause) and cause not in FINE_CAUSES | RUNNING_CAUSES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def last_attempts(results: str | os.PathLike) -> list[Attempt]:
    """The last attempt of every job with a record under ``{results}/logs`` (lines that are not
    a JSON object, and unreadable files, are skipped: the records are advisory)."""
    logs = Path(results) / "logs"
    found = []
    for file in sorted(logs.rglob("*.attempts.jsonl")) if logs.is_dir() else []:
        records = []
        try:
            lines = file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        if not records:
            continue
        last = records[-1]
        stem = file.name.removesuffix(".attempts.jsonl")
        job = str(file.relative_to(logs)).removesuffix(".attempts.jsonl")
        log = last.get("log") or last.get("log_path") or str(file.with_name(f"{stem}.log"))
        cause, slurm_log = last.get("cause"), last.get("scheduler_log")
        found.append(Attempt(
            job, _number(last.get("attempt")), None if cause is None else str(cause),
            _number(last.get("exit_code")), str(last.get("message") or ""), str(log),
            None if slurm_log is None else str(slurm_log), str(file),
        ))  # fmt: skip
    return found


def _number(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def render_last(attempts: list[Attempt], results: str | os.PathLike) -> list[str]:
    failed = [a for a in attempts if a.failed]
    if not attempts:
        return [f"no attempt records under {Path(results) / 'logs'} (the pipeline has not run "
                "here, or its jobs keep no records)"]  # fmt: skip
    lines = [f"{len(attempts)} jobs with records; {len(failed)} whose last attempt failed:"]
    for a in failed:
        why = [f"cause {a.cause}"] if a.cause else []
        why += [f"exit {a.exit_code}"] if a.exit_code is not None else []
        number = a.attempt if a.attempt is not None else "?"
        text = f"  {a.job}: attempt {number} failed" + (f" ({', '.join(why)})" if why else "")
        lines.append(text + (f": {a.message}" if a.message else ""))
        lines.append(f"    log: {a.log}")
        if a.scheduler_log:
            lines.append(f"    Slurm's log: {a.scheduler_log}")
    running = [a for a in attempts if a.running]
    if running:
        lines.append(f"{len(running)} whose last attempt is still running, or was lost with its "
                     "node (the workflow's next attempt finds out which):")  # fmt: skip
        lines.extend(f"  {a.job}: attempt {a.attempt}; log: {a.log}" for a in running)
    return lines
