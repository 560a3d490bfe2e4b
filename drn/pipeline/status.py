"""Where the plan stands: every trained run's state, step, rate, ETA, validation PSNR, milestone
verdicts and GPU-hours, from the files the jobs write; ``drn status`` prints it. Read-only, no
torch, nothing written: it answers in seconds on a login node while the jobs run.

**A run's state** (:data:`STATES`), the first that holds: *finished*, its ``model.pt`` exists;
*running*, its holder record (``runs/<run>/holder.json``, the live trainer's) is alive, whoever
started it (:func:`drn.engine.holder.holder_state`: its pid on this host, else its Slurm job or
heartbeat); *queued* (or *running*, its job starting) where ``squeue`` lists a job of rule
``train`` or ``train_segment`` for it (snakemake-executor-plugin-slurm comments each job
``rule_<rule>_wildcards_<run>[_<step>]``); *failed*, the last attempt of its jobs' records
(:mod:`drn.pipeline.job`: ``{results}/logs/train/<run>.attempts.jsonl``, and
``<run>_step<N>.attempts.jsonl`` for a segment) ended with a cause that is not retried, or its
``progress.json`` says the trainer failed; *stopped, will resume*, it trained (progress.json) or
tried (an attempt) and nothing trains it now: the next run of the workflow resumes it from its
checkpoint; else *not started*.

**Numbers**: the step, rate (the last log window's), GPU-hours so far (time trained x GPUs) and
validation PSNR are progress.json's; a running run's ETA is its remaining steps at that rate,
less the time since progress.json was written. Beside them the projection of
:func:`drn.pipeline.cost.estimate`. The runs a trained run serves (milestones) are listed under it
with their checkpoint and the verdicts their evaluations' JSONs hold. The plan's ETA: the
remaining steps of every unfinished run that is not failed, each at its own last rate, else at
its projected rate scaled as the running runs' measured rates are to theirs, shared by the runs
running now (and never before the longest running run ends).

**Released weights** (params.yaml ``controls_released``): each file *not there* (left out of
the plan), *to import* or *imported*, and its evaluations done.

**Damaged files**: a file that cannot be read (half written, truncated) is named in one line in
its run's ``problems`` (``unreadable: runs/drn_x2/progress.json (...)``); nothing raises. A stale
Snakemake lock is named with the command that clears it.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drn.engine.holder import holder_state
from drn.pipeline.cost import PROJECTION, estimate
from drn.pipeline.job import OK, read_record
from drn.pipeline.job import RUNNING as ATTEMPT_RUNNING
from drn.pipeline.job import STOPPED as ATTEMPT_STOPPED
from drn.pipeline.locks import snakemake_lock, unlock_command

if TYPE_CHECKING:
    from drn.pipeline.cost import RunCost
    from drn.pipeline.plan import Evaluation, Plan, Run

NOT_STARTED, QUEUED, RUNNING = "not started", "queued", "running"
STOPPED, FAILED, FINISHED = "stopped, will resume", "failed", "finished"
STATES = (NOT_STARTED, QUEUED, RUNNING, STOPPED, FAILED, FINISHED)
PROGRESS, MODEL = "progress.json", "model.pt"  # drn.engine.reporter.PROGRESS; a run's weights
SQUEUE = ["squeue", "--me", "-h", "-o", "%i|%T|%k"]  # job id, state, comment
SQUEUE_TIMEOUT_S = 5.0
JOB_STARTED = {"RUNNING", "CONFIGURING"}  # a Slurm job's states that count as running
JOB_ENDING = {"COMPLETING", "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "STAGE_OUT"}
TRAIN_RULES = ("train", "train_segment")


@dataclass(frozen=True)
class SlurmJob:
    """One line of ``squeue``: the job id, its state (PENDING, RUNNING...) and comment."""

    id: str
    state: str
    comment: str


@dataclass(frozen=True)
class Verdict:
    """What one evaluation of a milestone says: its PSNR against the number expected there."""

    label: str
    dataset: str
    psnr: float | None
    expected: float | None
    delta_db: float | None
    verdict: str  # on course, behind, ahead, no reference; "" where its JSON has none


@dataclass(frozen=True)
class MilestoneStatus:
    """A run served by a trained run's checkpoint at ``step`` (plan: ``served_by``)."""

    run: str
    step: int
    kept: bool  # its checkpoint exists
    evaluations_done: int
    evaluations: int
    verdicts: tuple[Verdict, ...]


