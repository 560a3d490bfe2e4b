"""One pack job: several runs of the plan trained at once on the GPU the job holds.

``drn train --run A --run B ...`` comes here. Each run trains exactly as alone, in its own
``drn train --run NAME`` child process (its model, optimizer, seed, data order, run directory,
checkpoints, curves, MLflow run and resumption), all started together on the same device:

* **Output**: every line a run prints is passed on as ``[NAME] line`` (each run's own
  runs/NAME/train.log keeps its lines unprefixed).
* **CPUs**: each run gets its share of the job's CPUs (``OMP_NUM_THREADS``: the allotment over
  the number of runs, at least one); ``DRN_NUM_THREADS``, where set, pins every run's threads.
* **GPU sharing**: with ``resources.train.mps: auto`` (the default), where the node has CUDA
  MPS, a private MPS daemon serves the pack's runs and is stopped at its end
  (:mod:`drn.engine.mps`); otherwise (``off``, no MPS, CPU) the runs share the GPU by time
  slicing. The job says which.
* **Signals**: SIGTERM, SIGUSR1 and SIGINT reach every run (each in its own process group: a
  Ctrl-C reaches it once); each stops at its step with its checkpoint. The job then exits
  unfinished (128 + N) and a rerun resumes each where it stopped; a finished run is not trained
  again (its ``drn train`` has nothing to do).
* **Its end**, by each run's cause (:func:`drn.pipeline.job.classify`): every run ok: 0. A run
  that can still finish (stopped, out of memory, held by another trainer, crashed) makes the job
  unfinished, with the status that gets it retried by cause (137 and a ``MemoryError`` line for
  memory, 75 for held, else 1 without an error line). Runs that failed for good (a usage or data
  error, behind its milestone) never stop the others; once every other run is done the job
  fails with the first such run's error (exit 1, 2 or 3 naming the run), or, with ``record``
  (the workflow's pack jobs), writes each run's outcome to that JSON file and exits 0: each run's
  own job then ends with its run's outcome (``drn train --run NAME --from-pack RECORD``), so
  that Snakemake, which deletes a failed job's outputs, never deletes a finished run's model.pt.

Standard library (and :mod:`drn.engine.mps`, no torch) only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from drn.core.errors import BehindError, DataError, DrnError, UsageError
from drn.pipeline import job
from drn.pipeline.job import ERROR_LINE, FORWARDED, classify

FOR_GOOD = {job.USAGE_ERROR: UsageError, job.DATA_ERROR: DataError, job.BEHIND: BehindError}


@dataclass
class Member:
    """One run of the pack: its command, its process, what it printed last."""

    run: str
    command: list[str]
    process: subprocess.Popen | None = None
    message: str | None = None  # its last `drn: error:` line, else its last line
    error_line: bool = False
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def cause(self) -> str:
        assert self.process is not None and self.process.returncode is not None
        return classify(self.process.returncode, self.message)


def member_environment(runs: int, environ: dict[str, str]) -> dict[str, str]:
    """A run's environment in a pack of `runs`: its share of the job's CPUs (DRN_NUM_THREADS,
    where set, wins over it in the child, as everywhere), unbuffered output."""
    from drn.core import threads

    allotment = threads.configure()
    share = max(1, allotment.cpus // runs)
    return {**environ, "OMP_NUM_THREADS": str(share), "PYTHONUNBUFFERED": "1"}


def _pass_on(member: Member, lock: threading.Lock) -> None:
    """Print the member's lines prefixed with its run; remember its last (error) line."""
    assert member.process is not None and member.process.stdout is not None
    for raw in member.process.stdout:
        line = raw.rstrip("\r\n")
        for part in (p.strip() for p in line.split("\r")):
            if not part:
                continue
            if ERROR_LINE.match(part):
                member.message, member.error_line = part[:500], True
            elif not member.error_line:
                member.message = part[:500]
        with lock:
            sys.stdout.write(f"[{member.run}] {line}\n")
            sys.stdout.flush()


