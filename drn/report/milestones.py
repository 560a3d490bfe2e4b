"""The early verdict of a milestone: a run of the plan served by a longer run's checkpoint at its
last step (drn/pipeline/plan.py, ``Run.served_by``), set beside the number it should reach there.

Owns: ``Expectation`` (that number, where it comes from, and its kind), ``expectation`` (the
rule: the paper's number where the evaluation redoes a table of the paper at the same dataset,
scale and epochs; else bicubic's score of that set as a floor; else none), ``verdict`` (on
course / behind / ahead / no reference, within ``train.milestone_tolerance_db``), ``line`` (the
verdict in one line), ``milestone`` (the ``"milestone"`` block of a milestone evaluation's JSON,
which ``drn evaluate --milestone`` writes) and ``MilestoneRow`` / ``milestone_rows`` (the
report's Milestones section). The steps of the milestones come from params.yaml (the plan);
only the expected numbers come from drn/reference.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from drn.pipeline.plan import Evaluation, Plan
from drn.report.recipe import demo_scale, paper_epochs
from drn.report.reference import PAPER_ARMS, paper, title
from drn.report.results import read

PAPER, BICUBIC_FLOOR = "paper", "bicubic"  # the kinds of expectation
ON_COURSE, BEHIND, AHEAD, NO_REFERENCE = "on course", "behind", "ahead", "no reference"
BICUBIC_REFERENCE = "bicubic (no published number at this point)"
DEFAULT_TOLERANCE_DB = 0.1
NOT_EVALUATED = "not evaluated yet"


@dataclass(frozen=True)
class Expectation:
    """The PSNR (dB) a milestone should reach, where that number comes from, and its kind:
    ``"paper"`` (a published number: behind, on course or ahead) or ``"bicubic"`` (a floor:
    behind or on course, never ahead)."""

    psnr: float
    reference: str
    kind: str


def tolerance_db(params: dict[str, Any]) -> float:
    """``train.milestone_tolerance_db`` (default 0.1 dB)."""
    return float(params["train"].get("milestone_tolerance_db", DEFAULT_TOLERANCE_DB))


def _table_title(table: str) -> str:
    """'table2' -> 'Table 2'."""
    return re.sub(r"^table(\d+)$", r"Table \1", table)


def expectation(params: dict[str, Any], plan: Plan, evaluation: Evaluation,
                bicubic_psnr: float | None,
                reference: dict[str, Any] | None = None) -> Expectation | None:  # fmt: skip
    """What ``evaluation`` (of a run of ``plan``) should reach: the paper's number where its
    ablation (params.yaml ``ablations.<group>.paper``) names a table of the paper
    (drn/reference/drn_paper.yaml, or ``reference``) with a row for its arm (``PAPER_ARMS``) and
    that table's dataset, scale and epochs are the evaluation's dataset and scale and its run's
    epochs; else ``bicubic_psnr`` (bicubic's score of that set, the plan's bicubic evaluation)
    as a floor; else None: no reference."""
    spec = (params.get("ablations") or {}).get(evaluation.group) or {}
    table = spec.get("paper")
    if table and evaluation.run is not None:
        theirs = ((paper() if reference is None else reference).get(table)) or {}
        row = PAPER_ARMS.get(table, {}).get(evaluation.arm)
        psnr = (theirs.get("psnr") or {}).get(row) if row else None
        epochs = float(plan.run(evaluation.run).epochs)
        same = (theirs.get("dataset"), theirs.get("scale")) == (evaluation.dataset,
                                                                evaluation.scale)  # fmt: skip
        if psnr is not None and same and float(theirs.get("epochs", -1)) == epochs:
            where = (f"the paper's {_table_title(table)} ({theirs['dataset']} x{theirs['scale']}, "
                     f"{theirs['epochs']:g} epochs)")  # fmt: skip
            return Expectation(float(psnr), where, PAPER)
    if bicubic_psnr is not None:
        return Expectation(float(bicubic_psnr), BICUBIC_REFERENCE, BICUBIC_FLOOR)
    return None


def verdict(psnr: float, expected: Expectation | None, tolerance: float) -> dict[str, Any]:
    """The verdict of a milestone's ``psnr`` against what it should reach, as the evaluation's
    JSON holds it (``expected``, ``reference``, ``tolerance_db``, ``delta_db``, ``verdict``).
    Against the paper: behind below ``expected - tolerance``, ahead above ``expected +
    tolerance``, else on course; against bicubic's floor: behind at or below it, else on course;
    no expectation: no reference. An infinite PSNR (every image exact) has no delta: JSON has no
    infinity."""
    if expected is None:
        return {"expected": None, "reference": None, "tolerance_db": float(tolerance),
                "delta_db": None, "verdict": NO_REFERENCE}  # fmt: skip
    delta = round(float(psnr) - expected.psnr, 6)
    if expected.kind == BICUBIC_FLOOR:
        found = BEHIND if psnr <= expected.psnr else ON_COURSE
    elif delta < -tolerance:
        found = BEHIND
    elif delta > tolerance:
        found = AHEAD
    else:
        found = ON_COURSE
    return {"expected": expected.psnr, "reference": expected.reference,
            "tolerance_db": float(tolerance), "delta_db": delta if math.isfinite(delta) else None,
            "verdict": found}  # fmt: skip


def _signed(value: float) -> str:
    return f"{0.0 if abs(value) < 0.005 else value:+.2f}"


def line(of: str, step: int, dataset: str, scale: int, psnr: float,
         found: dict[str, Any]) -> str:  # fmt: skip
    """The verdict ``found`` (of :func:`verdict`) in one line, e.g. 'milestone drn_x3 @ step
    100000, Set5 x3: 33.95 dB, on course (the paper's Table 2 (Set5 x3, 100 epochs): 33.98,
    -0.03 dB, tolerance 0.10 dB)'."""
    head = f"milestone {of} @ step {step}, {dataset} x{scale}: {psnr:.2f} dB, {found['verdict']}"
    if found["expected"] is None:
        return f"{head} (no published number and no bicubic score at this point)"
    delta = "-" if found["delta_db"] is None else _signed(found["delta_db"])
    against = f"{found['reference']}: {found['expected']:.2f}, {delta} dB"
    if found["reference"] == BICUBIC_REFERENCE:
        return f"{head} ({against}; behind at or below it)"
    return f"{head} ({against}, tolerance {found['tolerance_db']:.2f} dB)"


