"""Snakemake's lock on a working directory, and whether it is stale: what ``drn unlock`` clears.

Snakemake locks its working directory while it runs (``.snakemake/locks/<n>.input.lock`` and
``<n>.output.lock``: the files its jobs read and write) and removes the lock when it ends. A
Snakemake killed outright (``kill -9``, a lost login node) leaves it, and the next Snakemake in
that directory stops with "Directory cannot be locked ... --unlock". The lock is stale where no
Snakemake process of this host works in that directory (:func:`snakemake_lock`): one whose
command line names snakemake (its program, ``python -m snakemake``) and whose current directory,
or ``--directory``/``-d``, is that directory (jobs' own Snakemakes, ``--nolock``, count too: the
jobs they run still write there). Other users' processes, whose current directory cannot be
read, count only by ``--directory``. Processes on other hosts cannot be seen: on a cluster, run
``drn unlock`` on the node where Snakemake ran.

Standard library only.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from drn.core.errors import HeldError, UsageError

LOCK_FILE = re.compile(r"^\d+\.(?:input|output)\.lock$")  # Snakemake's (persistence/file.py)


@dataclass(frozen=True)
class SnakemakeProcess:
    pid: int
    command: str


@dataclass(frozen=True)
class Lock:
    """Snakemake's lock on ``directory``: its lock files, when it was taken (the oldest file's
    time), and the Snakemake processes of this host that work in that directory."""

    directory: Path
    files: tuple[Path, ...]
    since: float
    processes: tuple[SnakemakeProcess, ...]

    @property
    def stale(self) -> bool:
        """Left by a Snakemake that is gone: lock files, and no Snakemake process there."""
        return bool(self.files) and not self.processes


def _arguments(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _directory_argument(argv: list[str]) -> str | None:
    """The value of ``--directory``/``-d`` in a Snakemake command line, or None."""
    for i, arg in enumerate(argv):
        if arg in ("--directory", "-d") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--directory="):
            return arg.split("=", 1)[1]
    return None


def _ancestors() -> set[int]:
    """This process and its parents (a shell running ``drn unlock && snakemake`` is not one)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
            pid = int(text[text.rfind(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def snakemake_processes(directory: str | os.PathLike) -> tuple[SnakemakeProcess, ...]:
    """The Snakemake processes of this host working in ``directory`` (by ``/proc``), this
    process and its parents left out."""
    target = Path(directory).resolve()
    found, own = [], _ancestors()
    try:
        entries = sorted((p for p in Path("/proc").iterdir() if p.name.isdigit()),
                         key=lambda p: int(p.name))  # fmt: skip
    except OSError:
        entries = []
    for entry in entries:
        if int(entry.name) in own:
            continue
        argv = _arguments(entry.name)
        if not argv or not any(Path(arg).name == "snakemake" for arg in argv):
            continue
        try:
            cwd: Path | None = Path(os.readlink(entry / "cwd"))
        except OSError:
            cwd = None
        named = _directory_argument(argv)
        where = [cwd] if cwd is not None else []
        if named is not None and (cwd is not None or Path(named).is_absolute()):
            where.append(cwd / named if cwd is not None else Path(named))
        if any(_same(place, target) for place in where):
            found.append(SnakemakeProcess(int(entry.name), shlex.join(argv)))
    return tuple(found)


def _same(place: Path, target: Path) -> bool:
    try:
        return place.resolve() == target
    except OSError:
        return False


def snakemake_lock(directory: str | os.PathLike) -> Lock | None:
    """Snakemake's lock on ``directory`` (its ``.snakemake/locks/*.lock``), or None where there
    is none."""
    directory = Path(directory)
    locks = directory / ".snakemake" / "locks"
    try:
        files = tuple(sorted(p for p in locks.iterdir() if LOCK_FILE.match(p.name)))
    except OSError:
        return None
    if not files:
        return None
    times = []
    for file in files:
        try:
            times.append(file.stat().st_mtime)
        except OSError:
            continue
    return Lock(directory, files, min(times, default=time.time()), snakemake_processes(directory))


def unlock_command(directory: str | os.PathLike, cwd: str | os.PathLike | None = None) -> str:
    """The command that clears ``directory``'s stale lock, run from ``cwd`` (default: here):
    e.g. ``drn unlock demo``."""
    relative = os.path.relpath(Path(directory).resolve(), Path(cwd or os.getcwd()).resolve())
    return f"drn unlock {shlex.quote(relative)}"


def unlock(directory: str | os.PathLike) -> str:
    """Remove ``directory``'s stale Snakemake lock; the one line saying what was removed (or
    that there was none). HeldError where a Snakemake process works there (naming it),
    UsageError where the directory does not exist."""
    shown = str(directory)
    if not Path(directory).is_dir():
        raise UsageError(f"{shown}: no such directory")
    lock = snakemake_lock(directory)
    if lock is None:
        return f"{shown}: no Snakemake lock; nothing to do"
    if not lock.stale:
        first = lock.processes[0]
        others = f" (and {len(lock.processes) - 1} more)" if len(lock.processes) > 1 else ""
        command = first.command if len(first.command) <= 80 else first.command[:77] + "..."
        raise HeldError(
            f"{shown}: Snakemake process {first.pid}{others} works there ({command}); not "
            "unlocked: its lock is live (wait for it to end, or stop it)"
        )
    for file in lock.files:
        file.unlink(missing_ok=True)
    names = ", ".join(file.name for file in lock.files)
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(lock.since))
    return (f"{shown}: removed a stale Snakemake lock (.snakemake/locks/{names}, from {since}); "
            "no Snakemake process works there")  # fmt: skip
