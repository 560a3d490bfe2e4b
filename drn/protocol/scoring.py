"""Scoring super-resolved images against their HR images, and the bicubic baseline.

Two entry points share one result type and one JSON format:

* :func:`score_folders` scores a folder of SR images (any method's) against a folder of HR images;
* :func:`evaluate_bicubic` makes the literature's bicubic baseline: HR cropped to a multiple of
  the scale, LR = imresize(HR, 1/s) on uint8 (:func:`lr_of`), SR = imresize(LR, s), scored the
  same way (:func:`score_image`); :func:`score_super_resolution` scores any method's SR of the
  same LR (a model's: :func:`drn.engine.inference.evaluate_model`).

Training's validation (:mod:`drn.engine.train`) scores through :func:`lr_of` and :func:`score_image`
too.

The JSON written by :func:`write_json` is ``{"scale", "shave", "dataset", "model",
"mlflow_run_id", "self_ensemble", "psnr", "ssim", "images": [{"name", "psnr", "ssim"}]}``
(plus ``psnr_rgb`` everywhere when RGB PSNR was asked for). ``mlflow_run_id`` is the MLflow run
that trained the evaluated checkpoint (``null`` for bicubic, scored folders and checkpoints that
record no run), whether or not the scores were logged to it (:mod:`drn.engine.tracking`). An
infinite
PSNR (identical images) is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from drn.core.errors import DataError
from drn.core.images import atomic_write, list_images, modcrop, pair_images, read_image, write_image
from drn.core.progress import Progress, no_progress
from drn.core.threads import blas_policy, image_workers
from drn.protocol.metrics import luma, psnr, shave, ssim
from drn.protocol.resize import imresize

if TYPE_CHECKING:
    pass

T = TypeVar("T")
R = TypeVar("R")


def _in_order(function: Callable[[T], R], items: Sequence[T], workers: int) -> Iterator[R]:
    """``map(function, items)``, computed ``workers`` items at a time in threads (numpy's
    products and ufuncs release the GIL); results, and the first error, come in item order."""
    if workers <= 1 or len(items) <= 1:
        yield from map(function, items)
        return
    pool = ThreadPoolExecutor(min(workers, len(items)), thread_name_prefix="drn-image")
    try:
        yield from pool.map(function, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class ImageScore:
    """The scores of one image: Y-channel PSNR (dB) and SSIM, and optionally RGB PSNR."""

    name: str
    psnr: float
    ssim: float
    psnr_rgb: float | None = None


@dataclass(frozen=True)
class SetScore:
    """Per-image scores of one set at one scale; the set's numbers are plain means over images."""

    scale: int
    shave: int
    images: tuple[ImageScore, ...]
    dataset: str = ""
    model: str = ""
    self_ensemble: bool = False
    mlflow_run_id: str | None = None  # the MLflow run that trained the model, if known

    @property
    def psnr(self) -> float:
        return float(np.mean([i.psnr for i in self.images]))

    @property
    def ssim(self) -> float:
        return float(np.mean([i.ssim for i in self.images]))

    @property
    def psnr_rgb(self) -> float | None:
        values = [i.psnr_rgb for i in self.images]
        return None if None in values else float(np.mean(values))

    def to_json(self) -> dict[str, Any]:
        rgb = self.psnr_rgb is not None
        images = []
        for image in self.images:
            entry = {"name": image.name, "psnr": _finite(image.psnr), "ssim": image.ssim}
            if rgb:
                entry["psnr_rgb"] = _finite(image.psnr_rgb)
            images.append(entry)
        result: dict[str, Any] = {
            "scale": self.scale,
            "shave": self.shave,
            "dataset": self.dataset,
            "model": self.model,
            "mlflow_run_id": self.mlflow_run_id,
            "self_ensemble": self.self_ensemble,
            "psnr": _finite(self.psnr),
            "ssim": self.ssim,
        }
        if rgb:
            result["psnr_rgb"] = _finite(self.psnr_rgb)
        result["images"] = images
        return result


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def score_image(
    sr: np.ndarray, hr: np.ndarray, shave_border: int, rgb: bool = False
) -> tuple[float, float, float | None]:
    """(Y PSNR, Y SSIM, RGB PSNR or None) of two uint8 images of one shape, borders shaved."""
    sr_y = shave(luma(sr), shave_border)
    hr_y = shave(luma(hr), shave_border)
    rgb_psnr = None
    if rgb:
        rgb_psnr = psnr(shave(sr, shave_border), shave(hr, shave_border))
    return psnr(sr_y, hr_y), ssim(sr_y, hr_y), rgb_psnr


