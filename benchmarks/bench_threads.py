"""The Bicubic table under drn's thread policy, against other thread settings and a BasicSR-style
single-threaded pipeline, on a quiet machine and beside one busy core.

Configurations, each the whole table (Set5, Set14, B100, Urban100 at x2, x3, x4) in this process:

* ``policy``: what ``drn evaluate --model bicubic`` does under :mod:`drn.core.threads`: BLAS on one
  thread, the allotment's share of images at a time;
* ``one``: everything on one thread (BLAS one thread, one image at a time);
* ``blas2``: numpy's default before the policy: BLAS on two threads, one image at a time;
* ``reference``: a single-threaded (torch and BLAS on one thread) pipeline written the way
  BasicSR's is: its torch ``imresize`` (a matrix-vector product per output line and channel, in
  float32, symmetric padding, LR rounded to 8 bits) and its ``calculate_psnr``/``calculate_ssim``
  (Y by ``rgb2ycbcr`` in float32; SSIM from five full 2-D 11x11 Gaussian filterings then cropped,
  ``cv2.filter2D``, which filters a float64 image with a kernel of 121 taps through the DFT:
  ``scipy.signal.fftconvolve`` here, as cv2 is not installed).

"Busy" runs the configurations beside ``yes > /dev/null`` (started and stopped here). Prints one
Markdown row per (load, configuration): total time, slowest cell, ratio to the reference of the
same load, and whether the drn configurations' tables are bit-identical.
Run: .venv/bin/python benchmarks/bench_threads.py [--loads quiet,busy] [--configs ...]
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from common import SHARED, machine
from PIL import Image
from scipy.signal import fftconvolve
from threadpoolctl import threadpool_limits

from drn.core.images import list_images
from drn.core.threads import affinity_cpus, decide
from drn.protocol.scoring import evaluate_bicubic

DATASETS = ("Set5", "Set14", "B100", "Urban100")
SCALES = (2, 3, 4)
CONFIGS = ("policy", "one", "blas2", "reference")
Cell = tuple[float, float]  # (PSNR, SSIM)


# --- the BasicSR-style reference ---------------------------------------------------------------


def _cubic(x: torch.Tensor) -> torch.Tensor:
    ax = x.abs()
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1).to(x.dtype)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)).to(x.dtype)
    return near + far


def _weights(in_length: int, out_length: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MATLAB's bicubic weights (float32) and 0-based input indices (unmirrored) per output."""
    width = 4.0 / scale if scale < 1 else 4.0
    u = torch.linspace(1, out_length, out_length) / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - width / 2)
    indices = left[:, None] + torch.arange(math.ceil(width) + 2, dtype=torch.float32)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if scale < 1 else _cubic(distance)
    weights = weights / weights.sum(1, keepdim=True)
    zeros = (weights == 0).sum(0)
    if zeros[0] != 0:  # drop an all-zero first or last tap column, as BasicSR does
        weights, indices = weights[:, 1:], indices[:, 1:]
    if zeros[-1] != 0:
        weights, indices = weights[:, :-1], indices[:, :-1]
    return weights.contiguous(), indices.long() - 1


def _pass(image: torch.Tensor, axis: int, scale: float) -> torch.Tensor:
    """One 1-D pass of a CxHxW tensor along ``axis`` (1 or 2): symmetric padding, then one
    matrix-vector product per output line and channel, as BasicSR's loops."""
    length = image.shape[axis]
    out_length = math.ceil(length * scale)
    weights, indices = _weights(length, out_length, scale)
    before = max(0, -int(indices.min()))
    after = max(0, int(indices.max()) - length + 1)
    padded = torch.cat([
        image.narrow(axis, 0, before).flip(axis), image,
        image.narrow(axis, length - after, after).flip(axis),
    ], axis)  # fmt: skip
    shape = list(image.shape)
    shape[axis] = out_length
    out = torch.empty(shape)
    taps = weights.shape[1]
    starts = (indices[:, 0] + before).tolist()
    for i, start in enumerate(starts):
        for c in range(image.shape[0]):
            if axis == 1:
                out[c, i, :] = padded[c, start : start + taps, :].T.mv(weights[i])
            else:
                out[c, :, i] = padded[c, :, start : start + taps].mv(weights[i])
    return out


def reference_imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """HxWxC float32 in [0, 1] resized by ``scale`` (height first), float32, unrounded."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
    with torch.no_grad():
        out = _pass(_pass(tensor, 1, scale), 2, scale)
    return out.numpy().transpose(1, 2, 0)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)


def _y(image: np.ndarray) -> np.ndarray:
    """BasicSR's ``to_y_channel`` of an RGB uint8 image: float32 Y in [16, 235], float64 out."""
    rgb = image.astype(np.float32) / 255.0
    y = (np.dot(rgb, [65.481, 128.553, 24.966]) + 16.0).astype(np.float32) / 255.0
    return (y * 255.0).astype(np.float64)


def _filter2d_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    return fftconvolve(image, window[::-1, ::-1], mode="valid")


