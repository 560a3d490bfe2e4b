"""Training data: paired HR/LR images, a decoded uint8 cache, and random aligned patches.

* Pairs: the official bicubic LR images when a folder of them is given and exists, otherwise LR
  made with :func:`drn.protocol.resize.imresize` from the HR image cropped to a multiple of the
  scale.
* Cache: every pair is decoded once into uint8 ``.npy`` files that workers memory-map, so PNG
  decoding never starves a GPU. ``manifest.json`` records each source file's size and mtime; a
  changed source is decoded again, an unchanged one never.
* Patches: sample ``i`` of the run is a pure function of ``(seed, i)`` (image, crop position,
  flips, 90-degree rotation), and step ``t`` of rank ``r`` always takes the same sample numbers
  (:class:`StepSampler`). The data order is therefore the same after a resume or with any number
  of workers or processes, without saving any loader state.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from drn.core.errors import DataError
from drn.core.images import atomic_write, list_images, modcrop, pair_images, read_image
from drn.core.progress import Progress, no_progress
from drn.protocol.resize import imresize

CACHE_VERSION = 1


@dataclass(frozen=True)
class CachedPair:
    name: str
    hr: Path  # uint8 .npy, (H*s, W*s, 3)
    lr: Path  # uint8 .npy, (H, W, 3)


def _identity(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _as_rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_write(path) as tmp, open(tmp, "wb") as file:
        np.save(file, array)


def build_cache(
    hr_dir: str | os.PathLike,
    lr_dir: str | os.PathLike | None,
    scale: int,
    cache_dir: str | os.PathLike,
    patch: int,
    progress: Progress = no_progress,
) -> tuple[list[CachedPair], str]:
    """Decode (or reuse) every training pair; returns the pairs and a version of the data.

    Every image is checked before training can start: unreadable files, LR images whose size is
    not HR / scale, and images smaller than a patch are DataErrors naming the file.
    """
    hr_paths = list_images(hr_dir, "train.data.hr")
    official = lr_dir is not None and Path(lr_dir).is_dir()
    if official:
        pairs = [(n, hr, lr) for n, lr, hr in pair_images(list_images(lr_dir), hr_paths)]
    else:
        pairs = [(p.stem, p, None) for p in hr_paths]
    cache = Path(cache_dir)
    manifest_path = cache / "manifest.json"
    try:
        old = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        old = {}
    if old.get("version") != CACHE_VERSION or old.get("scale") != scale:
        old = {}
    entries, result = {}, []
    for name, hr_path, lr_path in progress(pairs, len(pairs), f"caching x{scale} pairs"):
        source = {"hr": _identity(hr_path), "lr": _identity(lr_path) if lr_path else "imresize"}
        pair = CachedPair(name, cache / f"{name}_hr.npy", cache / f"{name}_lr.npy")
        entry = old.get("entries", {}).get(name)
        if not (entry and entry["source"] == source and pair.hr.is_file() and pair.lr.is_file()):
            entry = {"source": source, "lr_shape": _decode_pair(pair, hr_path, lr_path, scale)}
        if min(entry["lr_shape"][:2]) < patch:
            h, w = entry["lr_shape"][:2]
            raise DataError(f"{lr_path or hr_path}: LR is {w}x{h}, smaller than a {patch} patch")
        entries[name] = entry
        result.append(pair)
    manifest = {"version": CACHE_VERSION, "scale": scale, "entries": entries}
    with atomic_write(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    sources = json.dumps([entries[p.name]["source"] for p in result], sort_keys=True)
    return result, hashlib.sha256(sources.encode()).hexdigest()[:16]


def _decode_pair(pair: CachedPair, hr_path: Path, lr_path: Path | None, scale: int) -> list[int]:
    hr = _as_rgb(modcrop(read_image(hr_path), scale))
    if lr_path is None:
        if min(hr.shape[:2]) < scale:
            raise DataError(f"{hr_path}: smaller than the scale {scale}")
        lr = imresize(hr, 1 / scale)
    else:
        lr = _as_rgb(read_image(lr_path))
        if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
            raise DataError(
                f"{lr_path}: LR is {lr.shape[1]}x{lr.shape[0]} but HR {hr_path} cropped to a "
                f"multiple of {scale} is {hr.shape[1]}x{hr.shape[0]}"
            )
    _save_npy(pair.hr, np.ascontiguousarray(hr))
    _save_npy(pair.lr, np.ascontiguousarray(lr))
    return list(lr.shape)


class PatchDataset(Dataset):
    """Sample ``i`` -> (LR patch, HR patch) as uint8 HxWx3 tensors, a pure function of (seed, i)."""

    def __init__(self, pairs: list[CachedPair], scale: int, patch: int, seed: int):
        if not pairs:
            raise DataError("no training images")
        self.pairs, self.scale, self.patch, self.seed = pairs, scale, patch, seed
        self._arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # memory maps, per process

    def __len__(self) -> int:
        return len(self.pairs)

    def _open(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._arrays:
            pair = self.pairs[index]
            self._arrays[index] = (
                np.load(pair.lr, mmap_mode="r"),
                np.load(pair.hr, mmap_mode="r"),
            )
        return self._arrays[index]

    def __getitem__(self, sample: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, sample))
        lr, hr = self._open(int(rng.integers(len(self.pairs))))
        p, s = self.patch, self.scale
        y = int(rng.integers(lr.shape[0] - p + 1))
        x = int(rng.integers(lr.shape[1] - p + 1))
        lr_patch = lr[y : y + p, x : x + p]
        hr_patch = hr[y * s : (y + p) * s, x * s : (x + p) * s]
        hflip, vflip, transpose = rng.integers(2, size=3)
        if hflip:
            lr_patch, hr_patch = lr_patch[:, ::-1], hr_patch[:, ::-1]
        if vflip:
            lr_patch, hr_patch = lr_patch[::-1], hr_patch[::-1]
        if transpose:  # with the flips: all 8 rotations and reflections
            lr_patch, hr_patch = lr_patch.transpose(1, 0, 2), hr_patch.transpose(1, 0, 2)
        return (
            torch.from_numpy(np.ascontiguousarray(lr_patch)),
            torch.from_numpy(np.ascontiguousarray(hr_patch)),
        )


class StepSampler(Sampler[int]):
    """Sample numbers for steps ``[start, stop)`` of one rank: ``(t * world + rank) * batch + k``.

    With ``world`` ranks of ``batch`` samples each, step ``t`` covers samples
    ``t * world * batch`` to ``(t + 1) * world * batch - 1`` whatever the number of ranks.
    """

    def __init__(self, start: int, stop: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __len__(self) -> int:
        return max(0, self.stop - self.start) * self.batch

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start, self.stop):
            first = (step * self.world + self.rank) * self.batch
            yield from range(first, first + self.batch)


def _prepare_worker(worker_id: int) -> None:
    """Seed the worker, and let it ignore Slurm's stop signals: the main process handles them
    (checkpoint, then exit) and needs its workers alive until then."""
    np.random.seed(torch.initial_seed() % 2**32)  # distinct per worker, from the loader's seed
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)


def patch_loader(
    dataset: PatchDataset,
    sampler: StepSampler,
    workers: int,
    pin_memory: bool,
    seed: int,
) -> DataLoader:
    """Batches of uint8 (N, p, p, 3) LR and (N, sp, sp, 3) HR patches, in step order."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=sampler.batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        # One iterator serves the whole run, so its workers live as long as the run: persistent
        # in effect. Dropping that iterator shuts them down; a persistent_workers loader would
        # keep them until interpreter exit, where they ignore the SIGTERM that ends them.
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_prepare_worker,
        generator=generator,
    )