@dataclass(frozen=True)
class RunStatus:
    """Where one trained run of the plan stands (module docstring: how each is found)."""

    run: str
    roles: tuple[str, ...]
    variant: str
    scale: int
    state: str  # of STATES
    step: int
    iterations: int
    checkpoint_step: int
    until: int | None  # the end of the segment being trained, if not the run's end
    it_per_s: float | None
    eta_s: float | None  # of a running run with a rate
    latest_val_psnr: float | None
    latest_val_step: int | None
    best_val_psnr: float | None
    hours: float  # trained so far, over every attempt
    gpu_hours: float  # hours x GPUs
    gpu_hours_projected: float
    projected_it_per_s: float
    evaluations_done: int
    evaluations: int
    milestones: tuple[MilestoneStatus, ...]
    slurm_job: str | None
    slurm_state: str | None
    host: str | None
    pid: int | None
    device: str | None
    updated: str | None  # when progress.json was written
    cause: str | None  # of the last attempt that ended badly
    message: str | None
    note: str  # why this state, in a few words
    problems: tuple[str, ...]  # one line per file that could not be read


@dataclass(frozen=True)
class PlanTotal:
    runs: int
    states: dict[str, int]
    step: int  # iterations done, over every trained run
    iterations: int
    hours: float
    gpu_hours: float
    gpu_hours_projected: float
    evaluations_done: int
    evaluations: int
    at_once: int  # runs running now
    eta_s: float | None  # None: nothing runs, or nothing left


@dataclass(frozen=True)
class ReleasedStatus:
    """Released weights of the plan (params.yaml controls_released): their file there or not,
    imported, evaluated."""

    key: str  # controls_released.{variant}.x{scale}
    file: str
    state: str  # of RELEASED_STATES
    evaluations_done: int
    evaluations: int
    url: str  # where the authors publish the file


NOT_THERE, TO_IMPORT, IMPORTED = "not there", "to import", "imported"
RELEASED_STATES = (NOT_THERE, TO_IMPORT, IMPORTED)


@dataclass(frozen=True)
class PlanStatus:
    runs: tuple[RunStatus, ...]
    total: PlanTotal
    slurm: bool  # squeue answered
    lock: str | None  # a stale Snakemake lock and the command that clears it
    now: str
    problems: tuple[str, ...] = field(default=())
    released: tuple[ReleasedStatus, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "now": self.now, "projection": PROJECTION, "slurm": self.slurm, "lock": self.lock,
            "problems": list(self.problems), "total": asdict(self.total),
            "runs": [asdict(r) for r in self.runs],
            "released": [asdict(r) for r in self.released],
        }  # fmt: skip


# ------------------------------------------------------------------------------ the readers


