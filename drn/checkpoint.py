"""Checkpoint files: what they hold, writing them atomically, and loading them safely.

A checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` can read (tensors,
numbers, strings, lists, dicts; never pickled objects)::

    {"format": "drn-repro-checkpoint", "version": 1,
     "model": {"name": "drn", "scale": 2, "config": {...sizes...}},
     "state_dict": {...}, "sha256": "<digest of the state_dict>",
     "training": {...}}            # optimizer, scheduler, step, RNG states: training only

The digest makes a modified file an error instead of silently different weights: PyTorch's own
reader does not check the bytes of tensor data.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drn.data import atomic_write
from drn.errors import DataError
from drn.models import build_model

FORMAT = "drn-repro-checkpoint"
VERSION = 1


def state_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_record(model: nn.Module) -> dict[str, Any]:
    """What rebuilds ``model``: variant name, scale and sizes (a registry-built model)."""
    return {"name": model.variant, "scale": model.scale, "config": dict(vars(model.config))}


def save_checkpoint(
    path: str | os.PathLike, model: nn.Module, training: dict[str, Any] | None = None
) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact."""
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_record(model),
        "state_dict": state,
        "sha256": state_digest(state),
    }
    if training is not None:
        payload["training"] = training
    with atomic_write(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and verify a checkpoint on the CPU; anything wrong is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{path}: refused: it holds objects other than tensors and plain data "
            "(loaded with weights_only=True)"
        ) from None
    except Exception as error:  # truncated zip, not a zip, ...: torch raises many kinds
        reason = " ".join(str(error).split())[:120]
        raise DataError(f"{path}: not a readable PyTorch checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not a drn-repro checkpoint (a foreign PyTorch file)")
    if payload.get("version") != VERSION:
        raise DataError(f"{path}: checkpoint version {payload.get('version')} is not supported")
    if state_digest(payload["state_dict"]) != payload.get("sha256"):
        raise DataError(f"{path}: the weights do not match their checksum (modified or corrupted)")
    return payload


def model_from_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """The model a checkpoint describes, with its weights, in eval mode on ``device``."""
    payload = load_checkpoint(path)
    record = payload["model"]
    model = build_model(record["name"], record["scale"], **record["config"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        first = " ".join(str(error).split())[:160]
        raise DataError(f"{path}: weights do not fit model {record['name']} ({first})") from None
    return model.to(device).eval(), payload
