"""Packs: the plan's trained runs grouped to share one GPU (``resources.train.pack: K``).

One run of DRN x2 fills a fraction of an H100 (a step is over a thousand small kernels; issue
19, docs/PERFORMANCE.md), so several runs can train side by side on one GPU, each in its own
process (:mod:`drn.pipeline.pack_job`). This module decides which, as pure functions of the plan:

* **Packs of at most K**, longest with longest (by iterations, then the plan's order), so that
  no GPU idles long at a pack's tail. A run whose ``train.init_from`` is another trained run's
  model.pt packs only among runs of its depth (0: starts from no run of the plan; d + 1: from a
  run of depth d), so a pack never waits for a run of its own pack or of a pack that waits for
  it. A run left alone (K = 1, or the last of its depth) is no pack: it trains as its own job.
* **Pack jobs and segments.** A pack stops at every milestone of any of its runs (the union of
  their segment ends), so that a milestone's checkpoint is evaluated while the pack trains on,
  as a lone run's is: job ``j`` trains each run still training up to boundary ``b_j`` (or its
  end, if shorter). A run of a pack so also keeps the checkpoint of a boundary that is another
  run's milestone (``checkpoints/step_<b>.pt``, one file more). A run's segment ending at ``s``
  is done by the pack job of the first boundary at or after ``s`` (:meth:`Pack.job_of`).

No torch and no Snakemake here: the workflow, dvc.yaml, ``drn plan`` and ``drn train`` read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drn.pipeline.plan import Plan, Run
from drn.pipeline.settings import settings_from_params

PACK_SEPARATOR = "+"


@dataclass(frozen=True)
class Pack:
    """Runs trained together on one GPU: named by its runs (``drn_x2+drn_x3``), longest first."""

    runs: tuple[str, ...]
    iterations: tuple[int, ...]  # of each run, in the order of `runs`
    boundaries: tuple[int, ...]  # the steps its jobs stop at (ascending; the last: the longest)

    @property
    def name(self) -> str:
        return PACK_SEPARATOR.join(self.runs)

    def members(self, boundary: int) -> tuple[str, ...]:
        """The runs the job ending at `boundary` trains: those not finished at the one before."""
        before = max((b for b in self.boundaries if b < boundary), default=0)
        return tuple(r for r, n in zip(self.runs, self.iterations, strict=True) if n > before)

    def job_of(self, step: int) -> int:
        """The boundary of the job that trains a run of the pack to `step` (a segment end)."""
        return min(b for b in self.boundaries if b >= step)

    def previous(self, boundary: int) -> int | None:
        return max((b for b in self.boundaries if b < boundary), default=None)


def pack_size(params: dict[str, Any]) -> int:
    return int(params["resources"]["train"].get("pack", 1))


def pack_resources(train: dict[str, Any], runs: int) -> dict[str, Any]:
    """A pack job's resources (of `runs` runs) from ``resources.train``: one run's, plus
    cpus_per_packed_run and mem_mb_per_packed_run for each run after the first."""
    spec, extra = dict(train), runs - 1
    if extra:  # the schema asks for both where pack > 1
        spec["cpus_per_gpu"] += extra * spec["cpus_per_packed_run"]
        spec["mem_mb"] += extra * spec["mem_mb_per_packed_run"]
    return spec


def largest_pack(params: dict[str, Any], plan: Plan) -> int:
    """How many runs the plan's largest pack trains (1: none packed)."""
    return max((len(p.runs) for p in build_packs(params, plan)), default=1)


def build_packs(params: dict[str, Any], plan: Plan) -> tuple[Pack, ...]:
    """The packs of `plan` under ``resources.train.pack`` (none for 1)."""
    size = pack_size(params)
    runs = plan.trained_runs()
    if size < 2 or len(runs) < 2:
        return ()
    depth = _init_depths(params, runs)
    order = {run.name: index for index, run in enumerate(runs)}
    packs = []
    for level in sorted(set(depth.values())):
        ranked = sorted((r for r in runs if depth[r.name] == level),
                        key=lambda r: (-r.iterations, order[r.name]))  # fmt: skip
        for start in range(0, len(ranked), size):
            chunk = ranked[start : start + size]
            if len(chunk) > 1:
                boundaries = {s for run in chunk for s in run.milestones}
                boundaries.add(max(run.iterations for run in chunk))
                packs.append(Pack(tuple(r.name for r in chunk),
                                  tuple(r.iterations for r in chunk),
                                  tuple(sorted(boundaries))))  # fmt: skip
    return tuple(packs)


def pack_of(packs: tuple[Pack, ...], run: str) -> Pack | None:
    """The pack `run` trains in, None: it trains alone."""
    return next((pack for pack in packs if run in pack.runs), None)


def find_pack(packs: tuple[Pack, ...], name: str) -> Pack:
    for pack in packs:
        if pack.name == name:
            return pack
    raise ValueError(f"no pack {name!r} in the plan")


def _init_depths(params: dict[str, Any], runs: list[Run]) -> dict[str, int]:
    """Each run's depth in the chain of runs whose model.pt it starts from (train.init_from)."""
    by_model = {run.model: run.name for run in runs}
    source = {}
    for run in runs:
        settings = settings_from_params(params, run.variant, run.scale, run.epochs, run.loss,
                                        run.seed)  # fmt: skip
        source[run.name] = by_model.get(str(settings.init_from)) if settings.init_from else None
    depths: dict[str, int] = {}

    def depth(name: str, seen: tuple[str, ...] = ()) -> int:
        if name not in depths:
            parent = source[name]
            loop = parent is None or parent in seen
            depths[name] = 0 if loop else depth(parent, (*seen, name)) + 1
        return depths[name]

    for run in runs:
        depth(run.name)
    return depths
