"""How big and how costly a model is: trainable parameters and FLOPs for a given LR size."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def trainable_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (weights and biases; constant buffers excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_flops(model: nn.Module, height: int, width: int, batch: int = 1) -> int:
    """FLOPs of one forward pass on a ``batch`` of ``height`` x ``width`` LR images.

    Counted by ``torch.utils.flop_counter``: a multiply-accumulate is 2 FLOPs; convolutions and
    matrix products only, element-wise operations are not counted. The count runs on the meta
    device (a meta copy of ``model`` unless it is there already), so nothing is computed.
    """
    if any(p.device.type != "meta" for p in model.parameters()):
        model = copy.deepcopy(model).to("meta")
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(batch, 3, height, width, device="meta"))
    return int(counter.get_total_flops())
