"""One job of the workflow, attempt by attempt: the supervisor every rule's command runs under,
and the record of attempts it keeps beside the job's log.

    python -m drn.pipeline.job --log LOG --attempt N [--memory-retries K] -- COMMAND ...

runs COMMAND with its output in LOG (truncated: the log holds the latest attempt), passes on
SIGTERM, SIGUSR1 and SIGINT (Slurm's warning before a time limit or a preemption, Ctrl-C), waits,
writes what happened to the record and exits with COMMAND's status (128 + N when signal N killed
it). The record is :func:`record_path` (LOG without ``.log``, plus ``.attempts.jsonl``): one JSON
object a line, one line an attempt (:func:`supervise` documents the fields). It lies beside the
log, where Snakemake never deletes it; it grows over every run of the workflow.

Every attempt ends with a cause (:func:`classify`):

* ``ok``; ``stopped``: by a signal (time limit, preemption, Ctrl-C), after ``drn train`` wrote its
  checkpoint (exit 143 or 138, or 130): a retry resumes it;
* ``out_of_memory``: killed (SIGKILL) while the kernel counted an OOM kill in the job's memory
  cgroup (Slurm's ``ConstrainRAMSpace``), or a Python ``MemoryError``;
* ``usage_error`` (exit 2: a bad setting or argument) and ``data_error`` (exit 1 after ``drn:
  error:``: a corrupt image...): the same command would fail again;
* ``held`` (exit 75, ``drn train``'s refusal of a run directory another live process trains:
  a Snakemake restarted while its earlier jobs still run; under torchrun, which exits 1, its
  line alone says so): retried, the next attempt runs (the holder may have ended by then);
* ``behind`` (exit 3, ``drn train`` with ``train.stop_if_behind``: the run is behind the number
  its milestone should reach, its checkpoints kept): not retried, as a usage or data error;
* ``killed`` (SIGKILL without an OOM kill), ``failed`` (anything else: a crash, a lost file).

Retries by cause (:func:`decide`; Snakemake has no retry condition, so its ``retries`` resubmit
every failure and the record decides what an attempt does): after a usage or data error, or after
running out of memory more than ``--memory-retries`` times, an attempt does not run COMMAND
again: it prints one line ("not retried: ...; fix it and run again") into LOG and exits with the
same status within seconds (a new run of the workflow tries again: its first attempt always
runs). The workflow's resources read the same record
(drn/pipeline/workflow.py): mem_mb grows after an attempt that ran out of memory, and an attempt
that will not run asks for one CPU, no GPU and a few minutes.

An attempt whose supervisor was killed with it (Slurm's hard kill at a time limit, its
``OverMemoryKill``, a lost node) stays ``running`` in the record; the next reader asks Slurm for
that job's state (``sacct``, else ``scontrol``) and writes the cause found.

Standard library only (no torch): it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

OK, STOPPED, OUT_OF_MEMORY = "ok", "stopped", "out_of_memory"
USAGE_ERROR, DATA_ERROR, HELD, BEHIND, KILLED, FAILED, RUNNING = (
    "usage_error", "data_error", "held", "behind", "killed", "failed", "running"
)  # fmt: skip
NOT_AGAIN = {  # the same each time
    USAGE_ERROR: "a usage error", DATA_ERROR: "a data error",
    BEHIND: "a run behind its milestone (train.stop_if_behind)",
}  # fmt: skip
FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
STOPPED_EXITS = {128 + signal.SIGTERM, 128 + signal.SIGUSR1, 128 + signal.SIGINT}  # drn's own
SLURM_STATES = {  # a job's final state -> the cause of an attempt whose supervisor died with it
    "OUT_OF_MEMORY": OUT_OF_MEMORY, "TIMEOUT": STOPPED, "PREEMPTED": STOPPED,
    "DEADLINE": STOPPED, "NODE_FAIL": FAILED, "BOOT_FAIL": FAILED,
}  # fmt: skip
OOM_SCORE_ADJ = 500  # the command's: the OOM killer's first choice in its job (see in_child)
ERROR_LINE = re.compile(r"^drn(?: [\w-]+)?: error: ")
HELD_EXIT, BEHIND_EXIT = 75, 3  # drn.core.errors.HeldError's (EX_TEMPFAIL), BehindError's
HELD_LINE = re.compile(r"^drn: error: .*: trained by pid \d+ on .*; not started\b")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def record_path(log: str | os.PathLike) -> Path:
    """The record of a job's attempts, beside its log: ``a/b.log`` -> ``a/b.attempts.jsonl``."""
    log = str(log)
    return Path((log[: -len(".log")] if log.endswith(".log") else log) + ".attempts.jsonl")