def milestone(params: dict[str, Any], plan: Plan, evaluation: Evaluation, psnr: float,
              bicubic_psnr: float | None,
              reference: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The ``"milestone"`` block of the JSON of ``evaluation`` (of a run served by another's
    checkpoint) that scored ``psnr``: ``run``, ``of``, ``step``, the :func:`verdict` and its
    ``line``."""
    run = plan.run(evaluation.run or "")
    if run.served_by is None:
        raise ValueError(f"{evaluation.label}: run {run.name} is trained, not a milestone")
    found = verdict(psnr, expectation(params, plan, evaluation, bicubic_psnr, reference),
                    tolerance_db(params))  # fmt: skip
    text = line(run.served_by, run.iterations, evaluation.dataset, evaluation.scale, psnr, found)
    return {"run": run.name, "of": run.served_by, "step": run.iterations, **found, "line": text}


@dataclass
class MilestoneRow:
    """One milestone evaluation of the plan in the report: the run served, the run serving it at
    ``step``, ours (None: not evaluated yet) and the verdict (None: not evaluated yet)."""

    label: str
    run: str
    of: str
    step: int
    dataset: str
    scale: int
    psnr: float | None
    expected: Expectation | None
    found: dict[str, Any] | None

    @property
    def verdict(self) -> str:
        return NOT_EVALUATED if self.found is None else self.found["verdict"]

    @property
    def delta(self) -> str:
        if self.found is None or self.found["delta_db"] is None:
            return "-"
        return _signed(self.found["delta_db"])


@dataclass
class Milestones:
    """The report's Milestones section: a row per milestone evaluation, its demo-scale label."""

    rows: list[MilestoneRow]
    tolerance: float
    scale_label: str = ""  # "demo-scale run (...)" or ""


def milestone_rows(params: dict[str, Any], plan: Plan,
                   reference: dict[str, Any]) -> Milestones:  # fmt: skip
    """Every milestone evaluation of the plan (by serving run in the plan's order, then step),
    beside what it should reach; a row not evaluated yet says so. The verdict is computed here,
    by the rule of :func:`verdict`, from the evaluation's PSNR and today's params.yaml. The
    section is demo scale when the runs serving the milestones are (their recipe against the
    paper's, as Table 3's runs)."""
    tolerance = tolerance_db(params)
    served = plan.served_runs()
    rows = []
    for run in served:
        for evaluation in (e for e in plan.evaluations if e.run == run.name):
            data = read(evaluation)
            bicubic = read(plan.bicubic_of(evaluation))
            floor = None if bicubic is None else bicubic.get("psnr")
            expected = expectation(params, plan, evaluation, floor, reference)
            psnr = None if data is None else data.get("psnr")
            if data is not None and psnr is None:  # written as null: infinite (every image exact)
                psnr = math.inf
            found = None if psnr is None else verdict(psnr, expected, tolerance)
            rows.append(MilestoneRow(
                evaluation.label, run.name, run.served_by or "", run.iterations,
                evaluation.dataset, evaluation.scale, psnr, expected, found,
            ))  # fmt: skip
    serving = [plan.run(name) for name in dict.fromkeys(r.served_by or "" for r in served)]
    entries = [(title(r.variant), r, paper_epochs(reference, r.variant)[0]) for r in serving]
    return Milestones(rows, tolerance, demo_scale(entries, params, reference))
