"""Table 3 as the plan evaluates it: its columns, its rows beside the paper's, the verdicts on
its models, its demo-scale label, and the plan's evaluations that no row of it holds.

Owns: ``Column`` (an arm of the plan's group table3 and the paper's column beside it), ``Row``
(a dataset and scale of the paper's, one ``Cell`` per column), the verdict of each model column
at each scale, and "Other evaluations" (datasets or scales that are not the paper's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drn.pipeline.plan import BICUBIC, MAIN_GROUP, Plan
from drn.report.recipe import demo_scale, paper_epochs
from drn.report.reference import ARMS, PAPER_DATASETS, SCALES, parse_cell, title
from drn.report.results import Cell, cell_evaluations, read, seeds, verdict
from drn.report.stats import NOT_PLANNED, NOT_RUN, Verdict


@dataclass
class Row:
    dataset: str
    scale: int
    cells: list[Cell] = field(default_factory=list)


@dataclass(frozen=True)
class Column:
    arm: str  # the plan's arm (an evaluation label of group table3)
    title: str
    paper: str | None  # the paper's column beside it; None: none


def table3_columns(plan: Plan) -> list[Column]:
    """The plan's table3 arms, in the plan's order."""
    arms = dict.fromkeys(e.arm for e in plan.group(MAIN_GROUP))
    return [Column(arm, *ARMS.get(arm, (arm, None))) for arm in arms]


def unplanned_columns(plan: Plan) -> list[str]:
    """Titles of the known Table 3 columns the plan does not evaluate (e.g. DRN+ self-ensemble)."""
    planned = {column.arm for column in table3_columns(plan)}
    return [title for arm, (title, _paper) in ARMS.items() if arm not in planned]


def table3(plan: Plan, reference: dict[str, Any]) -> list[Row]:
    """The plan's bicubic and models (with and without self-ensemble) beside the paper's Table 3,
    one row per dataset and scale of the paper's; a model's cell over its seeds."""
    values = reference["table3"]["values"]
    notes = {tuple(n["cell"]): n["note"] for n in reference["table3"]["notes"]}
    columns = table3_columns(plan)
    rows = []
    for dataset in PAPER_DATASETS:
        for scale in SCALES:
            row = Row(dataset, scale)
            for column in columns:
                evaluations = cell_evaluations(plan, MAIN_GROUP, column.arm, scale, dataset)
                theirs = parse_cell(values[column.paper][dataset][scale]) if column.paper else None
                row.cells.append(Cell(
                    seeds(evaluations), theirs, notes.get((column.paper, dataset, scale), ""),
                    missing=NOT_RUN if evaluations else NOT_PLANNED,
                    deterministic=column.arm == BICUBIC,
                ))  # fmt: skip
            run = [c for c in row.cells if c.ours is not None]
            if run:
                max(run, key=lambda c: c.ours[0]).best = True
            rows.append(row)
    return rows


def verdicts(plan: Plan, rows: list[Row], tolerance: float) -> list[Verdict]:
    """One per model column with a paper column beside it, and scale of the paper's."""
    found = []
    for index, column in enumerate(table3_columns(plan)):
        if column.arm == BICUBIC or column.paper is None:
            continue
        for scale in SCALES:
            cells = [row.cells[index] for row in rows if row.scale == scale]
            found.append(verdict(column.title, scale, cells, tolerance))
    return found


def main_scale(plan: Plan, params: dict[str, Any], reference: dict[str, Any]) -> str:
    """The demo-scale label of Table 3 and the verdicts: the plan's main runs."""
    entries = []
    for run in plan.runs:
        if "main" in run.roles:
            entries.append((title(run.variant), run, paper_epochs(reference, run.variant)[0]))
    return demo_scale(entries, params, reference)


def elsewhere(plan: Plan) -> list[dict[str, Any]]:
    """The plan's Table 3 evaluations that no Table 3 row holds (datasets or scales that are not
    the paper's, like the demo's photos)."""
    rows = []
    for evaluation in plan.group(MAIN_GROUP):
        if evaluation.dataset in PAPER_DATASETS and evaluation.scale in SCALES:
            continue
        data = read(evaluation)
        rows.append({
            "label": evaluation.label, "scale": evaluation.scale, "dataset": evaluation.dataset,
            "run": evaluation.run or "-", "images": len(data["images"]) if data else "-",
            "result": data and (data["psnr"], data["ssim"]),
        })  # fmt: skip
    return rows