def read_record(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The attempts of a record, oldest first (an unreadable line is skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    lines = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and isinstance(entry.get("attempt"), int):
                lines.append(entry)
    return lines


def _write_record(path: Path, lines: list[dict[str, Any]]) -> None:
    """Replace the record whole (a temporary file renamed over it: readers never see half)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    os.replace(temporary, path)


def _append(path: Path, line: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as record:
        record.write(json.dumps(line) + "\n")


def _update(path: Path, line: dict[str, Any]) -> None:
    """Write ``line`` over the record's line of the same attempt and start (else append it)."""
    lines = read_record(path)
    for i in range(len(lines) - 1, -1, -1):
        same = (lines[i]["attempt"], lines[i].get("started"))
        if same == (line["attempt"], line.get("started")):
            lines[i] = line
            break
    else:
        lines.append(line)
    _write_record(path, lines)


# ------------------------------------------------------------------------------ the decision


def previous_attempts(lines: list[dict[str, Any]], attempt: int) -> list[dict[str, Any]]:
    """The attempts 1..attempt-1 of this run of the workflow: the record's last lines, numbered
    attempt-1, attempt-2, ... down to 1 or to a gap. An attempt that left no line (it never
    started: a job lost before it ran) ends the chain: nothing is known before it (the lines
    before are an earlier run's)."""
    chain: list[dict[str, Any]] = []
    expected = attempt - 1
    for line in reversed(lines):
        if expected < 1 or line["attempt"] != expected:
            break
        chain.append(line)
        expected -= 1
    return chain[::-1]


@dataclass
class Decision:
    """What an attempt does: run (with mem_mb grown `memory_steps` times), or not (`why`)."""

    run: bool = True
    memory_steps: int = 0  # attempts of this run that ran out of memory
    why: str = ""  # the one line an attempt that does not run prints
    exit_code: int = 0  # ... and the status it exits with
    cause: str = ""  # ... and the cause it records (that of the attempt it repeats)
    message: str | None = None
    after: int | None = None  # the attempt whose failure it repeats
    previous: list[dict[str, Any]] = field(default_factory=list)


def decide(lines: list[dict[str, Any]], attempt: int, memory_retries: int = 1) -> Decision:
    """What `attempt` does, by the causes of this run's previous attempts: not run after a usage or
    data error, or after running out of memory more than `memory_retries` times; else run, with
    memory grown once per attempt that ran out of it."""
    previous = previous_attempts(lines, attempt) if attempt > 1 else []
    if not previous:
        return Decision()
    last = previous[-1]
    ran = [line for line in previous if line.get("ran", True)]
    out_of_memory = [line for line in ran if line.get("cause") == OUT_OF_MEMORY]
    if last.get("cause") in NOT_AGAIN:
        failed = last.get("after") or last["attempt"]
        code = last.get("exit_code") or (2 if last["cause"] == USAGE_ERROR else 1)
        what = f"{NOT_AGAIN[last['cause']]} (exit {code}): {last.get('message') or 'see its log'}"
        why = f"not retried: attempt {failed} failed with {what}; fix it and run again"
        return Decision(False, len(out_of_memory), why, code, last["cause"],
                        last.get("message"), failed, previous)  # fmt: skip
    if last.get("cause") == OUT_OF_MEMORY and len(out_of_memory) > memory_retries:
        which = ", ".join(str(line["attempt"]) for line in out_of_memory)
        limits = ", then ".join(
            f"{line['memory_limit_mb']} MB" if line.get("memory_limit_mb") else "?"
            for line in out_of_memory
        )
        why = (f"not retried: attempts {which} ran out of memory ({limits}); raise mem_mb in "
               "params.yaml resources and run again")  # fmt: skip
        return Decision(False, len(out_of_memory), why, 128 + signal.SIGKILL, OUT_OF_MEMORY,
                        last.get("message"), out_of_memory[-1]["attempt"], previous)  # fmt: skip
    return Decision(True, min(len(out_of_memory), memory_retries), previous=previous)


def slurm_state(job_id: str) -> str | None:
    """A Slurm job's state, or OUT_OF_MEMORY where one of its steps ran out of memory (a job whose
    step was OOM-killed often ends FAILED): ``sacct`` (which needs accounting) for the job and its
    steps, else ``scontrol`` (which remembers a job for MinJobAge) for the job; None: unknown."""
    for command, pattern in (
        (["sacct", "-n", "-P", "-o", "State", "-j", job_id], r"^\s*([A-Z_]+)"),
        (["scontrol", "show", "job", job_id], r"JobState=([A-Z_]+)"),
    ):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            continue
        states = re.findall(pattern, done.stdout, re.M)
        if done.returncode == 0 and states:
            return "OUT_OF_MEMORY" if "OUT_OF_MEMORY" in states else states[0]
    return None


def resolve(
    path: str | os.PathLike,
    lines: list[dict[str, Any]],
    attempt: int,
    state_of: Callable[[str], str | None] = slurm_state,
) -> list[dict[str, Any]]:
    """The record with attempt-1, if its supervisor died with it (still ``running``), given the
    cause its Slurm job's state says (``killed`` where none is known), written back."""
    previous = previous_attempts(lines, attempt)
    if not previous or previous[-1].get("cause") != RUNNING:
        return lines
    line = dict(previous[-1])
    state = state_of(str(line["slurm_job_id"])) if line.get("slurm_job_id") else None
    line.update(cause=SLURM_STATES.get(state or "", KILLED), slurm_state=state,
                message=f"the attempt's supervisor was killed with it (Slurm job state: {state})"
                if state else "the attempt's supervisor was killed with it")  # fmt: skip
    lines = [line if entry is previous[-1] else entry for entry in lines]
    with contextlib.suppress(OSError):
        _write_record(Path(path), lines)
    return lines


def decide_from_record(log: str | os.PathLike, attempt: int, memory_retries: int = 1) -> Decision:
    """:func:`decide` for the job whose log is `log` (what the workflow's resources ask)."""
    if attempt <= 1:
        return Decision()
    path = record_path(log)
    return decide(resolve(path, read_record(path), attempt), attempt, memory_retries)


# ------------------------------------------------------------------------------ classification


def classify(
    returncode: int, message: str | None = None, oom_kills: int = 0, stop_signal: int = 0
) -> str:
    """The cause of an attempt's end: `returncode` as ``subprocess`` gives it (-N: killed by
    signal N), the last error line of its log, the OOM kills the kernel counted in its memory
    cgroup meanwhile, and the signal the supervisor passed on (0: none)."""
    if returncode == 0:
        return OK
    killed = -returncode if returncode < 0 else (returncode - 128 if returncode > 128 else 0)
    if oom_kills or (message and re.search(r"\bMemoryError\b|Unable to allocate", message)):
        return OUT_OF_MEMORY
    if stop_signal or returncode in STOPPED_EXITS or -returncode in FORWARDED:
        return STOPPED
    if killed == signal.SIGKILL:
        return KILLED
    if returncode == HELD_EXIT or (returncode == 1 and message and HELD_LINE.match(message)):
        return HELD  # exit 1 with the line: torchrun's exit after rank 0's refusal
    if returncode == 2:
        return USAGE_ERROR
    if returncode == BEHIND_EXIT and message and ERROR_LINE.match(message):
        return BEHIND
    if returncode == 1 and message and ERROR_LINE.match(message):
        return DATA_ERROR
    return FAILED


def last_error_line(log: Path | IO[str], size: int = 65536) -> str | None:
    """The last ``drn: error:`` line of a log's tail (a path, or a file open on it), else its
    last line (progress bars' carriage returns and colours removed), at most 500 characters."""
    try:
        if isinstance(log, Path):
            with log.open("rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - size))
                tail = handle.read().decode("utf-8", errors="replace")
        else:
            end = os.fstat(log.fileno()).st_size
            raw = os.pread(log.fileno(), size, max(0, end - size))
            tail = raw.decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [ANSI.sub("", part).strip() for part in re.split(r"[\r\n]+", tail)]
    lines = [line for line in lines if line]
    if not lines:
        return None
    errors = [line for line in lines if ERROR_LINE.match(line)]
    return (errors or lines)[-1][:500]


# ------------------------------------------------------------------------------ memory cgroups


def _memory_cgroups() -> tuple[str, list[Path]]:
    """("v1" or "v2", this process's memory cgroup and its ancestors up to the outermost one with
    a memory limit: the job's and its step's under Slurm), or ("", []) where none is readable.
    Without any limit, only its own cgroup (its ancestors hold other people's processes)."""
    try:
        entries = [
            line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()
        ]
    except OSError:
        return "", []
    for version, root, wanted in (("v1", Path("/sys/fs/cgroup/memory"), "memory"),
                                  ("v2", Path("/sys/fs/cgroup"), "")):  # fmt: skip
        for _, controllers, relative in (e for e in entries if len(e) == 3):
            if wanted and wanted not in controllers.split(","):
                continue
            if not wanted and (controllers or not (root / "cgroup.controllers").is_file()):
                continue
            own = root / relative.lstrip("/")
            chain = [own, *own.parents]
            chain = [d for d in chain if d.is_relative_to(root) and d.is_dir()]
            if not chain:
                continue
            limited = [i for i, d in enumerate(chain) if _limit_bytes(version, d) is not None]
            return version, chain[: limited[-1] + 1] if limited else chain[:1]
    return "", []


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _limit_bytes(version: str, cgroup: Path) -> int | None:
    text = _read(cgroup / ("memory.limit_in_bytes" if version == "v1" else "memory.max")).strip()
    if not text.isdigit() or int(text) >= 2**60:
        return None
    return int(text)


def _oom_kills(version: str, cgroups: list[Path]) -> dict[Path, int]:
    name = "memory.oom_control" if version == "v1" else "memory.events"
    counts = {}
    for cgroup in cgroups:
        found = re.search(r"^oom_kill (\d+)$", _read(cgroup / name), re.M)
        counts[cgroup] = int(found.group(1)) if found else 0
    return counts


def _memory_summary(version: str, cgroups: list[Path]) -> tuple[int | None, int | None]:
    """(the tightest memory limit, the peak use of the cgroup that has it), in MB."""
    limits = [(limit, c) for c in cgroups if (limit := _limit_bytes(version, c)) is not None]
    if not limits:
        return None, None
    limit, cgroup = min(limits, key=lambda item: item[0])
    peak = _read(cgroup / ("memory.max_usage_in_bytes" if version == "v1" else "memory.peak"))
    mb = 2**20
    return round(limit / mb), (round(int(peak) / mb) if peak.strip().isdigit() else None)


# ------------------------------------------------------------------------------ the supervisor


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _scheduler_log(job_id: str | None) -> str | None:
    """Where Slurm writes this job's output (its StdOut), or None."""
    if not job_id:
        return None
    try:
        shown = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True,
                               text=True, timeout=10).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"\bStdOut=(\S+)", shown)
    return found.group(1) if found else None


def in_child() -> None:
    """Before the command starts: its own process group, so that a Ctrl-C reaches it once (the
    supervisor passes it on); SIGTERM when the supervisor dies (Linux), so that it never outlives
    a supervisor killed outright; and first in line for the kernel's OOM killer (oom_score_adj
    +500, which needs no privilege), before the supervisor and the Snakemake processes of its job
    (each some 350 MB): the command is what grows, and a job step whose Snakemake was killed
    ends before its supervisor can record anything."""
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text(f"{OOM_SCORE_ADJ}\n")


def supervise(log: Path, attempt: int, command: Sequence[str], memory_retries: int = 1) -> int:
    """Run `command` as attempt `attempt` of the job whose log is `log`; returns its status.

    Its line in the record: ``attempt``; ``ran`` (false: it did not run the command, see
    :func:`decide`; then ``after``, the attempt whose failure it repeats); ``cause``;
    ``retryable`` (whether a next attempt would run it, if Snakemake has retries left);
    ``exit_code`` (the status this process exits with), ``signal`` (the signal that killed the
    command, or null); ``message`` (the last ``drn: error:`` line of the log, else its last line);
    ``stop_signal`` (a signal passed on to the command); ``started``, ``ended`` (ISO 8601),
    ``seconds``; ``host``, ``slurm_job_id``, ``scheduler_log`` (Slurm's output file of this
    attempt), ``log``, ``command``; ``memory_limit_mb``, ``memory_peak_mb`` (the job's memory
    cgroup), ``oom_kills`` (OOM kills counted meanwhile).
    """
    path = record_path(log)
    decision = decide_from_record(log, attempt, memory_retries)
    job_id = os.environ.get("SLURM_JOB_ID") or None
    line: dict[str, Any] = {
        "attempt": attempt, "ran": decision.run, "cause": RUNNING, "retryable": None,
        "exit_code": None, "signal": None, "message": None, "after": None, "stop_signal": None,
        "started": _now(), "ended": None, "seconds": None, "host": socket.gethostname(),
        "slurm_job_id": job_id, "scheduler_log": _scheduler_log(job_id), "log": str(log),
        "command": shlex.join(command), "memory_limit_mb": None, "memory_peak_mb": None,
        "oom_kills": None,
    }  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)  # a new file: another attempt still writing keeps its own
    with log.open("w+") as output:
        if not decision.run:
            print(decision.why, file=output, flush=True)
            line.update(cause=decision.cause, retryable=False, exit_code=decision.exit_code,
                        message=decision.message, after=decision.after, ended=_now(),
                        seconds=0.0)  # fmt: skip
            _append(path, line)
            return decision.exit_code
        version, cgroups = _memory_cgroups()
        before = _oom_kills(version, cgroups)
        _append(path, line)
        received: list[int] = []  # signals passed on
        pending: list[int] = []  # ... that arrived before the child existed
        child: subprocess.Popen | None = None

        def forward(signum: int, frame: Any) -> None:
            received.append(signum)
            if child is None:
                pending.append(signum)
            elif child.poll() is None:
                with contextlib.suppress(OSError):
                    child.send_signal(signum)

        previous = {s: signal.signal(s, forward) for s in FORWARDED}
        start = time.monotonic()
        try:
            child = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT,
                                     preexec_fn=in_child)  # fmt: skip
        except OSError as error:
            print(f"drn.pipeline.job: cannot run {command[0]}: {error}", file=output, flush=True)
            returncode = 127
        else:
            for signum in pending:
                child.send_signal(signum)
            returncode = child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        message = last_error_line(output)  # this attempt's, whatever happened to the path
    after = _oom_kills(version, cgroups)
    oom_kills = max((after[c] - before.get(c, 0) for c in after), default=0)
    limit_mb, peak_mb = _memory_summary(version, cgroups)
    stop = received[0] if received else 0
    cause = classify(returncode, message, oom_kills, stop)
    status = 128 - returncode if returncode < 0 else returncode
    line.update(
        cause=cause, exit_code=status,
        signal=signal.Signals(-returncode).name if returncode < 0 else None, message=message,
        stop_signal=signal.Signals(stop).name if stop else None, ended=_now(),
        seconds=round(time.monotonic() - start, 1), memory_limit_mb=limit_mb,
        memory_peak_mb=peak_mb, oom_kills=oom_kills,
    )  # fmt: skip
    lines = [*decision.previous, line]
    line["retryable"] = cause != OK and decide(lines, attempt + 1, memory_retries).run
    _update(path, line)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        print("usage: python -m drn.pipeline.job --log LOG --attempt N [--memory-retries K] -- "
              "COMMAND...",
              file=sys.stderr)  # fmt: skip
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(
        prog="python -m drn.pipeline.job", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--log", type=Path, required=True, help="the job's log")
    parser.add_argument("--attempt", type=int, default=1, help="Snakemake's attempt (from 1)")
    parser.add_argument("--memory-retries", type=int, default=1,
                        help="attempts after running out of memory (with more memory)")  # fmt: skip
    args = parser.parse_args(argv[:split])
    return supervise(args.log, args.attempt, argv[split + 1 :], args.memory_retries)


if __name__ == "__main__":
    sys.exit(main())
