"""The controls: a known model beside its published numbers twice over, and what that means for
the verdicts on DRN.

A control variant (EDSR's baseline) is checked two ways. Its authors' released weights
(params.yaml ``controls_released``, group ``released``), imported and evaluated by our model code
and evaluator without training, test the model code and the evaluation protocol alone. The same
model trained here (params.yaml ``controls``, group ``calibration``) with DRN's pipeline then
tests the training: where the authors' weights reproduce, its gap is the training's.

Owns: ``CalibrationRow`` (a dataset and scale: the authors' weights and the trained control
beside the published cell, less its known protocol offset, and a verdict for each),
``Calibration`` (per control variant: its rows, the verdicts of each control per scale by the
same rule as DRN's, the trained control's parameter count against the published one, where the
published numbers come from, the released files not there, which reading applies to each),
``calibrations`` (one per control variant of the plan) and ``calibration_reading`` (what the
result means for a gap between DRN and the paper).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from drn.engine.releases import file_digest, releases
from drn.pipeline.plan import CONTROL_GROUP, RELEASED_GROUP, Plan, Released
from drn.report.recipe import demo_scale, paper_epochs
from drn.report.reference import (
    PAPER_DATASETS,
    control_reference,
    cross_checks,
    protocol_offset,
    published_cell,
    published_notes,
    published_source,
)
from drn.report.results import Cell, cell_evaluations, seeds, verdict
from drn.report.sizes import ParameterCheck, model_parameters
from drn.report.stats import NOT_PLANNED, NOT_RUN, Verdict, signed

# Controls (params.yaml `controls`) by title, where their reference file gives none.
CONTROLS = {"edsr_baseline": "EDSR baseline"}
NOT_THERE = "not there"  # a released file named in params.yaml that is not there
NOT_THEIRS = "not the authors' file"  # a released file whose sha256 is not the release's


def not_theirs(release: Released) -> str:
    """Why a released file that is there is not the authors' ('' where it is: the sha256 and
    size drn/reference records): its numbers then test nothing against the published ones."""
    theirs = releases(release.variant).get(release.scale)
    sha256, size = file_digest(release.file)
    if theirs is not None and (sha256, size) == (theirs.sha256, theirs.size):
        return ""
    name = theirs.name if theirs else f"x{release.scale} release"
    return f"{release.file} is not the authors' {name} (sha256 {sha256[:16]}..., {size:,} bytes)"


def released_title(title: str) -> str:
    """The verdicts' name of a control's released weights: 'EDSR baseline, the authors' weights'."""
    return f"{title}, the authors' weights"


@dataclass
class CalibrationRow:
    dataset: str
    scale: int
    cell: Cell  # the trained control over seeds (missing: not planned/not run); theirs: published
    verdict: Verdict  # of the trained control, on this dataset alone
    notes: list[str] = field(default_factory=list)  # on the published cell
    cross_checks: list[str] = field(default_factory=list)
    released: Cell | None = None  # the authors' weights through our evaluator; None: not planned
    released_verdict: Verdict | None = None  # of the authors' weights, on this dataset alone
    offset: float = 0.0  # the published cell's known protocol offset (dB), in both cells
    not_theirs: str = ""  # why the released file evaluated is not the authors' ('': it is)

    @property
    def trained_kind(self) -> str:
        """The trained control's verdict here: its kind, else why there is none ('-': nothing
        published to compare with)."""
        if self.cell.theirs is None:
            return "-"
        return self.verdict.kind or self.cell.missing

    @property
    def released_kind(self) -> str:
        """The authors' weights' verdict here, as :attr:`trained_kind`."""
        if self.cell.theirs is None:
            return "-"
        if self.released is None:
            return NOT_PLANNED
        if self.not_theirs:
            return NOT_THEIRS
        kind = self.released_verdict.kind if self.released_verdict else None
        return kind or self.released.missing


