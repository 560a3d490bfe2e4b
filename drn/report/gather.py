"""Everything the report shows, assembled from the modules by concern (no rendering here): the
numbers and records the templates of :mod:`drn.report.render` read, by their names.

What to look for comes from the plan (drn/pipeline/plan.py): its evaluations' JSONs (each one's
``path``; :mod:`~drn.report.results`, :mod:`~drn.report.tables`, :mod:`~drn.report.ablations`,
:mod:`~drn.report.calibration`) and its runs' checkpoints ({directory}/checkpoints/last.pt:
settings, curves, time, hardware); then MLflow (run IDs, links, metric histories), dvc.lock (data
hashes; :mod:`~drn.report.provenance`), params.yaml and the paper's numbers
(drn/reference/drn_paper.yaml), and a control's published numbers (drn/reference/{control}.yaml;
:mod:`~drn.report.reference`). Nothing here rebuilds a label or a path.

A cell of the plan is one or more evaluations: one per seed of ``train.seeds``. Cells, verdicts,
ablation contrasts and the calibration follow the definitions of :mod:`drn.report.stats` (mean
± sample sd over seeds, n; reproduced / inconclusive / below / above; paired bootstrap intervals
and the supported / not supported / not resolved sentence). A section whose runs train far fewer
samples than the paper's recipe (under ``DEMO_FRACTION`` of its iterations x batch) is labelled
"demo-scale run (N iterations; the paper: M)" (:mod:`~drn.report.recipe`). A milestone (a run
served by a longer run's checkpoint at its step) is set beside the number it should reach there
(:mod:`~drn.report.milestones`).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml

from drn.engine.tracking import git_commit
from drn.pipeline.plan import Plan
from drn.report import stats
from drn.report.ablations import ablations
from drn.report.calibration import calibrations
from drn.report.milestones import NOT_EVALUATED, milestone_rows
from drn.report.provenance import dvc_data_hashes, machine, projected_gpu_hours, runs, software
from drn.report.recipe import DEMO_FRACTION
from drn.report.reference import paper
from drn.report.sizes import model_parameters, size_rows
from drn.report.tables import (
    elsewhere,
    main_scale,
    table3,
    table3_columns,
    unplanned_columns,
    verdicts,
)


def report_numbers(params: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """Every number and record the templates show of ``plan`` (the plan of ``params``), by the
    names the templates read them by."""
    reference = paper()
    tolerance = float(params["report"]["tolerance_db"])
    table3_rows = table3(plan, reference)
    trained_or_not = runs(plan, params["tracking"])
    for run in trained_or_not:  # beside what each run took, what `drn plan --cost` projected
        run.projected = projected_gpu_hours(params, plan.run(run.name))
    other_rows = elsewhere(plan)
    tracking = params["tracking"]
    return {
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(Path.cwd()),
        "columns": [column.title for column in table3_columns(plan)],
        "unplanned_columns": unplanned_columns(plan),
        "table3": table3_rows,
        "paper_notes": reference["table3"]["notes"],
        "verdicts": verdicts(plan, table3_rows, tolerance),
        "tolerance": tolerance,
        "main_scale": main_scale(plan, params, reference),
        "calibrations": calibrations(plan, params, reference, tolerance),
        "stats": {
            "confidence": f"{stats.CONFIDENCE:.0%}",
            "resamples": f"{stats.RESAMPLES:,}",
            "random_seed": stats.RANDOM_SEED,
            "few_pairs": stats.FEW_PAIRS,
            "demo_fraction": f"{DEMO_FRACTION:.0%}",
        },
        "ablations": ablations(plan, params, reference),
        "milestones": milestone_rows(params, plan, reference),
        "not_evaluated": NOT_EVALUATED,
        "size_rows": size_rows(reference, plan, params),
        "runs": trained_or_not,
        "drn_plus_parameters": f"{model_parameters('drn_plus', 4, {}):,}",
        "dvc_hashes": dvc_data_hashes(Path.cwd()),
        "machine": machine(),
        "tracking": (
            f"MLflow at {tracking['uri']}, experiment {tracking['experiment']}"
            if tracking["enabled"]
            else "MLflow off for this configuration"
        ),
        "software": software(),
        "params_yaml": yaml.safe_dump(params, sort_keys=False),
        "other_rows": other_rows,
        "other_sets": sorted({r["dataset"] for r in other_rows}),
        "not_run": stats.NOT_RUN,
        "not_planned": stats.NOT_PLANNED,
    }
