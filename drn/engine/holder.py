"""One trainer per run directory: its holder record, ``{run_dir}/holder.json``.

``drn train`` holds its run directory while it trains (:func:`hold`, rank 0 only): the record
names the process (``host``, ``pid``, ``pid_start``: its start time in clock ticks from
``/proc/<pid>/stat`` where there is one, ``slurm_job``: ``SLURM_JOB_ID`` or null, ``command``:
its argv), ``started`` and ``heartbeat`` (ISO 8601, UTC) and a random ``token`` that tells this
process's record from a successor's. A second trainer on the same directory is refused with
:class:`~drn.core.errors.HeldError` (exit 75: try again later), one line naming the holder. A
holder that is gone is taken over, with one line saying why (``RunHold.took_over``, which
``drn train`` writes to the console and train.log).

A holder is gone (:func:`holder_state`) when

* it ran on this host and its pid runs no more (or is a zombie), or the pid is another process's
  now (its start time differs: the pid was reused); on this host the pid decides alone: a live
  holder whose heartbeat is late (a process stopped with SIGSTOP, a hung one) keeps its run, as
  it may go on writing ``last.pt``; kill it to free the run;
* it ran on another host, in a Slurm job that has ended (``squeue -h -j JOB -o %T``: an end
  state, or a job Slurm no longer knows; where squeue is missing or fails, Slurm decides
  nothing);
* it ran on another host and its heartbeat is older than :data:`STALE_S` (10 minutes).

Why 10 minutes: the heartbeat beats every :data:`BEAT_S` (30 s) from a daemon thread, through
torch.compile and validation alike, so a live holder's is at most a beat old plus one write; ten
minutes is twenty missed beats, longer than a shared file system's stall or the clock skew
between NTP-synchronised nodes (well under a second) could explain, and short beside a training
segment. Taking over a live trainer (two writers of ``last.pt``) costs far more than waiting:
a Slurm job's end is known at once from squeue, so the limit only decides for holders whose host
and scheduler cannot be asked.

Acquiring is atomic on local and shared file systems: the record is written to a temporary file,
then hard-linked to ``holder.json`` (which fails when one exists; ``O_CREAT|O_EXCL`` where the
file system has no hard links). A stale record is first renamed to a name of the taker's own
(only one of several racing takers can rename it); the taker then checks that what it renamed is
the very record it judged stale (byte for byte), and puts back anything else. Acquirers of one run
directory also take turns (an ``flock`` on ``.holder.lock`` beside the record, held only while
judging and creating it), which closes the window where a third trainer starts while such a
wrong record is out of place; a file system without locks leaves the renames alone.
A damaged record (not JSON, a field missing) is named in the takeover line and taken over, never
a traceback.

The heartbeat rewrites the record (a temporary file renamed over it: a reader never sees half)
only while it is still this process's (by token); :meth:`RunHold.release` removes it only then.

Standard library only (no torch): ``drn status`` reads :func:`holder_state` in milliseconds.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from drn.core.errors import HeldError

HOLDER = "holder.json"
BEAT_S = 30.0  # how often the heartbeat is written
STALE_S = 600.0  # a heartbeat older than this, on another host: the holder is gone
SLURM_ENDED = {  # squeue's states of a job that has ended (it shows them for MinJobAge)
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "REVOKED", "SPECIAL_EXIT", "TIMEOUT",
}  # fmt: skip


@dataclass(frozen=True)
class Holder:
    """A holder record, as ``holder.json`` holds it."""

    host: str
    pid: int
    slurm_job: str | None
    started: str
    heartbeat: str
    command: str
    token: str
    pid_start: int | None = None

    def who(self) -> str:
        """E.g. ``pid 4242 on node7 (Slurm job 1234)``."""
        job = f" (Slurm job {self.slurm_job})" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{job}"


def _utc(moment: datetime | None = None) -> str:
    return (moment or datetime.now(UTC)).isoformat(timespec="seconds")


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _shown(text: str) -> str:
    """ISO 8601 as the lines show it: ``2026-12-02 13:00 UTC``."""
    return _moment(text).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process of this host, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) ": field 3 onwards
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _parse(raw: bytes) -> Holder:
    """The record of ``raw``; ValueError saying what is wrong with it."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    kinds = {"host": str, "pid": int, "started": str, "heartbeat": str, "token": str}
    for key, kind in kinds.items():
        if not isinstance(data.get(key), kind):
            raise ValueError(f"no {kind.__name__} {key!r}")
    holder = Holder(
        data["host"], data["pid"], data.get("slurm_job") or None, data["started"],
        data["heartbeat"], str(data.get("command", "")), data["token"],
        data["pid_start"] if isinstance(data.get("pid_start"), int) else None,
    )  # fmt: skip
    for key in ("started", "heartbeat"):
        try:
            _moment(getattr(holder, key))
        except ValueError:
            raise ValueError(f"{key} {getattr(holder, key)!r} is not ISO 8601") from None
    return holder


