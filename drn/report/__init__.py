"""The paper-style report: every number of the paper beside ours, with provenance.

``build_report(params)`` writes ``{paths.reports}/report.html`` (self-contained: figures
embedded, no scripts, opens offline) and ``report.md`` (figures in ``figures/``), from the
evaluations and training runs of the plan of params.yaml (drn/pipeline/plan.py: every label, path,
run, Table 3 column and ablation comes from there), MLflow and params.yaml; optionally a PDF
printed by a headless Chromium.

Owns: :mod:`~drn.report.reference` (the paper's and the controls' published numbers),
:mod:`~drn.report.results` (our evaluations' JSONs, cells over seeds, verdicts from cells),
:mod:`~drn.report.tables` (Table 3, its verdicts and demo-scale label, the other evaluations),
:mod:`~drn.report.recipe` (the recipe a run is compared with, the demo-scale label),
:mod:`~drn.report.ablations` (arms over seeds, paired contrasts, the paper's claims),
:mod:`~drn.report.milestones` (a run served by a longer one's checkpoint beside the number it
should reach there: on course, behind, ahead),
:mod:`~drn.report.calibration` (the control, its authors' weights and the model trained here,
beside its published numbers less their known protocol offsets, and its reading),
:mod:`~drn.report.sizes` (parameter counts, Fig. 2's points), :mod:`~drn.report.provenance`
(runs from checkpoints and MLflow, GPU-hours taken and projected, data hashes, software),
:mod:`~drn.report.stats` (the statistics: mean ± sd over seeds, verdicts, paired bootstrap
intervals; the report states the same definitions), :mod:`~drn.report.gather` (every number the
templates show, assembled from those), :mod:`~drn.report.figures` (drawing),
:mod:`~drn.report.visuals` (the zoomed crops), :mod:`~drn.report.render` (the templates filled,
the files written, the PDF printed).

May import: :mod:`drn.core`, :mod:`drn.protocol`, :mod:`drn.models`, :mod:`drn.engine`,
:mod:`drn.pipeline` (MLflow, and torch to count parameters, inside the functions that use
them). Never :mod:`drn.doctor` or :mod:`drn.commands`.
"""

from drn.report.render import build_report

__all__ = ["build_report"]
