"""The control (params.yaml ``controls``): a known model trained and evaluated by the same
pipeline, beside its published numbers, and what that means for the verdicts on DRN.

Owns: ``Calibration`` (per control: a row per dataset and scale it is evaluated on, its verdict
by the same rule as DRN's, its parameter count against the published one, where the published
numbers come from, which reading applies), ``calibrations`` (one per control of the plan) and
``calibration_reading`` (what its result means for a gap between DRN and the paper).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drn.pipeline.plan import CONTROL_GROUP, Plan
from drn.report.recipe import demo_scale, paper_epochs
from drn.report.reference import (
    PAPER_DATASETS,
    control_reference,
    cross_checks,
    published_cell,
    published_notes,
    published_source,
)
from drn.report.results import Cell, cell_evaluations, seeds, verdict
from drn.report.sizes import ParameterCheck, model_parameters
from drn.report.stats import Verdict, signed

# Controls (params.yaml `controls`) by title, where their reference file gives none.
CONTROLS = {"edsr_baseline": "EDSR baseline"}


@dataclass
class CalibrationRow:
    dataset: str
    scale: int
    cell: Cell  # ours over seeds; theirs: the primary source's
    verdict: Verdict  # on this dataset alone
    notes: list[str] = field(default_factory=list)  # on the published cell
    cross_checks: list[str] = field(default_factory=list)


@dataclass
class Calibration:
    """A control of the plan (params.yaml ``controls``): ours against its published numbers, per
    dataset and scale, and what that means for the verdicts on DRN."""

    variant: str
    title: str
    rows: list[CalibrationRow]
    verdicts: list[Verdict]  # per scale, over the datasets with a published value
    parameters: list[ParameterCheck]
    published: dict[str, Any]  # drn/reference/{variant}.yaml
    scale_label: str = ""

    @property
    def source(self) -> dict[str, Any]:
        return published_source(self.published)

    @property
    def source_line(self) -> str:
        """Where the published numbers come from, their protocol and its caveats, in one line."""
        source = self.source
        if not source:
            return f"No published numbers in drn/reference/{self.variant}.yaml."
        text = f"Published: {str(source.get('what', '')).strip()} ({source.get('cite', '')})."
        if source.get("protocol"):
            text += f" Their protocol: {str(source['protocol']).strip().rstrip('.')}."
        caveats = source.get("caveats") or []
        caveats = [caveats] if isinstance(caveats, str) else caveats
        if caveats:
            text += " Caveats: " + " ".join(str(c).strip() for c in caveats)
        return text

    @property
    def parameter_source(self) -> str:
        counts = self.published.get("parameters") or {}
        paper = counts.get("paper") or {}
        text = counts.get("source") or "no published parameter count"
        if paper:
            text += f"; the paper: {paper.get('printed')} ({paper.get('source')})"
        return text

    @property
    def kinds(self) -> list[str]:
        return [v.kind for v in self.verdicts if v.kind is not None]

    @property
    def case(self) -> str:
        """not run / reproduces / off / inconclusive: which reading applies."""
        kinds = self.kinds
        if not kinds:
            return "not run"
        if any(kind in ("below", "above") for kind in kinds):
            return "off"
        if all(kind == "reproduced" for kind in kinds):
            return "reproduces"
        return "inconclusive"


def calibrations(plan: Plan, params: dict[str, Any], reference: dict[str, Any],
                 tolerance: float) -> list[Calibration]:  # fmt: skip
    """One per control of the plan, in its order: every dataset and scale it is evaluated on
    beside its published numbers (drn/reference/{control}.yaml), the same verdict rule as
    DRN's, its parameter count against the published one."""
    found = []
    for variant in dict.fromkeys(e.arm for e in plan.group(CONTROL_GROUP)):
        published = control_reference(variant)
        evaluations = [e for e in plan.group(CONTROL_GROUP) if e.arm == variant]
        places = list(dict.fromkeys((e.dataset, e.scale) for e in evaluations))
        name = published.get("method") or CONTROLS.get(variant, variant)
        rows = []
        for dataset, scale in sorted(places, key=lambda p: (p[1], p[0] not in PAPER_DATASETS)):
            found_cells = cell_evaluations(plan, CONTROL_GROUP, variant, scale, dataset)
            cell = Cell(seeds(found_cells), published_cell(published, dataset, scale))
            rows.append(CalibrationRow(
                dataset, scale, cell, verdict(name, scale, [cell], tolerance, published=True),
                published_notes(published, dataset, scale),
                cross_checks(published, dataset, scale),
            ))  # fmt: skip
        scales = list(dict.fromkeys(scale for _dataset, scale in places))
        verdicts_ = []
        for scale in scales:
            cells = [r.cell for r in rows if r.scale == scale and r.cell.theirs]
            empty = None if cells else f"no published numbers at x{scale} to compare with"
            verdicts_.append(verdict(name, scale, cells, tolerance, True, empty))
        printed = (published.get("parameters") or {}).get("printed") or {}
        checks = [
            ParameterCheck(scale, model_parameters(variant, scale, params), printed.get(scale))
            for scale in scales
        ]
        recipe = (published.get("training") or {}).get("published") or {}
        entries = [
            (
                name,
                plan.run(e.run),
                float(recipe.get("epochs") or paper_epochs(reference, variant)[0]),
            )
            for e in evaluations
            if e.run
        ]
        label = demo_scale(entries, params, reference, recipe or None, "the published recipe")
        found.append(Calibration(variant, name, rows, verdicts_, checks, published, label))
    return found


def calibration_reading(calibration: Calibration | None) -> str:
    """What a control's result means for the verdicts on DRN (None: the plan has no control)."""
    pipeline = "data, LR images, training recipe, evaluation"
    if calibration is None:
        return (
            "No control in this plan (params.yaml: controls): a gap between DRN and the paper "
            f"cannot be told apart from a fault of the pipeline ({pipeline})."
        )
    name, case = calibration.title, calibration.case
    prefix = ""
    if calibration.scale_label:
        prefix = (
            f"This is a {calibration.scale_label}: a control trained this briefly is not "
            "expected to reach its published numbers, so what follows shows the reading, not "
            "evidence. "
        )
    if case == "not run":
        text = (
            f"{name} is in the plan but has no result yet: until it has, a gap between DRN and "
            f"the paper cannot be told apart from a fault of the pipeline ({pipeline})."
        )
    elif case == "reproduces":
        text = (
            f"{name} reproduces its published numbers wherever it ran: the pipeline ({pipeline}) "
            "reproduces a known model, so a gap between DRN and the paper is evidence about the "
            "paper (its numbers, or what it leaves unsaid), not about the pipeline."
        )
    elif case == "off":
        off = "; ".join(
            f"x{v.scale} {v.kind}, mean {signed(sum(v.deltas) / len(v.deltas))} dB"
            for v in calibration.verdicts
            if v.kind in ("below", "above")
        )
        text = (
            f"{name} is off its published numbers ({off}): the pipeline ({pipeline}) does not "
            "reproduce a known model, so a gap between DRN and the paper is first evidence about "
            "the pipeline, not about the paper; read each DRN gap beside the control's at the "
            "same scale."
        )
    else:
        text = (
            f"{name} is inconclusive (outside the tolerance, but the published values lie within "
            "our seeds' range): more seeds are needed before a gap between DRN and the paper can "
            "be laid at the pipeline's door or the paper's."
        )
    return prefix + text