def slurm_job_state(job: str) -> str | None:
    """squeue's state of a Slurm job (e.g. ``RUNNING``), ``""`` where Slurm no longer knows it
    (it ended more than MinJobAge ago), None where squeue cannot tell (missing, failing)."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                              text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode == 0:
        states = done.stdout.split()
        return states[0] if states else ""
    return "" if "Invalid job id" in done.stderr else None


@dataclass(frozen=True)
class _Judged:
    raw: bytes | None  # the record's bytes (None: no record)
    holder: Holder | None
    alive: bool
    why: str
    age: float = 0.0  # seconds since its heartbeat


def _judge(
    path: Path,
    now: datetime | None = None,
    job_state: Callable[[str], str | None] = slurm_job_state,
    stale_s: float = STALE_S,
) -> _Judged:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _Judged(None, None, False, f"no {HOLDER}")
    except OSError as error:  # judged by nobody: refused, not taken over
        return _Judged(None, None, True, f"{path}: unreadable holder record ({error.strerror})")
    try:
        holder = _parse(raw)
    except ValueError as error:
        return _Judged(raw, None, False, f"{path}: damaged holder record ({error})")
    now = now or datetime.now(UTC)
    age = (now - _moment(holder.heartbeat)).total_seconds()
    if holder.host == socket.gethostname():
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return _Judged(raw, holder, False, f"pid {holder.pid} no longer runs on {holder.host}",
                           age)  # fmt: skip
        except PermissionError:
            pass  # another user's process: it exists
        stat = _stat(holder.pid)
        if stat is not None and stat[0] in ("Z", "X"):
            return _Judged(raw, holder, False, f"pid {holder.pid} on {holder.host} has exited",
                           age)  # fmt: skip
        if stat is not None and holder.pid_start is not None and stat[1] != holder.pid_start:
            why = f"pid {holder.pid} on {holder.host} is another process now (the pid was reused)"
            return _Judged(raw, holder, False, why, age)
        return _Judged(raw, holder, True, f"pid {holder.pid} runs on {holder.host}", age)
    if holder.slurm_job:
        state = job_state(holder.slurm_job)
        if state == "" or state in SLURM_ENDED:
            ended = f" ({state})" if state else " (Slurm no longer knows it)"
            return _Judged(raw, holder, False, f"its Slurm job {holder.slurm_job} ended{ended}",
                           age)  # fmt: skip
    if age > stale_s:
        why = f"its heartbeat is {_age(age)} old (stale after {_age(stale_s)})"
        return _Judged(raw, holder, False, why, age)
    return _Judged(raw, holder, True, f"heartbeat {_age(age)} ago", age)


def holder_state(
    run_dir: str | os.PathLike,
    now: datetime | None = None,
    job_state: Callable[[str], str | None] = slurm_job_state,
    stale_s: float = STALE_S,
) -> tuple[Holder | None, bool, str]:
    """(the holder record of ``run_dir`` or None, whether its holder is alive, why), by the
    rules of this module; never raises. ``why`` is ``"no holder.json"`` without a record, names
    the file where it is damaged (None, False: taken over) or unreadable (None, True: a
    permission error; nobody takes it over), else says what decided: e.g. ``pid 4242 runs on
    node7``, ``its Slurm job 1234 ended (COMPLETED)``, ``heartbeat 20 s ago``. ``now``: a UTC
    datetime (default: now); ``job_state``: how a Slurm job is asked after (default: squeue)."""
    judged = _judge(Path(run_dir) / HOLDER, now, job_state, stale_s)
    return judged.holder, judged.alive, judged.why


def held_line(run_dir: str | os.PathLike, holder: Holder, age: float) -> str:
    """The one line of a refusal: who trains ``run_dir``, since when, the heartbeat's age."""
    return (f"{run_dir}: trained by {holder.who()} since {_shown(holder.started)}, heartbeat "
            f"{_age(age)} ago; not started (run `drn status` to watch it)")  # fmt: skip


def _link(source: Path, path: Path) -> bool:
    """Make ``path`` a hard link of ``source``; False where ``path`` exists (an NFS link whose
    reply was lost and retried counts by the link count)."""
    try:
        os.link(source, path)
        return True
    except FileExistsError:
        with contextlib.suppress(OSError):
            return os.stat(source).st_nlink == 2
        return False


