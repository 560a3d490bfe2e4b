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
  threads on a
  quiet machine but lose many times over beside another busy process (docs/PERFORMANCE.md).
  CPU work that parallelises (the bicubic evaluation) runs ``image_workers()`` images at a time.
* **Child processes** (torchrun ranks, loader workers, libraries loaded later) inherit the
  decision through ``OMP_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` in the environment.

Thread counts change floating-point reduction orders: deterministic runs are bit-identical only
at equal thread counts.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, SourceFileLoader
from types import ModuleType

from drn.core.errors import UsageError

OVERRIDE = "DRN_NUM_THREADS"
BLAS_THREADS = 1

_configured: Allotment | None = None


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