def _case(kinds: list[str]) -> str:
    """not run / reproduces / off / inconclusive, from the kinds of a control's verdicts."""
    if not kinds:
        return NOT_RUN
    if any(kind in ("below", "above") for kind in kinds):
        return "off"
    if all(kind == "reproduced" for kind in kinds):
        return "reproduces"
    return "inconclusive"


@dataclass
class Calibration:
    """A control variant of the plan: its authors' weights (params.yaml ``controls_released``)
    and the model trained here (params.yaml ``controls``) against its published numbers, per
    dataset and scale, and what that means for the verdicts on DRN."""

    variant: str
    title: str
    rows: list[CalibrationRow]
    verdicts: list[Verdict]  # the trained control's, per scale, over the published datasets
    parameters: list[ParameterCheck]  # the trained control's (the authors' are C = 64, B = 16)
    published: dict[str, Any]  # drn/reference/{variant}.yaml
    scale_label: str = ""  # the trained control's demo-scale label
    released_verdicts: list[Verdict] = field(default_factory=list)  # per scale of the releases
    released_missing: list[Released] = field(default_factory=list)  # files not there
    not_theirs: dict[int, str] = field(default_factory=dict)  # by scale: files not the authors'
    trained_planned: bool = True  # params.yaml controls trains it
    released_planned: bool = False  # some of its released weights are evaluated in the plan
    init_from: dict[int, str | None] = field(default_factory=dict)  # train.init_from by scale

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
        """The trained control's reading: not planned / not run / reproduces / off /
        inconclusive."""
        return _case(self.kinds) if self.trained_planned else NOT_PLANNED

    @property
    def released_kinds(self) -> list[str]:
        return [v.kind for v in self.released_verdicts if v.kind is not None]

    @property
    def released_case(self) -> str:
        """The authors' weights' reading: not planned (none of their files in the plan) / not
        run / reproduces / off / inconclusive."""
        if not self.released_planned:
            return NOT_PLANNED
        if not self.released_kinds and self.not_theirs:
            return NOT_THEIRS
        return _case(self.released_kinds)

    @property
    def released_name(self) -> str:
        return released_title(self.title)


def calibrations(plan: Plan, params: dict[str, Any], reference: dict[str, Any],
                 tolerance: float) -> list[Calibration]:  # fmt: skip
    """One per control variant of the plan (its trained control's evaluations, its released
    weights' evaluations, its released files present or not, in that order): every dataset and
    scale either is evaluated on beside the published numbers (drn/reference/{control}.yaml,
    less a known protocol offset), the same verdict rule as DRN's, the trained control's
    parameter count against the published one."""
    variants = dict.fromkeys([
        *(e.arm for e in plan.group(CONTROL_GROUP)),
        *(e.arm for e in plan.group(RELEASED_GROUP)),
        *(r.variant for r in plan.released),
    ])  # fmt: skip
    return [_calibration(plan, params, reference, tolerance, variant) for variant in variants]