def reference_scores(sr: np.ndarray, hr: np.ndarray, border: int) -> Cell:
    """BasicSR's ``calculate_psnr``/``calculate_ssim`` with ``test_y_channel=True``."""
    crop = (slice(border, -border), slice(border, -border))
    x, y = _y(sr[crop]), _y(hr[crop])
    mse = np.mean((x - y) ** 2)
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    r = np.arange(11) - 5
    g = np.exp(-(r**2) / (2 * 1.5**2))
    window = np.outer(g / g.sum(), g / g.sum())
    mu1, mu2 = _filter2d_valid(x, window), _filter2d_valid(y, window)
    s11 = _filter2d_valid(x * x, window) - mu1**2
    s22 = _filter2d_valid(y * y, window) - mu2**2
    s12 = _filter2d_valid(x * y, window) - mu1 * mu2
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(psnr), float(ssim_map.mean())


def reference_cell(dataset: str, scale: int) -> Cell:
    scores = []
    for path in list_images(SHARED / dataset):
        with Image.open(path) as image:  # cv2.imread(IMREAD_COLOR): three channels always
            hr = np.asarray(image.convert("RGB"))
        hr = hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]
        lr = _to_uint8(reference_imresize(hr.astype(np.float32) / 255.0, 1 / scale))
        sr = _to_uint8(reference_imresize(lr.astype(np.float32) / 255.0, scale))
        scores.append(reference_scores(sr, hr, scale))
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


# --- the configurations ------------------------------------------------------------------------


@contextmanager
def threads(blas: int, torch_threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with threadpool_limits(limits=blas, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def drn_cell(workers: int) -> Callable[[str, int], Cell]:
    def cell(dataset: str, scale: int) -> Cell:
        result = evaluate_bicubic(SHARED / dataset, scale, workers=workers)
        return result.psnr, result.ssim

    return cell


def configuration(name: str) -> tuple[int, int, Callable[[str, int], Cell]]:
    """(BLAS threads, torch threads, cell function) of a configuration."""
    share = decide({}, affinity_cpus()).share
    return {
        "policy": (1, share, drn_cell(share)),
        "one": (1, 1, drn_cell(1)),
        "blas2": (2, 2, drn_cell(1)),
        "reference": (1, 1, reference_cell),
    }[name]


@dataclass
class Run:
    """One configuration's table: its cells, total and slowest cell time."""

    cells: dict[tuple[str, int], Cell] = field(default_factory=dict)
    total: float = 0.0
    slowest: float = 0.0


def run_tables(configs: list[str], datasets: list[str]) -> dict[str, Run]:
    """Every configuration's table, cell by cell in turn (so that a change in the machine's other
    load during the run falls on every configuration alike)."""
    runs = {name: Run() for name in configs}
    for dataset in datasets:
        for scale in SCALES:
            for name in configs:
                blas, torch_threads, cell = configuration(name)
                with threads(blas, torch_threads):
                    start = time.perf_counter()
                    runs[name].cells[dataset, scale] = cell(dataset, scale)
                    seconds = time.perf_counter() - start
                runs[name].total += seconds
                runs[name].slowest = max(runs[name].slowest, seconds)
    return runs


@contextmanager
def load(kind: str) -> Iterator[None]:
    """Nothing for "quiet"; one ``yes > /dev/null`` process for "busy"."""
    if kind == "quiet":
        yield
        return
    busy = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield
    finally:
        busy.kill()
        busy.wait()


def ratio(reference: float, total: float, name: str) -> str:
    return "-" if name == "reference" or math.isnan(reference) else f"{reference / total:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", default="quiet,busy")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    args = parser.parse_args()
    configs, datasets = args.configs.split(","), args.datasets.split(",")
    share = decide({}, affinity_cpus()).share
    print(f"# Bicubic table by thread setting, {datetime.date.today()}, {machine()}")
    print(f"policy: BLAS 1 thread, {share} images at a time; sets: {', '.join(datasets)}")
    print("| load | configuration | total | slowest cell | reference / this | same table |")
    print("|---|---|---|---|---|---|")
    for kind in args.loads.split(","):
        before = os.getloadavg()[0]
        with load(kind):
            runs = run_tables(configs, datasets)
        reference = runs["reference"].total if "reference" in runs else math.nan
        for name, run in runs.items():
            same = "-" if name == "reference" or "policy" not in runs else (
                "yes" if run.cells == runs["policy"].cells else "NO"
            )  # fmt: skip
            print(
                f"| {kind} | {name} | {run.total:.1f} s | {run.slowest:.1f} s "
                f"| {ratio(reference, run.total, name)} | {same} |",
                flush=True,
            )
        print(
            f"({kind}: 1-minute load average {before:.2f} before, {os.getloadavg()[0]:.2f} after)"
        )
        if "reference" in runs and "policy" in runs:
            cells = runs["policy"].cells
            worst = max(abs(runs["reference"].cells[k][0] - cells[k][0]) for k in cells)
            print(f"({kind}: reference PSNR within {worst:.3f} dB of drn's in every cell)")


if __name__ == "__main__":
    main()
