"""Visual comparisons as the paper's Figs. 1, 6 and 8: zoomed crops of HR, bicubic, DRN and DRN+
with each method's PSNR on the whole image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from drn.data import list_images, modcrop, read_image
from drn.errors import DrnError
from drn.evaluate import score_image
from drn.imresize import imresize
from drn.metrics import luma


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


def comparison(
    spec: dict[str, Any], params: dict[str, Any], crop: int, device: str
) -> dict[str, Any]:
    """The panels of one visual comparison; a model or image that is not there is 'not run'."""
    from drn.checkpoint import model_from_checkpoint
    from drn.inference import upscale_image

    dataset, name, scale = spec["dataset"], spec["image"], int(spec["scale"])
    title = f"{dataset} {name}, x{scale}"
    folder = Path(params["paths"]["data"]) / dataset
    try:
        path = next(p for p in list_images(folder) if p.stem == name)
    except (DrnError, StopIteration):
        return {"title": title, "panels": [], "missing": f"{folder}/{name}.* is not there"}
    hr = modcrop(read_image(path), scale)
    lr = imresize(hr, 1 / scale)
    results: list[tuple[str, np.ndarray | None]] = [("HR", hr), ("Bicubic", imresize(lr, scale))]
    runs = Path(params["paths"]["runs"])
    for title_of, model in (("DRN", "drn"), ("DRN+", "drn_plus")):
        weights = runs / f"{model}_x{scale}" / "model.pt"
        if weights.is_file():
            network, _ = model_from_checkpoint(weights, device)
            results.append((title_of, upscale_image(network, lr, scale, device)))
        else:
            results.append((title_of, None))
    size = min(crop, *hr.shape[:2])
    if spec.get("crop"):
        top, left = (int(v) for v in spec["crop"][:2])
    else:
        top, left = worst_window(hr, results[1][1], size)
    panels = []
    for label, pixels in results:
        if pixels is None:
            panels.append((f"{label}: not run", None))
            continue
        caption = label if label == "HR" else f"{label}: {score_image(pixels, hr, scale)[0]:.2f} dB"
        panels.append((caption, pixels[top : top + size, left : left + size]))
    where = f"crop {size}x{size} at ({top}, {left})"
    return {"title": f"{title}, {where}", "panels": panels, "missing": ""}
