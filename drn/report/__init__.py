"""The paper-style report: every number of the paper beside ours, with provenance.

``build_report(params)`` writes ``{paths.reports}/report.html`` (self-contained: figures
embedded, no scripts, opens offline) and ``report.md`` (figures in ``figures/``), from the
evaluations and training runs of the plan of params.yaml (drn/plan.py: every label, path, run,
Table 3 column and ablation comes from there), MLflow and params.yaml; optionally a PDF printed
by a headless Chromium. :mod:`drn.report.gather` collects the numbers, :mod:`drn.report.figures`
draws, :mod:`drn.report.visuals` makes the zoomed crops; this module renders and writes.
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

from drn.data import atomic_write
from drn.errors import UsageError
from drn.plan import Plan, build_plan
from drn.report import figures, gather
from drn.report.visuals import comparison
from drn.tracking import git_commit

TEMPLATES = Path(__file__).parent / "templates"


def _fmt(pair: tuple[float, float] | None) -> str:
    return "-" if pair is None or pair[0] is None else f"{pair[0]:.2f} / {pair[1]:.4f}"


def _fmt_delta(pair: tuple[float, float]) -> str:
    return f"{pair[0]:+.2f} / {pair[1]:+.4f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return gather.NOT_RECORDED
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _model_parameters(name: str, scale: int, params: dict[str, Any]) -> int:
    """Trainable parameters of ``name`` at ``scale`` as params.yaml sizes it (built on the meta
    device: no memory, no time)."""
    import torch

    from drn.models import build_from_params
    from drn.models.complexity import trainable_parameters

    with torch.device("meta"):
        return trainable_parameters(build_from_params(params, name, scale))


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
        evaluation = gather.find(plan, variant, 4, "Set5")
        ours = gather.read(evaluation)
        count = _model_parameters(variant, 4, params)
        rows.append({
            "name": f"{gather.title(variant)} (ours)", "parameters": float(count),
            "parameters_text": f"{count:,}", "psnr": ours["psnr"] if ours else None,
            "psnr_missing": gather.NOT_RUN if evaluation else gather.NOT_PLANNED,
            "source": "counted from the model built with params.yaml's sizes", "ours": True,
        })  # fmt: skip
    return rows


def _main_variants(plan: Plan) -> list[str]:
    """The model variants of the plan's main runs, in its order."""
    return list(dict.fromkeys(run.variant for run in plan.runs if "main" in run.roles))


def build_report(params: dict[str, Any], device: str = "cpu", pdf: bool = False) -> dict[str, Path]:
    """Write the report of the plan of ``params``; returns the paths written."""
    plan = build_plan(params)
    reference = gather.paper()
    out = Path(params["paths"]["reports"])
    settings = params["report"]
    tolerance = float(settings["tolerance_db"])
    table3 = gather.table3(plan, reference)
    runs = gather.runs(plan, params["tracking"])
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