def run_pack(name: str, members: list[Member], mps_mode: str = "auto", device: str = "auto",
             record: Path | None = None, until: int | None = None) -> int:  # fmt: skip
    """Train the pack's `members` at once; returns the job's status (see the module docstring).
    Raises the error of a run that failed for good, where no `record` is written."""
    from drn.engine.mps import private_mps

    lock, received = threading.Lock(), []

    def forward(signum: int, frame: Any) -> None:
        received.append(signum)
        for member in members:
            if member.process is not None and member.process.poll() is None:
                member.process.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        with tempfile.TemporaryDirectory(prefix="drn-mps-") as scratch:
            mode = "off" if device == "cpu" else mps_mode
            with private_mps(Path(scratch), mode) as mps:
                print(f"pack {name}: {len(members)} runs on one device; {mps.describe()}",
                      flush=True)  # fmt: skip
                environ = member_environment(len(members), {**os.environ, **mps.environment})
                for member in members:
                    if received:
                        break  # stopped before this one started: it stays where it was
                    member.process = subprocess.Popen(
                        member.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, errors="replace", env=environ, preexec_fn=job.in_child,
                    )  # fmt: skip
                    member.reader = threading.Thread(target=_pass_on, args=(member, lock))
                    member.reader.start()
                for member in members:
                    if member.process is not None:
                        member.process.wait()
                        assert member.reader is not None
                        member.reader.join()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    started = [m for m in members if m.process is not None]
    for member in started:
        print(f"pack {name}: {member.run}: {member.cause} (exit {member.process.returncode})"
              + (f": {member.message}" if member.cause != job.OK and member.message else ""),
              flush=True)  # fmt: skip
    if received or len(started) < len(members):
        return 128 + (received[0] if received else signal.SIGTERM)
    return _settle(name, started, record, until)


def _settle(name: str, members: list[Member], record: Path | None, until: int | None) -> int:
    causes = {m.run: m.cause for m in members}
    unfinished = [m for m in members if causes[m.run] not in (job.OK, *FOR_GOOD)]
    if unfinished:
        worst = unfinished[0]
        if any(causes[m.run] == job.OUT_OF_MEMORY for m in unfinished):
            worst = next(m for m in unfinished if causes[m.run] == job.OUT_OF_MEMORY)
            print(f"pack {name}: {worst.run} ran out of memory (MemoryError); retry the pack",
                  flush=True)  # fmt: skip
            return 128 + signal.SIGKILL
        if any(causes[m.run] == job.HELD for m in unfinished):
            print(f"pack {name}: a run is held by another trainer; retry the pack", flush=True)
            return job.HELD_EXIT
        print(f"pack {name}: {worst.run} ended {causes[worst.run]}; the pack is unfinished",
              flush=True)  # fmt: skip
        return 1
    if record is not None:
        write_record(record, name, until, members)
        return 0
    failed = [m for m in members if causes[m.run] in FOR_GOOD]
    if failed:
        first = failed[0]
        raise FOR_GOOD[causes[first.run]](f"run {first.run} (pack {name}) failed: "
                                          f"{_without_prefix(first.message)}")  # fmt: skip
    return 0


def _without_prefix(message: str | None) -> str:
    return ERROR_LINE.sub("", message or "no output")


def write_record(path: Path, name: str, until: int | None, members: Sequence[Member]) -> None:
    """The pack's outcome, whole or not at all (a temporary file renamed over it)."""
    outcome = {
        "pack": name, "until": until, "ended": datetime.now().astimezone().isoformat(),
        "runs": {m.run: {"cause": m.cause, "exit_code": m.process.returncode if m.process else None,
                         "message": m.message} for m in members},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(outcome, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def outcome_of(record: Path, run: str) -> dict[str, Any]:
    """Run `run`'s outcome in the pack record `record`; a run that failed for good raises its
    error (naming the run), a missing or unreadable record or run a UsageError."""
    try:
        runs = json.loads(record.read_text(encoding="utf-8"))["runs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"{record}: no readable pack record ({error})") from None
    if run not in runs:
        raise UsageError(f"{record}: run {run} is not in this pack's record")
    outcome = runs[run]
    error: type[DrnError] | None = FOR_GOOD.get(outcome.get("cause"))
    if error is not None:
        raise error(f"run {run} failed in its pack ({record}): "
                    f"{_without_prefix(outcome.get('message'))}")  # fmt: skip
    return outcome
