"""The paper-style report: every number of the paper beside ours, with provenance.

``build_report(params)`` writes ``{paths.reports}/report.html`` (self-contained: figures
embedded, no scripts, opens offline) and ``report.md`` (figures in ``figures/``), from the
evaluations and training runs of the plan of params.yaml (drn/pipeline/plan.py: every label, path,
run,
Table 3 column and ablation comes from there), MLflow and params.yaml; optionally a PDF printed
by a headless Chromium. :mod:`drn.report.gather` collects the numbers, :mod:`drn.report.stats`
defines the statistics (mean ± sd over seeds, verdicts, paired bootstrap intervals; the report
states the same definitions), :mod:`drn.report.figures` draws, :mod:`drn.report.visuals` makes
the zoomed crops; this module renders and writes.
"""

from __future__ import annotations

import base64
import datetime
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from drn.core.errors import UsageError
from drn.core.images import atomic_write
from drn.engine.tracking import git_commit
from drn.pipeline.plan import Plan, build_plan
from drn.report import figures, gather, stats
from drn.report.visuals import comparison

TEMPLATES = Path(__file__).parent / "templates"


def _fmt(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None or pair[0] is None else f"{pair[0]:.2f} / {pair[1]:.4f}"


def _fmt_delta(pair: tuple[float, float]) -> str:
    return f"{pair[0]:+.2f} / {pair[1]:+.4f}"


def _fmt_seeds(seeds: stats.Seeds | None, deterministic: bool = False) -> str:
    """Ours over seeds: 'PSNR mean ± sd / SSIM mean (n = 2)' (sd '-' for one seed); a
    deterministic result (bicubic: no training) as 'PSNR / SSIM'."""
    if seeds is None:
        return "-"
    psnr, ssim = seeds.mean
    if deterministic:
        return f"{psnr:.2f} / {ssim:.4f}"
    return f"{psnr:.2f} ± {seeds.sd_text} / {ssim:.4f} ({seeds.n_text})"


def _fmt_cell(cell: gather.Cell) -> str:
    return _fmt_seeds(cell.seeds, cell.deterministic)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return gather.NOT_RECORDED
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


_model_parameters = gather.model_parameters


def _size_rows(reference: dict[str, Any], plan: Plan, params: dict[str, Any]) -> list[dict]:
    """Fig. 2's points: published methods with sourced parameter counts, and the plan's models
    (its Table 3 columns that are a model, not bicubic or a self-ensemble) at Set5 x4."""
    rows = []
    values = reference["table3"]["values"]
    for entry in sorted(reference["parameters"], key=lambda e: e["count"]):
        method = entry["method"]
        psnr = gather.parse_cell(values[method]["Set5"][4])[0] if method in values else None
        rows.append({
            "name": method, "parameters": float(entry["count"]),
            "parameters_text": entry["printed"], "psnr": psnr, "ours": False,
            "psnr_missing": "not in the paper's Table 3", "source": entry["source"],
        })  # fmt: skip
    for variant in _main_variants(plan):
        evaluations = gather.cell_evaluations(plan, gather.MAIN_GROUP, variant, 4, "Set5")
        ours = gather.seeds(evaluations)
        count = _model_parameters(variant, 4, params)
        rows.append({
            "name": f"{gather.title(variant)} (ours)", "parameters": float(count),
            "parameters_text": f"{count:,}", "psnr": ours.mean[0] if ours else None,
            "psnr_missing": gather.NOT_RUN if evaluations else gather.NOT_PLANNED,
            "source": "counted from the model built with params.yaml's sizes", "ours": True,
        })  # fmt: skip
    return rows


def _main_variants(plan: Plan) -> list[str]:
    """The model variants of the plan's main runs, in its order."""
    return list(dict.fromkeys(run.variant for run in plan.runs if "main" in run.roles))


def _projected(params: dict[str, Any], run: Any) -> str:
    """The GPU-hours `drn plan --cost` projects for ``run``, and whether its rate was measured."""
    from drn.pipeline.cost import estimate

    cost = estimate(params, run)
    if not cost.gpus:
        return "none (CPU)"
    return f"{cost.gpu_hours:.2f} ({'measured rate' if cost.measured else 'derived rate'})"


def build_report(params: dict[str, Any], device: str = "cpu", pdf: bool = False) -> dict[str, Path]:
    """Write the report of the plan of ``params``; returns the paths written."""
    plan = build_plan(params)
    reference = gather.paper()
    out = Path(params["paths"]["reports"])
    settings = params["report"]
    tolerance = float(settings["tolerance_db"])
    table3 = gather.table3(plan, reference)
    runs = gather.runs(plan, params["tracking"])
    for run in runs:  # beside what each run took, what `drn plan --cost` projected for it
        run.projected = _projected(params, plan.run(run.name))
    by_name = {run.name: run for run in runs}
    ablations = gather.ablations(plan, params, reference)
    size_rows = _size_rows(reference, plan, params)
    visuals = []
    for spec in settings["visuals"]:
        found = comparison(spec, params, plan, int(settings["crop"]), device)
        png = figures.crops(found["panels"], found["title"]) if found["panels"] else None
        visuals.append({"title": found["title"], "missing": found["missing"], "png": png})
    size_points = [
        (r["name"], r["parameters"], r["psnr"], r["ours"])
        for r in size_rows
        if r["psnr"] is not None
    ]
    trained = [run for run in runs if run.trained]
    pngs = {
        "size": figures.psnr_vs_parameters(size_points),
        "train_loss": figures.curves([(r.name, r.train_curve) for r in trained], "training loss"),
        "val_psnr": figures.curves([(r.name, r.val_curve) for r in trained],
                                   "validation PSNR (dB)"),
    }  # fmt: skip
    for ablation in ablations:
        curves = [
            (f"{row.arm} ({row.run})", by_name[row.run].val_curve if row.run in by_name else [])
            for row in ablation.rows
        ]
        pngs[_ablation_figure(ablation.name)] = figures.curves(curves, "validation PSNR (dB)")
    other_rows = gather.elsewhere(plan)
    calibrations = gather.calibrations(plan, params, reference, tolerance)
    tracking = params["tracking"]
    context = {
        "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": git_commit(Path.cwd()),
        "columns": [column.title for column in gather.table3_columns(plan)],
        "unplanned_columns": gather.unplanned_columns(plan),
        "table3": table3,
        "paper_notes": reference["table3"]["notes"],
        "verdicts": gather.verdicts(plan, table3, tolerance),
        "tolerance": tolerance,
        "main_scale": gather.main_scale(plan, params, reference),
        "calibrations": calibrations,
        "calibration_reading": _calibration_reading,
        "stats": {
            "confidence": f"{stats.CONFIDENCE:.0%}",
            "resamples": f"{stats.RESAMPLES:,}",
            "random_seed": stats.RANDOM_SEED,
            "few_pairs": stats.FEW_PAIRS,
            "demo_fraction": f"{gather.DEMO_FRACTION:.0%}",
        },
        "ablations": ablations,
        "ablation_figure": _ablation_figure,
        "size_rows": size_rows,
        "runs": runs,
        "drn_plus_parameters": f"{_model_parameters('drn_plus', 4, {}):,}",
        "dvc_hashes": gather.dvc_data_hashes(Path.cwd()),
        "machine": gather.machine(),
        "tracking": (
            f"MLflow at {tracking['uri']}, experiment {tracking['experiment']}"
            if tracking["enabled"]
            else "MLflow off for this configuration"
        ),
        "software": gather.software(),
        "params_yaml": yaml.safe_dump(params, sort_keys=False),
        "other_rows": other_rows,
        "other_sets": sorted({r["dataset"] for r in other_rows}),
        "not_run": gather.NOT_RUN,
        "not_planned": gather.NOT_PLANNED,
        "fmt": _fmt,
        "fmt_cell": _fmt_cell,
        "fmt_seeds": _fmt_seeds,
        "signed": stats.signed,
        "fmt_delta": _fmt_delta,
        "duration": _duration,
    }
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
        autoescape=select_autoescape(["html.j2"]),
        keep_trailing_newline=True,
    )  # fmt: skip
    html_figures = {key: base64.b64encode(value).decode() for key, value in pngs.items()}
    html_visuals = [
        {**v, "image": v["png"] and base64.b64encode(v["png"]).decode()} for v in visuals
    ]
    html_context = {**context, "figures": html_figures, "visuals": html_visuals}
    written = {}
    html = environment.get_template("report.html.j2").render(html_context)
    written["html"] = _write(out / "report.html", html)
    figure_dir = out / "figures"
    for key, value in pngs.items():
        _write_bytes(figure_dir / f"{key}.png", value)
    for index, visual in enumerate(visuals, start=1):
        if visual["png"]:
            _write_bytes(figure_dir / f"visual{index}.png", visual["png"])
    md_visuals = [{**v, "image": bool(v["png"])} for v in visuals]
    markdown = environment.get_template("report.md.j2").render({**context, "visuals": md_visuals})
    written["md"] = _write(out / "report.md", markdown)
    if pdf:
        written["pdf"] = print_pdf(written["html"], out / "report.pdf")
    return written


def _calibration_reading(calibration: gather.Calibration | None) -> str:
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
            f"x{v.scale} {v.kind}, mean {stats.signed(sum(v.deltas) / len(v.deltas))} dB"
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


def _ablation_figure(name: str) -> str:
    """The key (and file stem under figures/) of the validation curves of ablation ``name``."""
    return f"ablation-{name}"


def _write(path: Path, text: str) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    with atomic_write(path) as tmp:
        tmp.write_bytes(data)
    return path


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
)  # fmt: skip


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise UsageError("--pdf: no Chromium found (Debian: apt-get install chromium)")


def print_pdf(html: Path, target: Path) -> Path:
    """The HTML printed to PDF by a headless Chromium (no network, a throwaway profile)."""
    import tempfile

    with tempfile.TemporaryDirectory() as profile, atomic_write(target) as tmp:
        subprocess.run(
            [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
             f"--print-to-pdf={tmp}", html.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    return target