def squeue_jobs(timeout: float = SQUEUE_TIMEOUT_S) -> list[SlurmJob] | None:
    """This user's Slurm jobs (``squeue --me``); None where squeue is missing or fails."""
    try:
        done = subprocess.run(SQUEUE, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    jobs = []
    for line in done.stdout.splitlines():
        parts = [part.strip() for part in line.split("|", 2)]
        if len(parts) == 3 and parts[0]:
            jobs.append(SlurmJob(*parts))
    return jobs


def job_of(run: Run, jobs: list[SlurmJob]) -> SlurmJob | None:
    """The job of rule train (or train_segment, at one of its milestones) for ``run``, a running
    one first; a job that is ending counts as none."""
    wanted = {f"rule_train_wildcards_{run.name}"} | {
        f"rule_train_segment_wildcards_{run.name}_{step}" for step in run.milestones
    }
    found = [j for j in jobs if j.comment in wanted and j.state not in JOB_ENDING]
    return min(found, key=lambda j: j.state not in JOB_STARTED) if found else None


def read_json(path: Path) -> tuple[dict | None, str | None]:
    """(the JSON object in ``path``, None) or (None, the one line saying why it is unreadable);
    (None, None) where it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as error:
        return None, f"unreadable: {path} ({_why(error)})"
    try:
        found = json.loads(text)
    except ValueError as error:
        return None, f"unreadable: {path} ({_why(error)})"
    if not isinstance(found, dict):
        return None, f"unreadable: {path} (not a JSON object)"
    return found, None


def read_attempts(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The attempts of a job's record (:func:`drn.pipeline.job.read_record`), and a line naming it
    where some of its lines are not records (truncated, half written)."""
    lines = read_record(path)
    try:
        written = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return lines, None
    if len(written) > len(lines):
        bad = len(written) - len(lines)
        return lines, f"unreadable: {path} ({bad} of {len(written)} lines are not attempts)"
    return lines, None


def age_s(stamp: Any, now: float | None = None) -> float | None:
    """Seconds since ``stamp`` (:func:`timestamp`) at ``now`` (default: the clock)."""
    when = timestamp(stamp)
    return None if when is None else (time.time() if now is None else now) - when


def timestamp(stamp: Any) -> float | None:
    """Seconds since the epoch of ``stamp`` (ISO 8601, local time without an offset, or already
    seconds); None if not a time."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return float(stamp)
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when.astimezone() if when.tzinfo is None else when).timestamp()


# ------------------------------------------------------------------------------ one run


def run_status(params: dict[str, Any], plan: Plan, run: Run, cost: RunCost, now: float,
               jobs: list[SlurmJob] | None, holder: Callable[[Path], tuple[Any, bool, str]],
               ) -> RunStatus:  # fmt: skip
    """Where trained ``run`` stands (module docstring)."""
    directory = Path(run.directory)
    problems: list[str] = []
    progress, problem = read_json(directory / PROGRESS)
    problems += [problem] if problem else []
    progress = progress or {}
    found, live, gone = holder(directory)
    record = asdict(found) if is_dataclass(found) else found  # a Holder, or a fake's dict
    if record is None and gone.startswith(str(directory)):  # damaged or unreadable: named
        problems.append(f"unreadable: {gone}")
    job = job_of(run, jobs) if jobs else None
    last, record_problems = _last_attempt(params, run)
    problems += record_problems
    fine = (OK, ATTEMPT_RUNNING, ATTEMPT_STOPPED)
    failure = last if last and last.get("cause") not in fine else None
    finished = (directory / MODEL).is_file()
    said = progress.get("state")
    note = ""
    if finished:
        state = FINISHED
    elif live:
        state = RUNNING
    elif job is not None:
        state = RUNNING if job.state in JOB_STARTED else QUEUED
        note = f"Slurm job {job.state.lower()}" + (", no trainer yet" if state == RUNNING else "")
    elif failure is not None and failure.get("retryable") is False:
        state = FAILED
    elif said == "failed":
        state, note = FAILED, "the trainer failed (its train.log says why)"
    elif progress or last:
        state, note = STOPPED, _stopped_why(progress, last, failure, record, gone)
    else:
        state = NOT_STARTED
    if progress and _number(progress.get("iterations")) not in (None, run.iterations):
        note = _join(note, f"progress.json is of a run of {progress['iterations']:,} iterations "
                     "(other settings: the next job starts afresh)")  # fmt: skip
    step = _int(progress.get("step")) or 0
    step = run.iterations if finished and not progress else step
    rate = _number(progress.get("it_per_s"))
    eta = None
    if state == RUNNING and rate and step < run.iterations:
        since = age_s(progress.get("updated"), now) or 0.0
        eta = max(0.0, (run.iterations - step) / rate - max(0.0, since))
    hours = (_number(progress.get("train_seconds")) or 0.0) / 3600
    gpus = _int(progress.get("gpus")) or 0
    own = [e for e in plan.evaluations if e.run == run.name]
    milestones = tuple(_milestone(plan, served, problems) for served in plan.served_runs(run.name))
    slurm_job = (record or {}).get("slurm_job") if live else None
    slurm_job = slurm_job or (job.id if job else None)
    if live and not slurm_job:
        slurm_job = progress.get("slurm_job")
    where = (record or progress) if live else {}  # who trains it: the holder's record
    return RunStatus(
        run.name, tuple(run.roles), run.variant, run.scale, state, step, run.iterations,
        _int(progress.get("checkpoint_step")) or 0, _int(progress.get("until")), rate, eta,
        _number(progress.get("latest_val_psnr")), _int(progress.get("latest_val_step")),
        _number(progress.get("best_val_psnr")), hours, hours * gpus, cost.gpu_hours,
        cost.iterations_per_s, _done(own), len(own), milestones,
        str(slurm_job) if slurm_job else None, job.state if job else None,
        where.get("host"), _int(where.get("pid")),
        progress.get("device"), progress.get("updated"),
        failure.get("cause") if failure and state != FINISHED else None,
        failure.get("message") if failure and state != FINISHED else None, note,
        tuple(problems),
    )  # fmt: skip


def _last_attempt(params: dict[str, Any], run: Run) -> tuple[dict | None, list[str]]:
    """The latest attempt (by its start) of the jobs that train ``run``: its segments' and its
    last; and a line for each record that could not be read whole."""
    logs = Path(params["paths"]["results"]) / "logs" / "train"
    paths = [logs / f"{run.name}_step{step}.attempts.jsonl" for step in run.milestones]
    paths.append(logs / f"{run.name}.attempts.jsonl")
    last, when, problems = None, None, []
    for path in paths:
        lines, problem = read_attempts(path)
        problems += [problem] if problem else []
        started = (timestamp(lines[-1].get("started")) or 0.0) if lines else None
        if started is not None and (when is None or started >= when):
            last, when = lines[-1], started
    return last, problems


def _stopped_why(progress: dict, last: dict | None, failure: dict | None, record: dict | None,
                 gone: str) -> str:  # fmt: skip
    said, step = progress.get("state"), progress.get("step")
    if last is not None and last.get("cause") == ATTEMPT_RUNNING:
        return (f"attempt {last.get('attempt')} (started {last.get('started')} on "
                f"{last.get('host')}) has no end in its record: its trainer is starting, or was "
                "killed with its job")  # fmt: skip
    if failure is not None:
        why = f"attempt {failure.get('attempt')}: {failure.get('cause')}"
        return why + (f": {failure['message']}" if failure.get("message") else "") + "; retried"
    if said == "segment_done":
        return f"segment up to step {progress.get('until') or step} done"
    if said == "stopped":
        return f"stopped at step {step}"
    if said == "finished":
        return f"progress.json says finished, but {MODEL} is missing"
    if said == "running":
        return f"its trainer is gone ({gone})" if record is not None else "its trainer is gone"
    return "tried, not trained yet" if not progress else ""


def _milestone(plan: Plan, served: Run, problems: list[str]) -> MilestoneStatus:
    evaluations = [e for e in plan.evaluations if e.run == served.name]
    verdicts = []
    for evaluation in evaluations:
        verdict = _verdict(evaluation, problems)
        verdicts += [verdict] if verdict else []
    return MilestoneStatus(served.name, served.iterations, Path(served.model).is_file(),
                           _done(evaluations), len(evaluations), tuple(verdicts))  # fmt: skip


def _verdict(evaluation: Evaluation, problems: list[str]) -> Verdict | None:
    found, problem = read_json(Path(evaluation.path))
    problems += [problem] if problem else []
    if found is None:
        return None
    milestone = found.get("milestone") if isinstance(found.get("milestone"), dict) else {}
    return Verdict(
        evaluation.label, evaluation.dataset, _number(found.get("psnr")),
        _number(milestone.get("expected")), _number(milestone.get("delta_db")),
        str(milestone.get("verdict") or ""),
    )  # fmt: skip


def _done(evaluations: list[Evaluation]) -> int:
    return sum(Path(e.path).is_file() for e in evaluations)


# ------------------------------------------------------------------------------ the plan


def plan_status(
    params: dict[str, Any],
    plan: Plan,
    now: float | None = None,
    squeue: Callable[[], list[SlurmJob] | None] = squeue_jobs,
    costs: Mapping[str, RunCost] | None = None,
    holder: Callable[[Path], tuple[Any, bool, str]] | None = None,
    workdir: str | Path = ".",
) -> PlanStatus:
    """Where every trained run of ``plan`` (of ``params``) stands, at ``now`` (seconds since the
    epoch; default: the clock), with the jobs ``squeue()`` lists (None: no Slurm), the projected
    cost of each run (default: :func:`drn.pipeline.cost.estimate`), ``holder(run_dir)`` (default
    :func:`holder_state`) and the Snakemake locks of ``workdir``. The run directories and the
    results are params.yaml's paths, relative to the current directory as the jobs write them."""
    now = time.time() if now is None else now
    jobs = squeue()
    if holder is None:
        holder = functools.partial(holder_state, now=datetime.fromtimestamp(now, UTC),
                                   job_state=_job_state(jobs))  # fmt: skip
    runs = []
    for run in plan.trained_runs():
        cost = costs[run.name] if costs is not None else estimate(params, run)
        runs.append(run_status(params, plan, run, cost, now, jobs, holder))
    lock = stale_lock(Path(workdir))
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    return PlanStatus(tuple(runs), _total(plan, runs), jobs is not None, lock,
                      stamp.replace("+00:00", "Z"), released=released_status(plan))  # fmt: skip


def released_status(plan: Plan) -> tuple[ReleasedStatus, ...]:
    """Each file of released weights of the plan: not there (left out of the plan), to import,
    or imported, and its evaluations done."""
    found = []
    for r in plan.released:
        evaluations = [e for e in plan.evaluations if e.weights == r.model]
        state = (IMPORTED if Path(r.model).is_file() else TO_IMPORT) if r.present else NOT_THERE
        found.append(ReleasedStatus(r.key, r.file, state, _done(evaluations), len(evaluations),
                                    r.url))  # fmt: skip
    return tuple(found)


def _total(plan: Plan, runs: list[RunStatus]) -> PlanTotal:
    states = {state: sum(r.state == state for r in runs) for state in STATES}
    done = sum(r.iterations if r.state == FINISHED else min(r.step, r.iterations) for r in runs)
    running = [r for r in runs if r.state == RUNNING]
    return PlanTotal(
        len(runs), {s: n for s, n in states.items() if n}, done, sum(r.iterations for r in runs),
        sum(r.hours for r in runs), sum(r.gpu_hours for r in runs),
        sum(r.gpu_hours_projected for r in runs), _done(list(plan.evaluations)),
        len(plan.evaluations), len(running), _eta(runs, running),
    )  # fmt: skip


def _eta(runs: list[RunStatus], running: list[RunStatus]) -> float | None:
    """The plan's ETA (module docstring); None when nothing with a rate runs or nothing is left."""
    rated = [r for r in running if r.it_per_s]
    measured = [r.it_per_s / r.projected_it_per_s for r in runs
                if r.it_per_s and r.projected_it_per_s]  # fmt: skip
    scaled = sum(measured) / len(measured) if measured else 1.0
    rates = {r.run: r.it_per_s or r.projected_it_per_s * scaled for r in runs}
    left = [r for r in runs if r.state not in (FINISHED, FAILED) and r.step < r.iterations]
    if not rated or not left or not all(rates[r.run] for r in left):
        return None
    work = sum((r.iterations - r.step) / rates[r.run] for r in left)
    return max(work / len(rated), max(r.eta_s or 0.0 for r in rated))


# ------------------------------------------------------------------------------ Snakemake's lock


def stale_lock(workdir: Path) -> str | None:
    """A line naming the stale Snakemake lock of ``workdir`` (:func:`drn.pipeline.locks
    .snakemake_lock`) and the command that clears it; None where there is none, or a Snakemake
    process of this host works there. Without /proc (not Linux) no process can be seen: the
    line says so instead of calling the lock stale."""
    lock = snakemake_lock(workdir)
    if lock is None or not lock.stale:
        return None
    where = workdir / ".snakemake" / "locks"
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(lock.since))
    if not Path("/proc").is_dir():
        return (f"Snakemake lock: {where} (since {since}); if no Snakemake works there, clear "
                f"it with: {unlock_command(workdir)}")  # fmt: skip
    return (f"stale Snakemake lock: {where} (since {since}): no Snakemake process of this host "
            f"works there; clear it with: {unlock_command(workdir)}")  # fmt: skip


def _job_state(jobs: list[SlurmJob] | None) -> Callable[[str], str | None]:
    """What :func:`drn.engine.holder.holder_state` asks of Slurm, from the squeue already read:
    a job's state, "" where squeue answered without it, None where it did not answer."""
    states = {job.id: job.state for job in jobs or []}
    return lambda job: None if jobs is None else states.get(str(job), "")


# ------------------------------------------------------------------------------ small helpers


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _why(error: Exception) -> str:
    return str(error).splitlines()[0][:200] if str(error) else type(error).__name__


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)
