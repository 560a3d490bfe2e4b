"""The offline demo: the bicubic baseline on images that ship inside scikit-image.

Until the training pipeline exists this is what ``make demo`` runs: it copies the sample images
named in params.yaml (``demo.sample_images``) out of the scikit-image package, scores the bicubic
baseline on them at every ``demo.scales`` and writes one JSON per scale, as ``drn evaluate`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import skimage

from drn.config import load_params, setting
from drn.data import read_image, write_image
from drn.errors import UsageError
from drn.evaluate import Progress, SetScore, _no_progress, evaluate_bicubic, write_json

SAMPLE_DIR = Path(skimage.__file__).parent / "data"


def export_sample_images(names: list[str], folder: Path) -> Path:
    """Copy scikit-image's bundled images ``names`` into ``folder`` as PNG; returns ``folder``."""
    for name in names:
        source = SAMPLE_DIR / name
        if not source.is_file():
            raise UsageError(f"demo.sample_images: {name} does not ship with scikit-image")
        target = folder / f"{Path(name).stem}.png"
        if not target.exists():
            write_image(target, read_image(source))
    return folder


def run_demo(
    params_path: str | os.PathLike, out: Path | None = None, progress: Progress = _no_progress
) -> Iterator[SetScore]:
    """Score the bicubic baseline of the sample images at each demo scale, one result per scale."""
    params = load_params(params_path)
    out = Path(out or setting(params, "demo.out", params_path))
    images = export_sample_images(
        setting(params, "demo.sample_images", params_path), out / "samples"
    )
    for scale in setting(params, "demo.scales", params_path):
        result = evaluate_bicubic(images, int(scale), progress=progress)
        write_json(result, out / "bicubic" / f"x{scale}.json")
        yield result
