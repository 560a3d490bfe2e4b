"""A plain, obviously-correct DRN written straight from the paper's equations (9)-(15).

It concatenates the growing tensor in every block exactly as the equations read. drn.models.drn
must equal it (same state_dict, same outputs), so checkpoints are interchangeable between them.
"""

from __future__ import annotations

import torch
from torch import nn

from drn.models.drn import DIV2K_RGB_MEAN, DRNConfig


class ReferenceBlock(nn.Module):
    def __init__(self, in_channels: int, config: DRNConfig):
        super().__init__()
        m, d = config.block_channels, config.distill
        self.reduce = nn.Conv2d(in_channels, m, 1)
        self.conv = nn.Conv2d(m, m, 3, padding=1)
        self.expand = nn.Conv2d(m, in_channels + d, 1)
        self.act = nn.ELU(config.elu_alpha)

    def forward(self, x):
        y = self.expand(self.act(self.conv(self.act(self.reduce(x)))))  # [D_out, d] = F_rd(D)
        d_in = x.shape[1]
        return torch.cat([x + y[:, :d_in], y[:, d_in:]], dim=1)  # F_concat(D_out + D, d)


class ReferenceGroup(nn.Module):
    def __init__(self, config: DRNConfig):
        super().__init__()
        c, d, k = config.channels, config.distill, config.blocks
        self.blocks = nn.Sequential(*(ReferenceBlock(c + i * d, config) for i in range(k)))
        self.fuse = nn.Sequential(nn.Conv2d(c + k * d, c, 1), nn.ELU(config.elu_alpha))

    def forward(self, y_prev):
        return self.fuse(self.blocks(y_prev)) + y_prev  # Y_g = F_p(Y_{g,K}) + Y_{g-1}


class ReferenceDRN(nn.Module):
    def __init__(self, config: DRNConfig, scale: int):
        super().__init__()
        c = config.channels
        self.head = nn.Conv2d(3, c, 3, padding=1)
        self.body = nn.Sequential(*(ReferenceGroup(config) for _ in range(config.groups)))
        self.upsample = nn.Sequential(
            nn.Conv2d(c, c * scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )
        self.reconstruct = nn.Conv2d(c, 3, 3, padding=1)
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), False)

    def forward(self, lr):
        y0 = self.head((lr - self.mean) * 255)  # Y_0 = F_LFE(I_LR)
        y_df = y0 + self.body(y0)  # Y_DF = Y_0 + Y_RDGs
        return self.reconstruct(self.upsample(y_df)) / 255 + self.mean  # I_SR = F_IR(F_UP(Y_DF))