def _align(
    sr: np.ndarray, hr: np.ndarray, scale: int, sr_path: Path, hr_path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """(SR, HR cropped to the SR size): HR may be larger by less than the scale; else DataError."""
    if sr.ndim != hr.ndim:
        if sr.ndim == 3 and _is_gray(sr):
            sr = sr[:, :, 0]
        else:
            kinds = {2: "grayscale", 3: "colour"}
            raise DataError(
                f"{sr_path}: SR is {kinds[sr.ndim]} but HR {hr_path} is {kinds[hr.ndim]}"
            )
    grow = [h - s for h, s in zip(hr.shape[:2], sr.shape[:2], strict=True)]
    if not all(0 <= g < scale for g in grow):
        raise DataError(
            f"{sr_path}: SR is {sr.shape[1]}x{sr.shape[0]} but HR {hr_path} is "
            f"{hr.shape[1]}x{hr.shape[0]} (HR may only be larger, by less than the scale {scale})"
        )
    return sr, hr[: sr.shape[0], : sr.shape[1]]


def _is_gray(img: np.ndarray) -> bool:
    return bool((img[:, :, 0] == img[:, :, 1]).all() and (img[:, :, 0] == img[:, :, 2]).all())


@blas_policy
def score_folders(
    sr_dir: str | os.PathLike,
    hr_dir: str | os.PathLike,
    scale: int,
    shave_border: int | None = None,
    rgb: bool = False,
    progress: Progress = no_progress,
    workers: int | None = None,
) -> SetScore:
    """Score every SR image of ``sr_dir`` against its HR image in ``hr_dir`` (matched by name),
    ``workers`` images at a time (default: :func:`drn.core.threads.image_workers`)."""
    border = scale if shave_border is None else shave_border
    pairs = pair_images(list_images(sr_dir, "--sr"), list_images(hr_dir, "--hr"))

    def score_pair(pair: tuple[str, Path, Path]) -> ImageScore:
        name, sr_path, hr_path = pair
        sr, hr = _align(read_image(sr_path), read_image(hr_path), scale, sr_path, hr_path)
        return ImageScore(name, *_score_or_raise(sr, hr, border, rgb, sr_path))

    scored = _in_order(score_pair, pairs, image_workers() if workers is None else workers)
    scores = tuple(progress(scored, len(pairs), f"scoring x{scale}"))
    return SetScore(scale, border, scores, dataset=Path(hr_dir).name)


def _score_or_raise(
    sr: np.ndarray, hr: np.ndarray, border: int, rgb: bool, path: Path
) -> tuple[float, float, float | None]:
    try:
        return score_image(sr, hr, border, rgb)
    except ValueError as error:  # an image too small for the shave or the SSIM window
        raise DataError(f"{path}: {error}") from None


def lr_of(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of the scale, its LR = MATLAB-bicubic imresize(HR, 1/scale) on
    uint8): the protocol's input, for evaluation and training's validation alike."""
    hr = modcrop(hr, scale)
    return hr, imresize(hr, 1 / scale)


def bicubic_pair(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(HR cropped to a multiple of the scale, its bicubic SR): the literature's baseline."""
    hr, lr = lr_of(hr, scale)
    return hr, imresize(lr, scale)


@blas_policy
def score_super_resolution(
    hr_dir: str | os.PathLike,
    scale: int,
    super_resolve_lr: Callable[[np.ndarray], np.ndarray],
    shave_border: int | None,
    rgb: bool,
    save_sr: str | os.PathLike | None,
    progress: Progress,
    label: str,
    workers: int = 1,
) -> tuple[int, tuple[ImageScore, ...]]:
    """The standard protocol for every image of ``hr_dir``: HR and LR by :func:`lr_of`,
    SR = ``super_resolve_lr(LR)`` as uint8, scored by :func:`score_image`; ``workers`` images at
    a time."""
    border = scale if shave_border is None else shave_border
    paths = list_images(hr_dir, "--hr")

    def score_path(path: Path) -> ImageScore:
        hr = read_image(path)
        if min(hr.shape[:2]) < scale:
            raise DataError(
                f"{path}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale {scale}"
            )
        hr, lr = lr_of(hr, scale)
        sr = super_resolve_lr(lr)
        if save_sr is not None:
            write_image(Path(save_sr) / f"{path.stem}.png", sr)
        return ImageScore(path.stem, *_score_or_raise(sr, hr, border, rgb, path))

    scored = _in_order(score_path, paths, workers)
    return border, tuple(progress(scored, len(paths), f"{label} x{scale}"))


def evaluate_bicubic(
    hr_dir: str | os.PathLike,
    scale: int,
    shave_border: int | None = None,
    rgb: bool = False,
    save_sr: str | os.PathLike | None = None,
    progress: Progress = no_progress,
    workers: int | None = None,
) -> SetScore:
    """Score bicubic SR of every image of ``hr_dir``, ``workers`` images at a time (default:
    :func:`drn.core.threads.image_workers`); optionally save the SR images as PNG."""
    border, scores = score_super_resolution(
        hr_dir, scale, lambda lr: imresize(lr, scale), shave_border, rgb, save_sr, progress,
        "bicubic", image_workers() if workers is None else workers,
    )  # fmt: skip
    return SetScore(scale, border, scores, dataset=Path(hr_dir).name, model="bicubic")


def write_json(
    score: SetScore, path: str | os.PathLike, extra: dict[str, Any] | None = None
) -> None:
    """Write ``score.to_json()`` (plus the keys of ``extra``, e.g. a milestone's verdict)
    atomically: a reader never sees a partial file."""
    with atomic_write(path) as tmp:
        record = {**score.to_json(), **(extra or {})}
        tmp.write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")


def collect_results(eval_dir: str | os.PathLike, out_stem: str | os.PathLike) -> list[dict]:
    """One row per evaluation JSON under ``eval_dir``, written as ``<out_stem>.json`` and a
    Markdown table ``<out_stem>.md`` (label, scale, dataset, PSNR, SSIM)."""
    rows = []
    for path in sorted(Path(eval_dir).glob("*/x*/*.json")):
        result = json.loads(path.read_text())
        label = path.parent.parent.name
        rows.append({
            "label": label, "model": result.get("model", label), "scale": result["scale"],
            "dataset": result.get("dataset") or path.stem, "psnr": result["psnr"],
            "ssim": result["ssim"], "self_ensemble": result.get("self_ensemble", False),
            "images": len(result["images"]), "file": str(path),
        })  # fmt: skip
    lines = [
        "| label | scale | dataset | images | PSNR-Y (dB) | SSIM-Y |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        psnr = "inf" if row["psnr"] is None else f"{row['psnr']:.2f}"
        lines.append(
            f"| {row['label']} | x{row['scale']} | {row['dataset']} | {row['images']} "
            f"| {psnr} | {row['ssim']:.4f} |"
        )
    out = Path(out_stem)
    with atomic_write(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(rows, indent=2) + "\n")
    with atomic_write(out.with_suffix(".md")) as tmp:
        tmp.write_text(
            "# Evaluation summary\n\nY-channel PSNR/SSIM, shave = scale (README, "
            "'Evaluation protocol'). Written by `drn collect`.\n\n" + "\n".join(lines) + "\n"
        )
    return rows
