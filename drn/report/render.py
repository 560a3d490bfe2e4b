"""Rendering and writing the report: the figures and visual comparisons drawn, the templates
(drn/report/templates) filled with what :mod:`drn.report.gather` collects and this module's
formatting of it, ``report.html`` (self-contained: figures embedded, no scripts) and
``report.md`` (figures in ``figures/``) written atomically, and optionally a PDF printed by a
headless Chromium (no network, a throwaway profile).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from drn.core.errors import UsageError
from drn.core.images import atomic_write
from drn.pipeline.plan import Plan, build_plan
from drn.report import figures, stats
from drn.report.ablations import curve_series
from drn.report.calibration import calibration_reading
from drn.report.gather import report_numbers
from drn.report.provenance import NOT_RECORDED
from drn.report.results import Cell
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


def _fmt_cell(cell: Cell) -> str:
    return _fmt_seeds(cell.seeds, cell.deterministic)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NOT_RECORDED
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def build_report(params: dict[str, Any], device: str = "cpu", pdf: bool = False) -> dict[str, Path]:
    """Write the report of the plan of ``params``; returns the paths written."""
    plan = build_plan(params)
    numbers = report_numbers(params, plan)
    out = Path(params["paths"]["reports"])
    settings = params["report"]
    visuals = []
    for spec in settings["visuals"]:
        found = comparison(spec, params, plan, int(settings["crop"]), device)
        png = figures.crops(found["panels"], found["title"]) if found["panels"] else None
        visuals.append({"title": found["title"], "missing": found["missing"], "png": png})
    pngs = _draw_figures(numbers, plan)
    context = {
        **numbers,
        "calibration_reading": calibration_reading,
        "ablation_figure": _ablation_figure,
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


def _draw_figures(numbers: dict[str, Any], plan: Plan) -> dict[str, bytes]:
    """The report's figures as PNG bytes, by key (and file stem under figures/): Fig. 2's sizes,
    the training curves, each ablation's validation curves (one line per arm and seed; a
    milestone's: the serving run's curve up to its step)."""
    size_points = [
        (r["name"], r["parameters"], r["psnr"], r["ours"])
        for r in numbers["size_rows"]
        if r["psnr"] is not None
    ]
    trained = [run for run in numbers["runs"] if run.trained]
    pngs = {
        "size": figures.psnr_vs_parameters(size_points),
        "train_loss": figures.curves([(r.name, r.train_curve) for r in trained], "training loss"),
        "val_psnr": figures.curves([(r.name, r.val_curve) for r in trained],
                                   "validation PSNR (dB)"),
    }  # fmt: skip
    recorded = {run.name: run.val_curve for run in trained}
    for ablation in numbers["ablations"]:
        series = curve_series(plan, ablation.name, recorded)
        pngs[_ablation_figure(ablation.name)] = figures.curves(series, "validation PSNR (dB)")
    return pngs


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