def _calibration(plan: Plan, params: dict[str, Any], reference: dict[str, Any], tolerance: float,
                 variant: str) -> Calibration:  # fmt: skip
    published = control_reference(variant)
    name = published.get("method") or CONTROLS.get(variant, variant)
    trained = [e for e in plan.group(CONTROL_GROUP) if e.arm == variant]
    released = [e for e in plan.group(RELEASED_GROUP) if e.arm == variant]
    places = dict.fromkeys((e.dataset, e.scale) for e in [*trained, *released])
    said: dict[str, str] = {}  # each offset's why, written in full on its first row only
    rows = [
        _row(plan, published, name, variant, dataset, scale, tolerance, bool(trained), said)
        for dataset, scale in sorted(places, key=lambda p: (p[1], p[0] not in PAPER_DATASETS))
    ]
    scales = list(dict.fromkeys(e.scale for e in trained))
    verdicts_ = [_verdict(name, scale, [r.cell for r in rows if r.scale == scale], tolerance)
                 for scale in scales]  # fmt: skip
    releases = [r for r in plan.released if r.variant == variant]
    foreign = {r.scale: why for r in releases if r.present and (why := not_theirs(r))}
    for row in rows:
        row.not_theirs = foreign.get(row.scale, "") if row.released else ""
    released_verdicts = [
        verdict(released_title(name), release.scale, [], tolerance, True,
                f"{NOT_PLANNED}: {release.file} is {NOT_THERE}")
        if not release.present
        else verdict(released_title(name), release.scale, [], tolerance, True,
                     f"not compared: {foreign[release.scale]}")
        if release.scale in foreign
        else _verdict(released_title(name), release.scale,
                      [r.released for r in rows if r.scale == release.scale and r.released],
                      tolerance)
        for release in releases
    ]  # fmt: skip
    printed = (published.get("parameters") or {}).get("printed") or {}
    checks = [
        ParameterCheck(scale, model_parameters(variant, scale, params), printed.get(scale))
        for scale in scales
    ]
    recipe = (published.get("training") or {}).get("published") or {}
    entries = [
        (name, plan.run(e.run), float(recipe.get("epochs") or paper_epochs(reference, variant)[0]))
        for e in trained
        if e.run
    ]
    label = demo_scale(entries, params, reference, recipe or None, "the published recipe")
    init_from = (params.get("train") or {}).get("init_from") or {}
    return Calibration(
        variant, name, rows, verdicts_, checks, published, label, released_verdicts,
        [r for r in releases if not r.present], foreign, bool(trained), bool(released),
        {scale: init_from.get(f"x{scale}") for scale in scales},
    )  # fmt: skip


def _row(plan: Plan, published: dict[str, Any], name: str, variant: str, dataset: str,
         scale: int, tolerance: float, trained: bool,
         said: dict[str, str]) -> CalibrationRow:  # fmt: skip
    """One dataset and scale: both controls beside the published cell, less its known protocol
    offset (its why in full where ``said`` has not had it yet)."""
    theirs = published_cell(published, dataset, scale)
    notes = published_notes(published, dataset, scale)
    known = protocol_offset(published, dataset, scale)
    offset = 0.0
    if theirs and known:
        offset, why = known
        if why in said:
            why = f"as {said[why]}."
        else:
            said[why] = f"{dataset} x{scale}"
        notes.append(
            f"known protocol offset {offset:+.3f} dB: {why} Ours are compared with "
            f"{theirs[0]:.2f} - {offset:.3f} = {theirs[0] - offset:.2f} dB."
        )
    found = cell_evaluations(plan, CONTROL_GROUP, variant, scale, dataset)
    cell = Cell(seeds(found), theirs, missing=NOT_RUN if trained else NOT_PLANNED, offset=offset)
    row = CalibrationRow(
        dataset, scale, cell, verdict(name, scale, [cell], tolerance, published=True), notes,
        cross_checks(published, dataset, scale), offset=offset,
    )  # fmt: skip
    weights = cell_evaluations(plan, RELEASED_GROUP, variant, scale, dataset)
    if weights:
        row.released = Cell(seeds(weights), theirs, deterministic=True, offset=offset)
        row.released_verdict = verdict(released_title(name), scale, [row.released], tolerance,
                                       published=True)  # fmt: skip
    return row


def _verdict(name: str, scale: int, cells: list[Cell], tolerance: float) -> Verdict:
    """A control's verdict at a scale over the cells with a published value."""
    compared = [cell for cell in cells if cell.theirs]
    empty = None if compared else f"no published numbers at x{scale} to compare with"
    return verdict(name, scale, compared, tolerance, True, empty)


def _off(verdicts: list[Verdict]) -> str:
    """'x4 below, mean -0.30 dB; ...' of the verdicts off their published numbers."""
    return "; ".join(
        f"x{v.scale} {v.kind}, mean {signed(statistics.fmean(v.deltas))} dB"
        for v in verdicts
        if v.kind in ("below", "above")
    )


def _scales(scales: list[int]) -> str:
    """'x2', 'x2 and x3', 'x2, x3 and x4'."""
    named = [f"x{scale}" for scale in scales]
    return named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"


