"""Checkpoint files: what they hold, writing them atomically, and loading them safely.

A checkpoint is a plain dict that ``torch.load(..., weights_only=True)`` can read (tensors,
numbers, strings, lists, dicts; never pickled objects)::

    {"format": "drn-repro-checkpoint", "version": 1,
     "model": {"name": "drn", "scale": 2, "config": {...sizes...}},
     "state_dict": {...}, "sha256": "<digest of the state_dict>",
     "training": {...},            # optimizer, scheduler, step, RNG states: training only
     "mlflow": {"run_id": "...", "tracking_uri": "..."},   # model.pt of a tracked run only
     "milestone": {"step": N, "run": "<run directory name>"},   # checkpoints/step_<N>.pt only
     "origin": {"format": "edsr-pytorch", "file": "...", "sha256": "...", ...}}  # drn import only

``mlflow`` names the MLflow run that trained the weights and the store it logged to, so that
``drn evaluate`` can add its scores to that run (:func:`mlflow_record`); checkpoints without it
(untracked runs, last.pt and best.pt, files written before it existed) load the same.

The digest makes a modified file an error instead of silently different weights: PyTorch's own
reader does not check the bytes of tensor data.

Writes are all or nothing: the bytes go to a temporary file beside the target (flushed to the
disk) that is renamed onto it only when complete. A process killed mid-write (``kill -9``, a
node failure) leaves the previous file as it was, plus the temporary file, which the next write of
the same checkpoint deletes; a full disk or quota is an error naming the file, the previous file
again intact.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from drn.core.errors import DataError, DrnError
from drn.core.images import atomic_write
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
    path: str | os.PathLike,
    model: nn.Module,
    training: dict[str, Any] | None = None,
    mlflow: dict[str, str] | None = None,
    milestone: dict[str, Any] | None = None,
    origin: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically: a crash mid-write leaves the previous file intact, and a
    failed write (a full disk) is a DrnError naming the file. ``mlflow``: the record of the run
    that trained it (``{"run_id", "tracking_uri"}``); ``milestone``: the step of its run it was
    kept at (``{"step", "run"}``); ``origin``: the file weights trained elsewhere were imported
    from (:mod:`drn.engine.edsr_pytorch`; strings and numbers)."""
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
    if mlflow is not None:
        payload["mlflow"] = {
            "run_id": str(mlflow["run_id"]),
            "tracking_uri": str(mlflow["tracking_uri"]),
        }
    if milestone is not None:
        payload["milestone"] = {"step": int(milestone["step"]), "run": str(milestone["run"])}
    if origin is not None:
        payload["origin"] = dict(origin)
    path = Path(path)
    remove_stale_temporaries(path)  # a killed writer's leftovers: make room before writing
    sink = None
    try:
        with atomic_write(path) as tmp, open(tmp, "wb") as file:
            sink = _Sink(file)
            torch.save(payload, sink)
            file.flush()
            os.fsync(file.fileno())  # on the disk before the rename; late quota errors (NFS)
    except (OSError, RuntimeError) as error:
        if isinstance(error, RuntimeError):  # torch's writer reports a failed write its way
            if sink is None or sink.error is None:
                raise
            error = sink.error
        kept = f"the previous {path.name} is unchanged" if path.is_file() else "nothing written"
        raise DrnError(
            f"{path}: could not write the checkpoint: {error.strerror or error} ({kept})"
        ) from None


class _Sink:
    """A file for torch.save that remembers a failed write: torch reports a full disk as
    "unexpected pos ..." (or not at all), the OSError says what happened."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        self.file.flush()


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that writers of ``path`` killed mid-write left beside it
    (``atomic_write``'s ``.<stem>.<8 random characters><suffix>``); returns them.

    A checkpoint has one writer (rank 0 of its run), so any such file is a dead writer's.
    """
    path = Path(path)
    prefix, suffix = f".{path.stem}.", path.suffix
    removed = []
    if not path.parent.is_dir():
        return removed
    for candidate in path.parent.iterdir():
        name = candidate.name
        random_part = name[len(prefix) : len(name) - len(suffix)]
        if (
            name.startswith(prefix)
            and name.endswith(suffix)
            and len(random_part) == 8
            and candidate.is_file()
        ):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def load_safely(path: Path, what: str = "checkpoint") -> Any:
    """``torch.load`` on the CPU with ``weights_only=True``: code in the file is refused, never
    run; an unreadable file is a DataError naming it (a readable PyTorch `what`)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise DataError(
            f"{path}: refused: it holds objects other than tensors and plain data "
            "(loaded with weights_only=True)"
        ) from None
    except Exception as error:  # truncated zip, not a zip, ...: torch raises many kinds
        reason = " ".join(str(error).split())[:120]
        raise DataError(f"{path}: not a readable PyTorch {what} ({reason})") from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and verify a checkpoint on the CPU; anything wrong is a DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    payload = load_safely(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"{path}: not a drn-repro checkpoint (a foreign PyTorch file)")
    if payload.get("version") != VERSION:
        raise DataError(f"{path}: checkpoint version {payload.get('version')} is not supported")
    if state_digest(payload["state_dict"]) != payload.get("sha256"):
        raise DataError(f"{path}: the weights do not match their checksum (modified or corrupted)")
    return payload


def mlflow_record(path: str | os.PathLike) -> dict[str, str] | None:
    """The ``mlflow`` record of a checkpoint (``{"run_id", "tracking_uri"}``), or None when it has
    none. Reads the file memory-mapped, so the weights' bytes are not read; meant for a file
    :func:`load_checkpoint` has verified (an unreadable one is None)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # verified elsewhere: no record is the safe answer
        return None
    record = payload.get("mlflow") if isinstance(payload, dict) else None
    if not isinstance(record, dict) or not record.get("run_id"):
        return None
    return {"run_id": str(record["run_id"]), "tracking_uri": str(record.get("tracking_uri") or "")}


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
