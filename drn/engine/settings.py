"""What one training run depends on (:class:`TrainSettings`), as the engine takes it; no torch.

:func:`result_settings` is the part that changes what the run computes (a run directory holding
other result settings is not resumed). The pipeline resolves these settings from params.yaml
(:func:`drn.pipeline.settings.settings_from_params`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

LOSS_NAMES = ("l1", "l2")  # MAE (the paper's) and MSE
COMPILE_MODES = ("auto", "off", "default", "reduce-overhead")
# Settings that may change between the attempts of one run without changing its result.
RESUMABLE_CHANGES = {
    "workers", "log_every", "checkpoint_every", "compile", "tracking_uri", "experiment",
}  # fmt: skip


@dataclass(frozen=True)
class TrainSettings:
    """Everything one training run depends on, resolved from params.yaml."""

    model: str
    scale: int
    sizes: dict[str, Any]
    hr: str
    lr: str | None
    cache: str
    val_hr: str | None
    val_images: int
    val_every: int
    batch: int
    patch: int
    learning_rate: float
    betas: tuple[float, float]
    eps: float
    decay_every: int  # iterations
    decay_factor: float
    loss: str
    iterations: int
    checkpoint_every: int
    log_every: int
    seed: int
    deterministic: bool
    compile: str
    channels_last: bool
    workers: int
    init_from: str | None
    tracking_uri: str
    experiment: str

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))


def result_settings(settings: TrainSettings) -> dict[str, Any]:
    """The settings that change what a run computes (not how fast or how it reports)."""
    return {k: v for k, v in settings.to_json().items() if k not in RESUMABLE_CHANGES}


def is_prefix(short: TrainSettings, long: TrainSettings) -> bool:
    """Whether ``short`` is the first ``short.iterations`` steps of ``long``: every result
    setting equal but the length, which is shorter. Then every learning-rate change up to its end
    is at the same step (the schedule halves at multiples of ``decay_every``, counted from step 0,
    whatever the length) and sample ``i`` is the same (a pure function of seed and ``i``:
    :mod:`drn.engine.dataset`), so ``long``'s weights at that step are ``short``'s."""
    own, other = result_settings(short), result_settings(long)
    same = all(own[k] == other[k] for k in own if k != "iterations")
    return same and 0 < short.iterations < long.iterations  # a run of no step has no milestone
