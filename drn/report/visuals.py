"""Visual comparisons as the paper's Figs. 1, 6 and 8: zoomed crops of HR, bicubic, DRN and DRN+
with each method's PSNR on the whole image; the models are the plan's main runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drn.core.errors import DrnError
from drn.core.images import list_images, read_image
from drn.pipeline.plan import Plan, Run
from drn.protocol.metrics import luma
from drn.protocol.scoring import bicubic_pair, lr_of, score_image
from drn.report.reference import title as title_of
from drn.report.stats import NOT_PLANNED, NOT_RUN


def worst_window(hr: np.ndarray, sr: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` square where ``sr`` differs most from ``hr`` (luma)."""
    error = np.abs(luma(hr) - luma(sr))
    padded = np.pad(error.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        padded[size:, size:]
        - padded[:-size, size:]
        - padded[size:, :-size]
        + padded[:-size, :-size]
    )
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left)


def main_run(plan: Plan, variant: str, scale: int) -> Run | None:
    """The plan's main run of ``variant`` at ``scale`` (the model of its Table 3 column)."""
    for run in plan.runs:
        if (run.variant, run.scale) == (variant, scale) and "main" in run.roles:
            return run
    return None


def comparison(
    spec: dict[str, Any], params: dict[str, Any], plan: Plan, crop: int, device: str
) -> dict[str, Any]:
    """The panels of one visual comparison: HR, bicubic and the plan's main model of each variant
    at the visual's scale; a model or image that is not there is 'not run'/'not planned'."""
    from drn.engine.checkpoint import model_from_checkpoint
    from drn.engine.inference import upscale_image

    dataset, name, scale = spec["dataset"], spec["image"], int(spec["scale"])
    title = f"{dataset} {name}, x{scale}"
    folder = Path(params["paths"]["data"]) / dataset
    try:
        path = next(p for p in list_images(folder) if p.stem == name)
    except (DrnError, StopIteration):
        return {"title": title, "panels": [], "missing": f"{folder}/{name}.* is not there"}
    image = read_image(path)
    hr, bicubic = bicubic_pair(image, scale)
    lr = lr_of(image, scale)[1]
    results: list[tuple[str, np.ndarray | None, str]] = [("HR", hr, ""), ("Bicubic", bicubic, "")]
    variants = dict.fromkeys(run.variant for run in plan.runs if "main" in run.roles)
    for variant in variants:
        run = main_run(plan, variant, scale)
        if run is None:
            results.append((title_of(variant), None, NOT_PLANNED))
        elif not Path(run.model).is_file():
            results.append((title_of(variant), None, NOT_RUN))
        else:
            network, _ = model_from_checkpoint(run.model, device)
            results.append((title_of(variant), upscale_image(network, lr, scale, device), ""))
    size = min(crop, *hr.shape[:2])
    if spec.get("crop"):
        top, left = (int(v) for v in spec["crop"][:2])
    else:
        top, left = worst_window(hr, bicubic, size)
    panels = []
    for label, pixels, missing in results:
        if pixels is None:
            panels.append((f"{label}: {missing}", None))
            continue
        caption = label if label == "HR" else f"{label}: {score_image(pixels, hr, scale)[0]:.2f} dB"
        panels.append((caption, pixels[top : top + size, left : left + size]))
    where = f"crop {size}x{size} at ({top}, {left})"
    return {"title": f"{title}, {where}", "panels": panels, "missing": ""}