def _starts(calibration: Calibration) -> str:
    """How the trained control starts at each scale (train.init_from)."""
    start = {scale: path for scale, path in calibration.init_from.items() if path}
    if not start:
        return "here every scale starts afresh: train.init_from names no checkpoint"
    text = "here " + "; ".join(f"x{scale} starts from {path}" for scale, path in start.items())
    fresh = [scale for scale in calibration.init_from if scale not in start]
    return text + (f"; {_scales(fresh)} afresh" if fresh else "")


def _fine_tuned(calibration: Calibration) -> bool:
    """Whether the trained control has a scale the authors fine-tuned from their x2 model."""
    return any(scale > 2 for scale in calibration.init_from)


def _released_reading(calibration: Calibration) -> str:
    """What the authors' weights through our evaluator say (they are in the plan); files that
    are not theirs are named, and say nothing."""
    foreign = ""
    if calibration.not_theirs:
        foreign = (
            " Not the authors' files, so not compared with their published numbers (they show "
            "only that the pipeline imports and evaluates such a file): "
            + "; ".join(f"x{scale}: {why}" for scale, why in calibration.not_theirs.items())
            + "."
        )
    if calibration.released_case == NOT_THEIRS:
        return foreign.strip()
    return _released_case_reading(calibration) + foreign


def _released_case_reading(calibration: Calibration) -> str:
    name, case = calibration.title, calibration.released_case
    ran = [v.scale for v in calibration.released_verdicts if v.kind is not None]
    if case == NOT_RUN:
        return (
            f"The authors' weights of {name} are in the plan but have no result yet: until they "
            "have, a gap of the model trained here cannot be laid at its training rather than "
            "at our model code or evaluator."
        )
    if case == "reproduces":
        tolerance = calibration.released_verdicts[0].tolerance
        text = (
            f"The authors' weights of {name}, through our model code and evaluator, give their "
            f"published numbers at {_scales(ran)} (within {tolerance:.2f} dB on every set): our "
            "model code and evaluation protocol are verified, so a gap of the model trained here "
            "from the same numbers is the training's."
        )
        if _fine_tuned(calibration):
            text += (
                " One difference of training is known: the authors fine-tuned their x3 and x4 "
                "models from their x2 model, while ours start each scale afresh unless "
                f"train.init_from says otherwise ({_starts(calibration)})."
            )
        return text
    if case == "off":
        return (
            f"The authors' weights of {name}, through our model code and evaluator, are off "
            f"their published numbers ({_off(calibration.released_verdicts)}): before any "
            "training, our model code or our evaluator is at fault (or the published numbers "
            "are), and the trained control's result cannot tell its training apart from that "
            "until it is found."
        )
    return (
        f"The authors' weights of {name} are inconclusive against their published numbers: "
        "neither within the tolerance nor clearly off; our model code and evaluator are not "
        "verified."
    )


def _trained_reading(calibration: Calibration, name: str) -> str:
    """What the trained control says (the reading before released weights were planned)."""
    pipeline = "data, LR images, training recipe, evaluation"
    case, verified = calibration.case, calibration.released_case == "reproduces"
    if case == NOT_PLANNED:
        if verified:
            return (
                f"{name} is not trained in this plan (params.yaml controls): with the model code "
                "and evaluation verified, a trained control would test our training; without "
                "one, a gap between DRN and the paper cannot be told apart from a fault of the "
                "training (training data, recipe)."
            )
        return (
            f"{name} is not trained in this plan (params.yaml controls): a gap between DRN and "
            f"the paper cannot be told apart from a fault of the pipeline ({pipeline})."
        )
    if case == NOT_RUN:
        return (
            f"{name} is in the plan but has no result yet: until it has, a gap between DRN and "
            f"the paper cannot be told apart from a fault of the pipeline ({pipeline})."
        )
    if case == "reproduces":
        return (
            f"{name} reproduces its published numbers wherever it ran: the pipeline ({pipeline}) "
            "reproduces a known model, so a gap between DRN and the paper is evidence about the "
            "paper (its numbers, or what it leaves unsaid), not about the pipeline."
        )
    if case == "off":
        off = _off(calibration.verdicts)
        if verified:
            start = ", the start of x3 and x4" if _fine_tuned(calibration) else ""
            return (
                f"{name} is off its published numbers ({off}): the authors' weights reproduce "
                "through the same model code and evaluator, so the gap is our training's "
                f"(training data, recipe{start}), and a gap between DRN and the paper is first "
                "evidence about our training, not about the paper; read each DRN gap beside the "
                "control's at the same scale."
            )
        return (
            f"{name} is off its published numbers ({off}): the pipeline ({pipeline}) does not "
            "reproduce a known model, so a gap between DRN and the paper is first evidence about "
            "the pipeline, not about the paper; read each DRN gap beside the control's at the "
            "same scale."
        )
    return (
        f"{name} is inconclusive (outside the tolerance, but the published values lie within "
        "our seeds' range): more seeds are needed before a gap between DRN and the paper can "
        "be laid at the pipeline's door or the paper's."
    )


