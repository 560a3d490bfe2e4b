"""How many CPUs a ``drn`` process uses, decided once at start-up, and how it uses them.

This module owns the thread policy of every ``drn`` command (nothing else sets thread counts):

* **The allotment**: the CPUs the job was given, from the first of

  1. ``DRN_NUM_THREADS``: the user's override, honoured exactly (nothing else sets it);
  2. ``OMP_NUM_THREADS``: how Snakemake hands a rule's ``threads`` to its shell jobs (it exports
     it with ``OPENBLAS_NUM_THREADS`` etc., see ``snakemake/shell.py``); also the conventional
     knob, so ``OMP_NUM_THREADS=1 drn ...`` works as everywhere;
  3. ``SLURM_CPUS_PER_TASK``: a Slurm allocation made without Snakemake (``sbatch -c N``), which
     confines the process only where Slurm's cgroup plugin constrains cores;
  4. ``os.sched_getaffinity(0)``: the CPUs the operating system lets this process run on
     (``taskset``, cgroup cpusets, containers).

  2 and 3 are capped at 4: a job never runs more threads than it has CPUs. Under ``torchrun``
  the ``LOCAL_WORLD_SIZE`` processes of a node share the allotment (each takes its share, at
  least one).
* **Its use**: torch's intra-op pool gets the whole share; BLAS (OpenBLAS, MKL under numpy and
  scipy) runs single-threaded, because OpenBLAS busy-waits between calls and the many small
  products of :mod:`drn.protocol.resize` and :mod:`drn.protocol.metrics` gain little from two
  threads on a quiet machine but lose many times over beside another busy process
  (docs/PERFORMANCE.md).
  CPU work that parallelises (the bicubic evaluation) runs ``image_workers()`` images at a time.
* **A library caller** (``from drn import imresize, ssim`` in a script, no ``drn`` command, so
  no :func:`configure`) gets the same BLAS policy for the duration of each call and nothing
  after it: :func:`blas_policy` wraps the protocol's BLAS-heavy functions. While one or more such
  calls run (in any threads) BLAS runs single-threaded, for the whole process, as threadpoolctl's
  limits always are; when the last of them returns, the process's own setting is restored. The
  limit is counted, not nested per call, so threads that score images side by side never undo
  each other's limit (a per-call ``threadpool_limits`` context would: the first to leave would
  restore two threads under the others). Where :func:`configure` ran, BLAS is already on one
  thread for good and the wrapper does nothing. One limit of OpenBLAS (0.3.31 here): once the
  main thread has set a thread count, a count set from another thread is ignored. A call from
  the main thread always gets the policy, and so do the threads a set's scoring runs its images
  in (:func:`drn.protocol.scoring.score_folders` and ``score_super_resolution`` hold the limit
  around their pool); calls that a caller's own threads make get it only while the main thread
  has never set BLAS threads (or while a drn call of the main thread holds the limit).
* **Child processes** (torchrun ranks, loader workers, libraries loaded later) inherit the
  decision through ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` in the environment.

Thread counts change floating-point reduction orders: deterministic runs are bit-identical only
at equal thread counts.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, SourceFileLoader
from types import ModuleType
from typing import Any, TypeVar

from drn.core.errors import UsageError

OVERRIDE = "DRN_NUM_THREADS"
BLAS_THREADS = 1

_configured: Allotment | None = None
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Allotment:
    """The CPUs of the job (``cpus``), where that number came from, and this process's share."""

    cpus: int
    source: str
    processes: int = 1

    @property
    def share(self) -> int:
        """Threads for this process: its part of the job's CPUs, at least one."""
        return max(1, self.cpus // self.processes)


def _positive(text: str | None) -> int | None:
    """The leading positive integer of an environment value (``OMP_NUM_THREADS=4,2`` is 4)."""
    if text is None:
        return None
    head = text.strip().split(",", 1)[0].strip()
    return int(head) if head.isdigit() and int(head) > 0 else None


def affinity_cpus() -> int:
    """The number of CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def decide(environ: Mapping[str, str], usable: int) -> Allotment:
    """The job's allotment from ``environ`` and the ``usable`` CPUs (see the module docstring).

    An ``OVERRIDE`` that is not a positive integer is a UsageError (empty counts as unset); other
    unreadable values are skipped, as the libraries that own them do.
    """
    processes = _positive(environ.get("LOCAL_WORLD_SIZE")) or 1
    override = environ.get(OVERRIDE, "").strip()
    if override:
        cpus = _positive(override)
        if cpus is None:
            raise UsageError(f"{OVERRIDE}={override!r}: expected a positive integer")
        return Allotment(cpus, OVERRIDE, processes)
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        cpus = _positive(environ.get(name))
        if cpus is not None:
            return Allotment(min(cpus, usable), name, processes)
    return Allotment(usable, "affinity", processes)


def child_environment(allotment: Allotment) -> dict[str, str]:
    """What this process exports so that children and later-loaded libraries follow it."""
    return {"OMP_NUM_THREADS": str(allotment.share), "OPENBLAS_NUM_THREADS": str(BLAS_THREADS)}


class _ThenSetThreads(SourceFileLoader):
    """torch's own loader, which sets its intra-op threads once ``import torch`` has run."""

    def __init__(self, fullname: str, path: str, count: int) -> None:
        super().__init__(fullname, path)
        self.count = count

    def exec_module(self, module: ModuleType) -> None:
        super().exec_module(module)
        module.set_num_threads(self.count)


class _WhenTorchIsImported(MetaPathFinder):
    """Makes the first ``import torch`` set its threads (commands import torch lazily: at
    start-up it would cost every command seconds). Without this torch would start from
    OMP_NUM_THREADS, which MKL builds cap at the cores MKL counts."""

    def __init__(self, count: int) -> None:
        self.count = count

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and type(spec.loader) is SourceFileLoader and spec.origin:
            spec.loader = _ThenSetThreads(name, spec.origin, self.count)
        return spec


def apply(allotment: Allotment) -> None:
    """BLAS single-threaded, torch's intra-op pool at the process's share, children told so."""
    from threadpoolctl import threadpool_limits

    os.environ.update(child_environment(allotment))
    threadpool_limits(limits=BLAS_THREADS, user_api="blas")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(allotment.share)
    else:
        sys.meta_path.insert(0, _WhenTorchIsImported(allotment.share))


def configure() -> Allotment:
    """Decide and apply the allotment, once per process; the ``drn`` command's first step."""
    global _configured
    if _configured is None:
        _configured = decide(os.environ, affinity_cpus())
        apply(_configured)
    return _configured


def image_workers() -> int:
    """Images processed at a time by parallel CPU work: the share once configured, else 1."""
    return 1 if _configured is None else _configured.share


class _BlasLimit:
    """BLAS on :data:`BLAS_THREADS` threads while at least one caller holds it (counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders = 0
        self._controller: Any = None
        self._limiter: Any = None

    def acquire(self) -> None:
        with self._lock:
            if self._holders == 0:
                from threadpoolctl import ThreadpoolController

                if self._controller is None:  # finding the loaded libraries costs milliseconds
                    self._controller = ThreadpoolController()
                self._limiter = self._controller.limit(limits=BLAS_THREADS, user_api="blas")
            self._holders += 1

    def release(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self._limiter.restore_original_limits()
                self._limiter = None


_blas_limit = _BlasLimit()


def blas_policy(function: F) -> F:
    """``function`` run under the BLAS policy when the process has none (see the module
    docstring, "A library caller"); a no-op once :func:`configure` has run."""

    @functools.wraps(function)
    def under_policy(*args: Any, **kwargs: Any) -> Any:
        if _configured is not None:
            return function(*args, **kwargs)
        _blas_limit.acquire()
        try:
            return function(*args, **kwargs)
        finally:
            _blas_limit.release()

    return under_policy  # type: ignore[return-value]
