"""The arguments several subcommands share, and what their values load.

The argument types (``--scale``, ``--shave``), the option groups (``--params``; ``--device`` and
``--tile``; the scoring options) and, inside the functions, the lower layers that read a settings
file or a checkpoint (:func:`read_params`, :func:`load_model`; torch is loaded there only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.core.errors import UsageError


def _scale(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"invalid scale {text!r}: expected an integer >= 2")
    return int(text)


def _border(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid shave {text!r}: expected an integer >= 0")
    return int(text)


def add_scale_option(parser: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    """``--scale``: an integer >= 2."""
    parser.add_argument("--scale", type=_scale, required=required, help=help)


def add_params_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="settings file (params.yaml)"
    )


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--tile", type=int, default=256, metavar="N",
        help="LR tile size for bounded memory (results equal untiled ones); 0 = whole images",
    )  # fmt: skip


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    add_scale_option(parser, "upscaling factor (2, 3, 4, ...)")
    parser.add_argument(
        "--shave",
        type=_border,
        default=None,
        metavar="N",
        help="pixels removed from every border before scoring (default: the scale)",
    )
    parser.add_argument("--rgb", action="store_true", help="also report PSNR on RGB, labelled so")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the scores as JSON here")


def read_params(path: Path, overrides: list[str] | None = None) -> dict:
    """The settings of ``path`` (``--params``) with ``overrides`` (``--set``) applied, checked."""
    from drn.pipeline.params import apply_overrides, load_params, validate_params

    params = apply_overrides(load_params(path), overrides or [])
    validate_params(params, path)
    return params


def load_model(weights: str, scale: int, device_name: str, option: str = "--weights"):
    """The model of a checkpoint (a file or an MLflow URI) on ``device_name``, and the device."""
    import torch

    from drn.engine.checkpoint import model_from_checkpoint
    from drn.engine.tracking import resolve_weights

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device_name == "auto" else device_name
    )
    model, _ = model_from_checkpoint(resolve_weights(weights, option=option), device)
    if model.scale != scale:
        raise UsageError(f"--scale {scale}: {weights} is a x{model.scale} model")
    return model, device
