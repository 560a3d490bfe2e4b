"""The EDSR family (Lim et al., "Enhanced Deep Residual Networks", CVPR 2017 workshops).

Only EDSR's baseline is registered, as the positive control of the pipeline (params.yaml
``controls``): a well-known model whose published numbers (drn/reference/edsr_baseline.yaml) say
whether our training and evaluation are sound. It is built as the authors' code builds it
(sanghyun-son/EDSR-PyTorch, src/model/edsr.py and common.py, with option.py's defaults):

* head: conv3x3, 3 -> C;
* body: B residual blocks x + res_scale * conv3x3(ReLU(conv3x3(x))), no batch norm, then a
  conv3x3 C -> C, with a global skip around the whole body;
* tail: the upsampler, conv3x3 C -> 4C + PixelShuffle(2) once per factor 2 (x2, x4, x8, ...) or
  conv3x3 C -> 9C + PixelShuffle(3) (x3), with bias and no activation; then conv3x3 C -> 3.

Every convolution has a bias. The state_dict keys are EDSR-PyTorch's (``head.0``,
``body.{i}.body.{0,2}``, ``body.{B}``, ``tail.0.{0,2,...}``, ``tail.1``) less its two MeanShift
convolutions, which here are constants: the pixels are handled exactly as in drn.models.drn (RGB
in [0, 1] in and out, 255 * (x - DIV2K mean) inside, the last convolution in float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from drn.core.errors import UsageError
from drn.models.drn import DIV2K_RGB_MEAN, _full_precision
from drn.models.registry import register_variant


@dataclass(frozen=True)
class EDSRConfig:
    """Sizes of an EDSR; the defaults are EDSR's baseline (EDSR-PyTorch's option.py)."""

    channels: int = 64  # C: n_feats
    blocks: int = 16  # B: n_resblocks
    res_scale: float = 1.0  # residual scaling (EDSR proper: 0.1 with C = 256, B = 32)

    def validate(self) -> None:
        for name in ("channels", "blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        value = self.res_scale
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"res_scale must be a positive number, got {value!r}")


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


class ResBlock(nn.Module):
    """x + res_scale * conv(ReLU(conv(x))): EDSR's block, without batch norm."""

    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels), nn.ReLU(inplace=True), conv3x3(channels, channels)
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.body(x)
        if self.res_scale != 1:
            residual = residual * self.res_scale
        return x + residual


def upsampler(channels: int, scale: int) -> nn.Sequential:
    """EDSR's rule: a x2 stage per factor 2 when ``scale`` is a power of 2, one x3 stage for 3."""
    if scale & (scale - 1) == 0:
        factors = [2] * (scale.bit_length() - 1)
    elif scale == 3:
        factors = [3]
    else:
        raise UsageError(f"EDSR upsamples by 3 or a power of 2 (x2, x4, x8, ...), not x{scale}")
    layers = []
    for factor in factors:
        layers += [conv3x3(channels, channels * factor * factor), nn.PixelShuffle(factor)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """Head, B residual blocks and a conv with a global skip, upsampler, output conv."""

    def __init__(self, config: EDSRConfig, scale: int):
        super().__init__()
        c = config.channels
        self.config, self.scale = config, scale
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), False)
        self.pixel_range = 255.0
        self.head = nn.Sequential(conv3x3(3, c))
        self.body = nn.Sequential(
            *(ResBlock(c, config.res_scale) for _ in range(config.blocks)), conv3x3(c, c)
        )
        self.tail = nn.Sequential(upsampler(c, scale), conv3x3(c, 3))

    @property
    def context(self) -> int:
        """LR pixels on each side that can influence an output pixel (the receptive radius)."""
        return 1 + 2 * self.config.blocks + 1 + 2  # head, blocks, body end; upsampler and out

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, sH, sW) RGB in [0, 1] (not clamped).

        Under autocast the output layer still runs in float32, so the image is not rounded to bf16.
        """
        upsample, reconstruct = self.tail
        features = self.head((lr - self.rgb_mean) * self.pixel_range)
        features = features + self.body(features)
        upsampled = upsample(features)
        with _full_precision(lr.device):
            sr = reconstruct(upsampled.float())
        return sr / self.pixel_range + self.rgb_mean


register_variant(
    "edsr_baseline",
    EDSRConfig(),
    EDSR,
    "EDSR baseline (Lim et al. 2017), the control: C = 64, B = 16, no residual scaling",
)
