"""EDSR-PyTorch's weights as drn checkpoints (``drn import edsr-pytorch``).

The EDSR authors' code (sanghyun-son/EDSR-PyTorch, src/model/edsr.py and common.py) saves a model
as a plain state dict: the tensors of our ``edsr_baseline`` under the same names and shapes
(``head.0``, ``body.{i}.body.{0,2}``, ``body.{B}``, ``tail.0.{0,2,...}``, ``tail.1``), plus two
fixed 1x1 convolutions, ``sub_mean`` and ``add_mean`` (its ``MeanShift``: identity weights, bias
-/+ 255 * the DIV2K mean with ``rgb_range`` 255 and ``rgb_std`` 1), that our model holds as
constants. Pixels are 0-255 there and [0, 1] here, with the factor 255 inside our model, so the
same weights compute the same images (up to float rounding).

:func:`import_edsr_pytorch` reads such a file with ``weights_only=True`` and refuses, in one line
naming the file or the tensor, what our model would compute differently: a MeanShift that is not
EDSR's DIV2K mean at ``rgb_range`` 255, a model of another scale (exit 2), a missing, extra or
misshapen tensor, a non-float or non-finite one, a file that is not a state dict. The authors'
releases (drn/reference/edsr_baseline.yaml, ``releases``) are checked against their recorded
sha256 and size; any other file is imported with a warning that it is no known release. The
checkpoint (written atomically, :func:`~drn.engine.checkpoint.save_checkpoint`) is an
``edsr_baseline`` of the baseline's sizes (C = 64, B = 16) with an ``origin`` record of the file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from drn.core.errors import DataError, UsageError
from drn.engine.checkpoint import FORMAT, load_safely, save_checkpoint
from drn.engine.releases import Release, file_digest, releases
from drn.models import build_model
from drn.models.drn import DIV2K_RGB_MEAN

MODEL = "edsr_baseline"
FORMAT_NAME = "edsr-pytorch"  # drn import's name of it; drn/reference/edsr_baseline.yaml's
RGB_RANGE = 255.0  # EDSR-PyTorch's --rgb_range default: pixels 0-255
MEAN_SHIFTS = {"sub_mean": -1.0, "add_mean": 1.0}  # MeanShift's sign: subtracted, added back
MEAN_SHIFT_KEYS = frozenset(f"{layer}.{p}" for layer in MEAN_SHIFTS for p in ("weight", "bias"))


@dataclass(frozen=True)
class Imported:
    """What :func:`import_edsr_pytorch` did: the checkpoint written and the file it came from."""

    out: Path
    scale: int
    sha256: str  # of the file imported
    size: int
    tensors: int  # the model's, MeanShift's four left out
    release: Release | None  # the authors' file it is; None: not a known release
    mlflow: dict[str, str] | None = None  # the MLflow run the checkpoint records (track)


def identify(path: Path, sha256: str, size: int) -> Release | None:
    """The release ``path`` is (by its digest); None for a file that is none. A file named as a
    release whose bytes are not the release's is a DataError: modified, truncated, or another."""
    known = releases(MODEL).values()
    for release in known:
        if release.sha256 == sha256 and release.size == size:
            return release
    for release in known:
        if release.name == path.name:
            raise DataError(
                f"{path}: not the authors' {release.name} (sha256 {sha256[:16]}..., {size:,} "
                f"bytes; the release: {release.sha256[:16]}..., {release.size:,} bytes): "
                f"modified or incomplete; download it again from {release.url}"
            )
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of an EDSR-PyTorch file, loaded with ``weights_only=True``; anything else
    (unreadable, code inside, a drn checkpoint, not a dict of tensors) is a DataError."""
    with open(path, "rb") as file:
        start = file.read(4)
    if start != b"PK\x03\x04" and not start.startswith(b"\x80"):  # torch.save: zip, or pickle
        raise DataError(f"{path}: not a readable PyTorch file (neither a zip nor a pickle)")
    state = load_safely(path, "file")
    if isinstance(state, dict) and state.get("format") == FORMAT:
        raise DataError(f"{path}: already a drn-repro checkpoint, nothing to import")
    if not isinstance(state, dict) or not state:
        kind = "an empty dict" if isinstance(state, dict) else f"a Python {type(state).__name__}"
        raise DataError(f"{path}: not an EDSR-PyTorch state dict ({kind}, not tensors by name)")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise DataError(
                f"{path}: not an EDSR-PyTorch state dict: its entry {key!r} is a Python "
                f"{type(value).__name__}, not a tensor"
            )
    return state


def _shape(shape: torch.Size) -> str:
    return "(" + ", ".join(str(n) for n in shape) + ")"


def _values(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(f"{v:g}" for v in tensor.reshape(-1).tolist()[:9]) + ")"


def check_mean_shifts(path: Path, state: dict[str, torch.Tensor]) -> None:
    """``sub_mean`` and ``add_mean`` must be EDSR's MeanShift of the DIV2K mean, rgb_range 255,
    rgb_std 1 (the constants our model holds); a tensor that is not is named."""
    mean = torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float64) * RGB_RANGE
    for layer, sign in MEAN_SHIFTS.items():
        expected = {
            f"{layer}.weight": torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1),
            f"{layer}.bias": sign * mean,
        }
        for key, value in expected.items():
            if key not in state:
                raise DataError(f"{path}: tensor {key} is missing (EDSR-PyTorch's MeanShift)")
            found = state[key]
            if found.shape != value.shape or not torch.allclose(
                found.double(), value, rtol=0, atol=1e-3
            ):
                raise DataError(
                    f"{path}: {key} is {_values(found)} of shape {_shape(found.shape)}, not "
                    f"EDSR's MeanShift of the DIV2K mean {_values(value)} (rgb_range 255, "
                    "rgb_std 1), which our model assumes"
                )


def file_scale(state: dict[str, torch.Tensor]) -> int | None:
    """The scale of an EDSR-PyTorch state dict by its upsampler (``tail.0``): one conv to 9C
    channels is x3, k convs to 4C are x2^k; None where the upsampler is neither."""
    convs = sorted(
        int(key.split(".")[2])
        for key in state
        if key.startswith("tail.0.") and key.endswith(".weight") and key.count(".") == 3
        and key.split(".")[2].isdigit()
    )  # fmt: skip
    if not convs or state[f"tail.0.{convs[0]}.weight"].ndim != 4:
        return None
    out_channels, channels = state[f"tail.0.{convs[0]}.weight"].shape[:2]
    if len(convs) == 1 and out_channels == 9 * channels:
        return 3
    if out_channels == 4 * channels:
        return 2 ** len(convs)
    return None


def _strict(path: Path, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """Every tensor of the model, of its shape, floating point and finite; nothing more."""
    sizes = f"{MODEL}: C = 64, B = 16"
    for key, tensor in state.items():
        if key in own and tensor.shape != own[key].shape:
            raise DataError(
                f"{path}: tensor {key} has shape {_shape(tensor.shape)}, {sizes} has "
                f"{_shape(own[key].shape)}"
            )
    missing = [key for key in own if key not in state]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"{path}: tensor {missing[0]} is missing{more} ({sizes})")
    extra = [key for key in state if key not in own]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise DataError(f"{path}: unexpected tensor {extra[0]}{more}: not one of {sizes}")
    for key, tensor in state.items():
        if not tensor.is_floating_point():
            raise DataError(f"{path}: tensor {key} is {tensor.dtype}, not floating point")
        if not torch.isfinite(tensor).all():
            raise DataError(f"{path}: tensor {key} holds NaN or infinite values")


def default_out(path: Path) -> Path:
    """Where the checkpoint of ``path`` goes without ``--out``: beside it, ``{stem}.drn.pt``."""
    return path.with_name(f"{path.stem}.drn.pt")


def import_edsr_pytorch(
    path: str | os.PathLike,
    scale: int,
    out: str | os.PathLike | None = None,
    track: Callable[[dict[str, Any]], dict[str, str]] | None = None,
) -> Imported:
    """Write ``out`` (default: :func:`default_out`), a drn checkpoint of ``edsr_baseline`` x
    ``scale`` with the weights of the EDSR-PyTorch file ``path``, checked as the module says.
    ``track``: given the checkpoint's ``origin`` once the file is checked, the MLflow run it
    records (``drn import --track``: :func:`drn.engine.tracking.track_import`)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    target = Path(out) if out is not None else default_out(path)
    if target.is_dir():
        target = target / default_out(path).name
    if target.resolve() == path.resolve():
        raise UsageError(f"--out {target}: is the file imported; name another")
    sha256, size = file_digest(path)
    release = identify(path, sha256, size)
    if release is not None and release.scale != scale:
        raise UsageError(f"--scale {scale}: {path} is the authors' x{release.scale} model")
    state = read_state_dict(path)
    found = file_scale(state)
    if found is not None and found != scale:
        raise UsageError(f"--scale {scale}: {path} is a x{found} model (its upsampler, tail.0)")
    check_mean_shifts(path, state)
    weights = {k: v for k, v in state.items() if k not in MEAN_SHIFT_KEYS}
    model = build_model(MODEL, scale)
    own = model.state_dict()
    _strict(path, weights, own)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in weights.items()}, strict=True)
    origin: dict[str, Any] = {
        "format": FORMAT_NAME,
        "file": path.name,
        "sha256": sha256,
        "size": size,
        "release": release.name if release else "",
        "url": release.url if release else "",
    }
    mlflow = track(origin) if track is not None else None
    save_checkpoint(target, model.eval(), origin=origin, mlflow=mlflow)
    return Imported(target, scale, sha256, size, len(own), release, mlflow)