def _not_there(release: Released) -> str:
    """'x4: data/released/....pt (params.yaml controls_released.edsr_baseline.x4; download it
    from https://...).'"""
    return (f"x{release.scale}: {release.file} (params.yaml {release.key}; download it from "
            f"{release.url}).")  # fmt: skip


def _offsets_reading(calibration: Calibration) -> str:
    """Which published cells the differences and verdicts read less a known protocol offset."""
    offsets: dict[tuple[str, float], list[int]] = {}
    for row in calibration.rows:
        if row.offset and row.cell.theirs:
            offsets.setdefault((row.dataset, row.offset), []).append(row.scale)
    if not offsets:
        return ""
    cells = "; ".join(f"{dataset} at {_scales(scales)} (offset {offset:+.3f} dB)"
                      for (dataset, offset), scales in offsets.items())  # fmt: skip
    return (
        "The differences and verdicts read the known protocol offsets of the published numbers "
        f"(drn/reference/{calibration.variant}.yaml, the notes below the table say why): "
        f"{cells}, so that a known difference of protocol is not reported as a miss."
    )


def calibration_reading(calibration: Calibration | None) -> str:
    """What a control's result means for the verdicts on DRN (None: the plan has no control):
    the authors' weights first (model code and evaluation), then the model trained here (the
    training), the released files not there, the protocol offsets read."""
    pipeline = "data, LR images, training recipe, evaluation"
    if calibration is None:
        return (
            "No control in this plan (params.yaml: controls): a gap between DRN and the paper "
            f"cannot be told apart from a fault of the pipeline ({pipeline})."
        )
    released = calibration.released_case
    parts = []
    if released != NOT_PLANNED:
        parts.append(_released_reading(calibration))
    prefix = ""
    if calibration.scale_label and calibration.trained_planned:
        prefix = (
            f"This is a {calibration.scale_label}: a control trained this briefly is not "
            "expected to reach its published numbers, so what follows shows the reading, not "
            "evidence. "
        )
    name = calibration.title
    if released != NOT_PLANNED or calibration.released_missing:
        name = f"{name} trained here"
    parts.append(prefix + _trained_reading(calibration, name))
    if released == NOT_PLANNED and not calibration.released_missing:
        parts.append(
            f"The authors' released weights of {calibration.title} are not in this plan "
            "(params.yaml controls_released): through our evaluator, without training and "
            "without a GPU, they would tell a fault of our model code or evaluation apart from "
            "one of our training."
        )
    if calibration.released_missing:
        head = (
            f"The authors' released weights of {calibration.title} are named in params.yaml but "
            "their files are not there, so they are not in this plan (through our evaluator they "
            "would tell a fault of our model code or evaluation apart from one of our training):"
            if released == NOT_PLANNED
            else "Left out of the plan, their files not there:"
        )
        parts.append(" ".join([head, *(_not_there(r) for r in calibration.released_missing)]))
    if offsets := _offsets_reading(calibration):
        parts.append(offsets)
    return " ".join(parts)
