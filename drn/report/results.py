"""Our evaluations, read where the plan (drn/pipeline/plan.py) says they are: their JSONs, one
table cell over its seeds beside a published number, and a verdict from such cells.

Owns: reading an evaluation's JSON (``read``, ``result``, ``per_image``), finding the plan's
evaluations of a cell (one per seed of ``train.seeds``), ``Cell`` (ours over seeds, theirs, the
difference) and ``verdict`` (the rule of :mod:`drn.report.stats` applied to cells). Nothing here
rebuilds a label or a path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drn.pipeline.plan import Evaluation, Plan
from drn.report.stats import NOT_PLANNED, NOT_RUN, Seeds, Verdict, seeds_of


def read(evaluation: Evaluation | None) -> dict[str, Any] | None:
    """The JSON an evaluation of the plan wrote, or None: not planned (None) or not run yet."""
    if evaluation is None or not Path(evaluation.path).is_file():
        return None
    return json.loads(Path(evaluation.path).read_text())


def find(plan: Plan, label: str, scale: int, dataset: str) -> Evaluation | None:
    """The plan's evaluation ``label`` of ``dataset`` at ``scale``, or None: not planned."""
    for found in plan.evaluations:
        if (found.label, found.scale, found.dataset) == (label, scale, dataset):
            return found
    return None


def result(evaluation: Evaluation | None) -> tuple[float, float] | None:
    """(PSNR, SSIM) of an evaluation's JSON, or None: not planned or not run yet."""
    data = read(evaluation)
    return None if data is None else (data["psnr"], data["ssim"])


def seeds(evaluations: list[Evaluation]) -> Seeds | None:
    """The per-seed results of one cell's evaluations (one per seed), None: none run yet."""
    return seeds_of([result(e) for e in evaluations])


def cell_evaluations(plan: Plan, group: str, arm: str, scale: int,
                     dataset: str) -> list[Evaluation]:  # fmt: skip
    """The plan's evaluations of ``arm`` of ``group`` on ``dataset`` at ``scale``: one per seed."""
    return [e for e in plan.group(group) if (e.arm, e.scale, e.dataset) == (arm, scale, dataset)]


def per_image(evaluation: Evaluation) -> dict[str, float]:
    """PSNR by image name of an evaluation's JSON (an infinite PSNR, written as null, left out)."""
    data = read(evaluation) or {}
    return {i["name"]: i["psnr"] for i in data.get("images") or [] if i.get("psnr") is not None}


@dataclass
class Cell:
    """One table cell: our results over seeds (None: ``missing`` says why), the published
    number beside them, their difference. ``offset``: a known protocol offset of the published
    PSNR (its protocol's PSNR minus ours for the same SR images), taken off it before comparing:
    the PSNR differences are ours - (theirs - offset); the SSIM difference is unchanged."""

    seeds: Seeds | None
    theirs: tuple[float, float] | None
    note: str = ""
    best: bool = False
    missing: str = NOT_RUN
    deterministic: bool = False  # bicubic, released weights: no training here, no seed
    offset: float = 0.0

    @property
    def ours(self) -> tuple[float, float] | None:
        """The mean over seeds of (PSNR, SSIM)."""
        return None if self.seeds is None else self.seeds.mean

    @property
    def compared_psnr(self) -> float | None:
        """The published PSNR ours are compared with: less the known protocol offset."""
        return None if self.theirs is None else self.theirs[0] - self.offset

    @property
    def delta(self) -> tuple[float, float] | None:
        if self.ours is None or self.theirs is None:
            return None
        return self.ours[0] - (self.theirs[0] - self.offset), self.ours[1] - self.theirs[1]

    @property
    def spread_delta(self) -> tuple[float, float] | None:
        """The seeds' spread (min..max PSNR) minus the published PSNR (less the offset); None:
        one seed."""
        if self.seeds is None or self.seeds.spread is None or self.theirs is None:
            return None
        low, high = self.seeds.spread
        theirs = self.theirs[0] - self.offset
        return low - theirs, high - theirs


def verdict(model: str, scale: int, cells: list[Cell], tolerance: float,
            published: bool = False, empty: str | None = None) -> Verdict:  # fmt: skip
    """The verdict (drn.report.stats) of a model at a scale from its cells on the datasets."""
    measured = [cell for cell in cells if cell.delta is not None]
    found = Verdict(
        model, scale, [cell.delta[0] for cell in measured], tolerance,
        any(cell.missing != NOT_PLANNED for cell in cells),
        [cell.spread_delta for cell in measured], [cell.seeds.n for cell in measured],
        empty=empty,
    )  # fmt: skip
    if published:
        found.against, found.value = "the published numbers", "the published value"
    return found
