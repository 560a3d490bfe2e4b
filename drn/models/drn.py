"""The DRN family (Sun et al., arXiv 1907.02843): DRN, DRN+ and the no-distillation ablation.

The paper's prose is ambiguous about the residual distilling block; its equations (9)-(15) are
not, and this is the reading the project builds (docs/ARCHITECTURE.md gives the reasoning):

* low-level feature extraction: conv3x3, 3 -> C;
* residual distilling block (RDB) k = 1..K of a group takes D_k = C + (k-1) d channels:
  y = conv1x1(D_k -> m) -> ELU(0.2) -> conv3x3(m -> m) -> ELU(0.2) -> conv1x1(m -> D_k + d), and
  outputs concat(x + y[:, :D_k], y[:, D_k:]): a residual path of D_k channels plus d distilled ones;
* residual distilling group (RDG): K blocks, then F_p = conv1x1(C + K d -> C) -> ELU(0.2), plus
  the long skip, Y_g = Y_{g-1} + F_p(blocks(Y_{g-1}));
* global residual Y_DF = Y_0 + RDGs(Y_0); reconstruction as Table 1: conv3x3 C -> C s^2,
  PixelShuffle(s) (``upsample``), conv3x3 C -> 3 (``reconstruct``, always in float32).

Pixels: the model takes and returns RGB in [0, 1]. Inside, as EDSR-PyTorch (on whose defaults the
paper's settings sit), it works on 255 * (x - DIV2K mean); these constants are buffers, not
parameters, and not in the state_dict.

Speed: the block output is never concatenated. The last 1x1 convolution already produces all
D_k + d channels, and the residual is added in place into its first D_k (autograd allows it: a
convolution's backward does not need its output). The naive form, cat(x + y[:, :D_k], y[:, D_k:]),
copies the whole growing tensor twice per block.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from drn.models.registry import register_variant

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def _full_precision(device: torch.device) -> AbstractContextManager:
    """A context that switches autocast off (a no-op on devices autocast does not know)."""
    if device.type in ("cpu", "cuda", "xpu", "mps"):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


@dataclass(frozen=True)
class DRNConfig:
    """Sizes of a DRN; the defaults are the paper's DRN."""

    channels: int = 64  # C: feature channels between blocks and groups
    block_channels: int = 64  # m: channels inside a residual distilling block
    distill: int = 8  # d: channels distilled (added) by each block
    blocks: int = 9  # K: blocks per group
    groups: int = 6  # G: groups
    elu_alpha: float = 0.2

    def validate(self) -> None:
        for name in ("channels", "block_channels", "blocks", "groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.distill, bool) or not isinstance(self.distill, int) or self.distill < 0:
            raise ValueError(f"distill must be an integer >= 0, got {self.distill!r}")
        if not isinstance(self.elu_alpha, int | float) or self.elu_alpha <= 0:
            raise ValueError(f"elu_alpha must be a positive number, got {self.elu_alpha!r}")


class ResidualDistillingBlock(nn.Module):
    """D channels in, D + d out: the first D are x plus a residual, the last d are new."""

    def __init__(self, in_channels: int, config: DRNConfig):
        super().__init__()
        m = config.block_channels
        self.reduce = nn.Conv2d(in_channels, m, 1)
        self.conv = nn.Conv2d(m, m, 3, padding=1)
        self.expand = nn.Conv2d(m, in_channels + config.distill, 1)
        self.act = nn.ELU(config.elu_alpha, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.act(self.conv(self.act(self.reduce(x)))))
        y[:, : x.shape[1]] += x
        return y


class ResidualDistillingGroup(nn.Module):
    """K blocks growing C to C + K d channels, fused back to C, plus the long skip connection."""

    def __init__(self, config: DRNConfig):
        super().__init__()
        c, d = config.channels, config.distill
        self.blocks = nn.Sequential(
            *(ResidualDistillingBlock(c + k * d, config) for k in range(config.blocks))
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(c + config.blocks * d, c, 1), nn.ELU(config.elu_alpha, inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(self.blocks(x))


class DRN(nn.Module):
    """Distilling with Residual Network: head, G residual distilling groups, global skip, tail."""

    def __init__(self, config: DRNConfig, scale: int):
        super().__init__()
        c = config.channels
        self.config, self.scale = config, scale
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), False)
        self.pixel_range = 255.0
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*(ResidualDistillingGroup(config) for _ in range(config.groups)))
        self.upsample = nn.Sequential(
            nn.Conv2d(c, c * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )
        self.reconstruct = nn.Conv2d(c, 3, 3, padding=1)

    @property
    def context(self) -> int:
        """LR pixels on each side that can influence an output pixel (the receptive radius)."""
        return 2 + self.config.groups * self.config.blocks + 1  # head, 3x3 per block, up, out

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> (N, 3, sH, sW) RGB in [0, 1] (not clamped).

        Under autocast the output layer still runs in float32, so the image is not rounded to bf16.
        """
        features = self.head((lr - self.rgb_mean) * self.pixel_range)
        features = features + self.body(features)
        upsampled = self.upsample(features)
        with _full_precision(lr.device):
            sr = self.reconstruct(upsampled.float())
        return sr / self.pixel_range + self.rgb_mean


register_variant("drn", DRNConfig(), DRN, "DRN: C = m = 64, d = 8, K = 9, G = 6")
register_variant(
    "drn_plus", DRNConfig(block_channels=256), DRN, "DRN+: DRN with m = 256 filters in each RDB"
)
register_variant(
    "drn_no_rd", DRNConfig(distill=0), DRN, "Table 2's 'No RDBs' ablation: DRN with d = 0"
)
