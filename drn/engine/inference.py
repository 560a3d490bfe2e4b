"""Running a model on whole images: overlapping tiles with bounded memory, self-ensemble, uint8.

* Tiling: the LR image is cut into ``tile`` x ``tile`` pieces, each run with ``context`` extra
  pixels on every side (the model's receptive radius, so interior seams are invisible) and only
  its centre kept. The result equals the untiled one up to float rounding.
* Self-ensemble x8 (Lim et al.): the 8 flips and rotations of the input, each output transformed
  back and averaged. The four that keep the shape run as one batch, the four transposed ones as
  another.
* Pixels: uint8 images in, uint8 out (rounded as EDSR-PyTorch's ``quantize``); grayscale runs as
  three equal channels and comes back gray; alpha is resized with the MATLAB-exact bicubic.
* Evaluation: :func:`evaluate_model` scores a model's SR of a benchmark set under the standard
  protocol (:func:`drn.protocol.scoring.score_super_resolution`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from drn.core.progress import Progress, no_progress
from drn.protocol.resize import imresize
from drn.protocol.scoring import SetScore, score_super_resolution

DEFAULT_TILE = 256


def to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 HxWx3 -> float (1, 3, H, W) in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(img)).to(device)
    return tensor.permute(2, 0, 1).unsqueeze(0).float().div_(255)


def to_uint8(sr: torch.Tensor) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 HxWx3, clamped and rounded."""
    pixels = sr[0].mul(255).clamp_(0, 255).round_().to(torch.uint8)
    return pixels.permute(1, 2, 0).cpu().numpy()


def _ensemble(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
    flips = ((), (-1,), (-2,), (-1, -2))

    def run(x: torch.Tensor) -> torch.Tensor:
        batch = torch.cat([x.flip(f) if f else x for f in flips])
        out = model(batch).float().chunk(len(flips))
        return sum(o.flip(f) if f else o for o, f in zip(out, flips, strict=True))

    swapped = run(lr.transpose(-1, -2)).transpose(-1, -2)
    return (run(lr) + swapped) / 8


def _forward(model: nn.Module, lr: torch.Tensor, self_ensemble: bool) -> torch.Tensor:
    return _ensemble(model, lr) if self_ensemble else model(lr).float()


@torch.no_grad()
def super_resolve(
    model: nn.Module,
    lr: torch.Tensor,
    scale: int,
    tile: int | None = DEFAULT_TILE,
    context: int | None = None,
    self_ensemble: bool = False,
) -> torch.Tensor:
    """SR of a (1, 3, H, W) float LR image, in tiles of ``tile`` LR pixels (None: whole)."""
    height, width = lr.shape[-2:]
    if tile is None or (height <= tile and width <= tile):
        return _forward(model, lr, self_ensemble)
    context = getattr(model, "context", 32) if context is None else context
    out = torch.empty(lr.shape[0], 3, height * scale, width * scale, device=lr.device)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(top + tile, height), min(left + tile, width)
            y0, x0 = max(top - context, 0), max(left - context, 0)
            y1, x1 = min(bottom + context, height), min(right + context, width)
            piece = _forward(model, lr[..., y0:y1, x0:x1], self_ensemble)
            out[..., top * scale : bottom * scale, left * scale : right * scale] = piece[
                ...,
                (top - y0) * scale : (bottom - y0) * scale,
                (left - x0) * scale : (right - x0) * scale,
            ]
    return out


def upscale_image(
    model: nn.Module,
    img: np.ndarray,
    scale: int,
    device: torch.device | str = "cpu",
    tile: int | None = DEFAULT_TILE,
    self_ensemble: bool = False,
) -> np.ndarray:
    """Super-resolve a uint8 HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA) image, same layout out."""
    alpha = None
    if img.ndim == 3 and img.shape[2] in (2, 4):
        img, alpha = img[:, :, :-1], img[:, :, -1]
    gray = img.ndim == 2 or img.shape[2] == 1
    rgb = np.repeat(img.reshape(img.shape[0], img.shape[1], 1), 3, axis=2) if gray else img
    sr = to_uint8(super_resolve(model, to_tensor(rgb, device), scale, tile, None, self_ensemble))
    if gray:
        sr = np.round(sr.mean(axis=2)).astype(np.uint8)
    if alpha is not None:
        big_alpha = imresize(alpha, output_shape=sr.shape[:2])
        sr = np.dstack([sr, big_alpha])
    return sr


def evaluate_model(
    model: nn.Module,
    hr_dir: str | os.PathLike,
    scale: int,
    device: torch.device | str = "cpu",
    self_ensemble: bool = False,
    tile: int | None = 256,
    shave_border: int | None = None,
    rgb: bool = False,
    save_sr: str | os.PathLike | None = None,
    progress: Progress = no_progress,
) -> SetScore:
    """Score a model's SR of every image of ``hr_dir`` (grayscale runs as three equal channels)."""
    name = getattr(model, "variant", "model")
    border, scores = score_super_resolution(
        hr_dir, scale, lambda lr: upscale_image(model, lr, scale, device, tile, self_ensemble),
        shave_border, rgb, save_sr, progress, name,
    )  # fmt: skip
    return SetScore(scale, border, scores, Path(hr_dir).name, name, self_ensemble)
