"""The ablations of params.yaml, as the plan evaluates them: each arm over its seeds, each arm
paired against the first, and the paper's claim about each pair.

Owns: ``AblationRow`` (an arm's results over seeds, the paper's PSNR where the ablation redoes
one of its tables), ``Contrast`` (the paired per-image differences first minus other, their
paired bootstrap interval of :mod:`drn.report.stats`, the supported / not supported / not
resolved sentence), ``Ablation`` (its rows, contrasts, the paper's table beside it, whether that
compares, its demo-scale label), the paper's claims (Table 2's numbers, the MAE-vs-MSE
direction), and the validation curves of its arms (``curve_series``: one per arm and seed; a
milestone's is the serving run's up to its step).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drn.pipeline.plan import BICUBIC, Evaluation, Plan
from drn.report.recipe import demo_scale, paper_epochs
from drn.report.reference import PAPER_ARMS
from drn.report.results import per_image, seeds
from drn.report.stats import Claim, Interval, Seeds, paired_interval, sentence


@dataclass
class AblationRow:
    """One arm of an ablation over its seeds."""

    arm: str
    labels: list[str]
    runs: list[str]
    seeds: Seeds | None
    paper: float | None  # the paper's PSNR for this arm, where the ablation redoes its table

    @property
    def ours(self) -> tuple[float, float] | None:
        return None if self.seeds is None else self.seeds.mean

    @property
    def run(self) -> str:
        return ", ".join(self.runs)


@dataclass
class Contrast:
    """An arm against the ablation's first: the paired per-image differences, first minus other
    (dB), their interval, and the paper's claim about them if it makes one."""

    first: str
    other: str
    interval: Interval | None  # None: no pair of images yet
    claim: Claim | None
    images: int = 0  # distinct images paired
    seeds: list[int] = field(default_factory=list)  # seeds paired

    @property
    def sentence(self) -> str:
        return sentence(self.first, self.other, self.interval, self.claim)

    @property
    def pairs(self) -> str:
        if self.interval is None:
            return "-"
        seeds = len(self.seeds)
        return (f"{self.interval.n} ({self.images} image{'s' * (self.images > 1)} x {seeds} "
                f"seed{'s' * (seeds > 1)})")  # fmt: skip


@dataclass
class Ablation:
    """One ablation of the plan: its arms' results over seeds, the paired differences of each
    arm against the first and, where it redoes a table of the paper, that table's numbers."""

    name: str
    title: str
    spec: dict[str, Any]
    varies: str  # "model" or "loss": what its arms are
    rows: list[AblationRow]
    paper: str | None = None  # the table of drn/reference it redoes
    paper_table: dict[str, Any] = field(default_factory=dict)
    contrasts: list[Contrast] = field(default_factory=list)
    scale_label: str = ""  # "demo-scale run (...)" or ""

    @property
    def paper_title(self) -> str:
        """'table2' -> 'Table 2'."""
        return re.sub(r"^table(\d+)$", r"Table \1", self.paper or "")

    @property
    def paper_note(self) -> str:
        """Whether our numbers compare with the paper's table: same dataset, scale and epochs."""
        theirs = self.paper_table
        if "psnr" not in theirs:
            return f"drn/reference has no numbers of the paper's {self.paper_title} by arm."
        if self.as_in_paper:
            return f"As in the paper's {self.paper_title}."
        return (
            f"The paper's {self.paper_title} is {theirs.get('dataset')} x{theirs.get('scale')} "
            f"after {theirs.get('epochs')} epochs: not comparable."
        )

    @property
    def as_in_paper(self) -> bool:
        theirs = self.paper_table
        return (self.spec["dataset"], self.spec["scale"], float(self.spec["epochs"])) == (
            theirs.get("dataset"), theirs.get("scale"), float(theirs.get("epochs", -1)),
        )  # fmt: skip