def _create(path: Path, raw: bytes, token: str) -> bool:
    """Create ``path`` holding ``raw`` unless it exists, atomically: True if created."""
    temporary = path.with_name(f".{path.name}.{token}.tmp")
    temporary.write_bytes(raw)
    try:
        return _link(temporary, path)
    except OSError:  # a file system without hard links
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(raw)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _take_away(path: Path, judged: bytes, token: str) -> bool:
    """Remove the stale record ``judged`` from ``path``, racing other takers: True if this
    process removed it. It is renamed to a name of this taker's own first; anything else found
    there (a racing taker's fresh record, a record that beat meanwhile) is put back."""
    aside = path.with_name(f"{path.name}.stale-{token}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # another taker's, or released
    try:
        if aside.read_bytes() == judged:
            return True
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
        return False
    finally:
        aside.unlink(missing_ok=True)


@contextlib.contextmanager
def _one_acquirer(run_dir: Path):
    """Acquirers of `run_dir` one at a time: an exclusive ``flock`` on its ``.holder.lock``
    (released when the block ends, or by the kernel when the process dies); where the file
    system has no locks, none."""
    try:
        descriptor = os.open(run_dir / ".holder.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


class RunHold:
    """This process's hold on a run directory (:func:`hold` makes one): a context manager that
    releases it. ``took_over`` is the line saying whose record was taken over, or None."""

    def __init__(self, run_dir: Path, beat_s: float, stale_s: float,
                 job_state: Callable[[str], str | None]):  # fmt: skip
        self.run_dir, self.path = run_dir, run_dir / HOLDER
        self.beat_s, self.stale_s, self.job_state = beat_s, stale_s, job_state
        self.pid = os.getpid()
        stat = _stat(self.pid)
        now = _utc()
        self.record = Holder(
            socket.gethostname(), self.pid, os.environ.get("SLURM_JOB_ID") or None, now, now,
            shlex.join(sys.argv), secrets.token_hex(8), stat[1] if stat else None,
        )  # fmt: skip
        self.took_over: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._beating: threading.Thread | None = None

    def _raw(self) -> bytes:
        return (json.dumps(asdict(self.record), indent=2) + "\n").encode()

    def acquire(self) -> RunHold:
        """Create the record, taking over a gone holder's; HeldError where a live one holds."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _one_acquirer(self.run_dir):
            return self._acquire()

    def _acquire(self) -> RunHold:
        taking = None
        for _ in range(1000):  # each pass creates, refuses, or finds the record changed
            self.record = Holder(**{**asdict(self.record), "heartbeat": _utc()})
            if _create(self.path, self._raw(), self.record.token):
                self.took_over = taking
                atexit.register(self.release)
                if self._beating is None:
                    self._beating = threading.Thread(target=self._beat, daemon=True,
                                                     name=f"heartbeat {self.path}")  # fmt: skip
                    self._beating.start()
                return self
            judged = _judge(self.path, None, self.job_state, self.stale_s)
            if judged.alive:
                raise HeldError(
                    held_line(self.run_dir, judged.holder, judged.age)
                    if judged.holder is not None else f"{judged.why}; not started"
                )  # fmt: skip
            if judged.raw is None:
                continue  # released meanwhile
            if judged.holder is None:
                taking = f"{self.run_dir}: took over: {judged.why}"
            else:
                taking = (f"{self.run_dir}: took over from {judged.holder.who()}, holder since "
                          f"{_shown(judged.holder.started)}: {judged.why}")  # fmt: skip
            _take_away(self.path, judged.raw, self.record.token)
        raise HeldError(f"{self.path}: changed by other processes all along; not started")

    def ours(self) -> bool:
        """Whether ``holder.json`` is still this process's record (by its token)."""
        try:
            return _parse(self.path.read_bytes()).token == self.record.token
        except (OSError, ValueError):
            return False

    def beat(self) -> bool:
        """Write the heartbeat now, if the record is still ours: True if written."""
        with self._lock:
            if os.getpid() != self.pid or not self.ours():
                return False
            self.record = Holder(**{**asdict(self.record), "heartbeat": _utc()})
            temporary = self.path.with_name(f".{self.path.name}.{self.record.token}.beat")
            try:
                temporary.write_bytes(self._raw())
                os.replace(temporary, self.path)
            except OSError:
                temporary.unlink(missing_ok=True)
                return False
            return True

    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            self.beat()

    def follow(self) -> None:
        """Hold the run directory again after it was set aside (renamed away with its
        ``holder.json``): the moved record is removed, a new one made; HeldError where another
        trainer took the fresh directory meanwhile."""
        if self.ours():
            return
        pattern = f"{glob.escape(self.run_dir.name)}.replaced-*/{HOLDER}"
        for moved in self.run_dir.parent.glob(pattern):
            with contextlib.suppress(OSError, ValueError):
                if _parse(moved.read_bytes()).token == self.record.token:
                    moved.unlink()
        self.acquire()

    def release(self) -> None:
        """Stop the heartbeat; remove ``holder.json`` if it is still ours."""
        self._stop.set()
        atexit.unregister(self.release)
        if os.getpid() != self.pid:  # a forked child (a data loader's worker) holds nothing
            return
        with self._lock:
            if self.ours():
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold(
    run_dir: str | os.PathLike,
    beat_s: float = BEAT_S,
    stale_s: float = STALE_S,
    job_state: Callable[[str], str | None] = slurm_job_state,
) -> RunHold:
    """Hold ``run_dir`` (made if missing) for this process: its record, a heartbeat every
    ``beat_s`` seconds; a gone holder's record is taken over (``took_over`` says whose and why).
    Raises :class:`~drn.core.errors.HeldError` where a live process holds it. Use it as a
    context manager, or call ``release()``."""
    return RunHold(Path(run_dir), beat_s, stale_s, job_state).acquire()