def claim_of(ablation: str | None, varies: str, first: str, other: str,
             reference: dict[str, Any]) -> Claim | None:  # fmt: skip
    """What the paper claims about ``first`` minus ``other`` of an ablation: Table 2's numbers
    where the ablation redoes it (paper: table2), the MAE-vs-MSE direction (claims.
    loss_comparison) where it compares those two losses; None: no claim."""
    table = (reference.get(ablation) or {}) if ablation else {}
    names = PAPER_ARMS.get(ablation or "", {})
    psnr = table.get("psnr") or {}
    if first in names and other in names and names[first] in psnr and names[other] in psnr:
        a, b = psnr[names[first]], psnr[names[other]]
        size = round(a - b, 6)
        table_title = re.sub(r"^table(\d+)$", r"Table \1", ablation or "")
        source = f"{table_title}: {names[first]} {a:.2f} - {names[other]} {b:.2f}"
        return Claim((size > 0) - (size < 0), size, source)
    loss = (reference.get("claims") or {}).get("loss_comparison")
    if (
        varies == "loss"
        and isinstance(loss, dict)
        and {first, other} == {loss["better"], loss["than"]}
    ):
        sign = 1 if first == loss["better"] else -1
        size = loss.get("difference_db")
        return Claim(sign, None if size is None else sign * float(size), loss["source"])
    return None


def contrast(first: tuple[str, list[Evaluation]], other: tuple[str, list[Evaluation]],
             claim: Claim | None) -> Contrast:  # fmt: skip
    """Paired per-image differences first - other, matched by seed and image name."""
    by_seed = {e.seed: per_image(e) for e in first[1]}
    differences, images, paired_seeds = [], set(), []
    for evaluation in other[1]:
        mine = by_seed.get(evaluation.seed)
        if not mine:
            continue
        theirs = per_image(evaluation)
        common = sorted(set(mine) & set(theirs))
        if common:
            paired_seeds.append(evaluation.seed)
            images.update(common)
            differences.extend(mine[name] - theirs[name] for name in common)
    interval = paired_interval(differences, len(paired_seeds))
    return Contrast(first[0], other[0], interval, claim, len(images), paired_seeds)


def ablations(plan: Plan, params: dict[str, Any], reference: dict[str, Any]) -> list[Ablation]:
    """Every ablation of params.yaml, in its order, from the plan's evaluations of it: one row
    per arm over its seeds, each arm paired against the first."""
    found = []
    for name, spec in (params.get("ablations") or {}).items():
        table = spec.get("paper")
        theirs = (reference.get(table) or {}) if table else {}
        names = PAPER_ARMS.get(table or "", {})
        varies = "loss" if "losses" in spec else "model"
        arms: dict[str, list[Evaluation]] = {}
        for evaluation in plan.group(name):
            arms.setdefault(evaluation.arm, []).append(evaluation)
        rows = [
            AblationRow(
                arm, [e.label for e in evaluations], [e.run or BICUBIC for e in evaluations],
                seeds(evaluations), (theirs.get("psnr") or {}).get(names.get(arm, "")),
            )
            for arm, evaluations in arms.items()
        ]  # fmt: skip
        items = list(arms.items())
        contrasts = [
            contrast(items[0], item, claim_of(table, varies, items[0][0], item[0], reference))
            for item in items[1:]
        ]
        entries = []
        for evaluations in arms.values():
            for evaluation in evaluations:
                run = plan.run(evaluation.run)
                epochs = theirs.get("epochs") or paper_epochs(reference, run.variant)[0]
                entries.append((evaluation.arm, run, float(epochs)))
        found.append(Ablation(
            name, spec.get("title") or name, spec, varies, rows, table, theirs, contrasts,
            demo_scale(entries, params, reference),
        ))  # fmt: skip
    return found


def curve_series(
    plan: Plan, group: str, curves: Mapping[str, Sequence[Sequence[float]]]
) -> list[tuple[str, list[list[float]]]]:
    """The validation curves of ablation ``group``'s arms, one (name, [[step, PSNR], ...]) per
    arm and seed, in the plan's order: 'drn', or 'drn (seed 1)' where the arm has several seeds.
    ``curves``: each trained run's curve by its name; a milestone's (a run served by another's
    checkpoint) is the serving run's up to its step; a run without one, []."""
    found: dict[tuple[str, int], str] = {}
    for evaluation in plan.group(group):
        if evaluation.run is not None:
            found.setdefault((evaluation.arm, evaluation.seed), evaluation.run)
    several = {arm for arm, _ in found if sum(a == arm for a, _ in found) > 1}
    series = []
    for (arm, seed), name in found.items():
        run = plan.run(name)
        if run.trained:
            points = [list(p) for p in curves.get(name, [])]
        else:
            points = [list(p) for p in curves.get(run.served_by or "", [])
                      if p[0] <= run.iterations]  # fmt: skip
        series.append((f"{arm} (seed {seed})" if arm in several else arm, points))
    return series
