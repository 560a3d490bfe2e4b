"""One training run's settings, resolved from params.yaml (no torch: the workflow reads them).

:func:`settings_from_params` turns params.yaml plus a run of the plan (variant, scale, epochs,
loss, seed) into a :class:`TrainSettings`; :func:`result_settings` is the part that changes what
the run computes (a run directory holding other result settings is not resumed), and
:data:`SETTING_KEYS` says where in params.yaml each of those comes from (dvc.yaml's ``params:``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from drn.config import model_sizes, setting, source_path
from drn.errors import UsageError

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


# Where each result setting comes from in params.yaml, for the run's {variant} and {scale}. The
# run's identity (model, scale) and what a plan entry chooses (iterations: its epochs; loss; seed)
# come from the plan, which adds the keys it read them from (drn.plan.Run.keys).
SETTING_KEYS: dict[str, tuple[str, ...]] = {
    "model": (),
    "scale": (),
    "sizes": ("models.{variant}",),
    "hr": ("train.data.hr",),
    "lr": ("train.data.lr_prefix",),
    "cache": ("train.data.cache",),
    "val_hr": ("train.validation.source",),
    "val_images": ("train.validation.images",),
    "val_every": ("train.validation.every",),
    "batch": ("train.batch",),
    "patch": ("train.patch",),
    "learning_rate": ("train.optimizer.lr",),
    "betas": ("train.optimizer.betas",),
    "eps": ("train.optimizer.eps",),
    "decay_every": ("train.decay.every_epochs", "train.iterations_per_epoch"),
    "decay_factor": ("train.decay.factor",),
    "loss": (),
    "iterations": ("train.iterations_per_epoch",),
    "seed": (),
    "deterministic": ("train.deterministic",),
    "channels_last": ("train.channels_last",),
    "init_from": ("train.init_from.x{scale}",),
}


def training_data(params: dict[str, Any], scale: int) -> tuple[str, str | None, str, int]:
    """(HR folder, LR folder or None, cache folder, patch size) for one scale."""
    data = setting(params, "train.data")
    prefix = data["lr_prefix"]
    return (
        str(source_path(params, data["hr"])),
        str(source_path(params, f"{prefix}{scale}")) if prefix else None,
        f"{data['cache']}/x{scale}",
        int(setting(params, "train.patch")),
    )


def seeds_of(params: dict[str, Any], model: str) -> list[int]:
    """The seeds ``model`` is trained with (``train.seeds``: a list, or a mapping of models to
    lists with a ``default``)."""
    seeds = setting(params, "train.seeds")
    if isinstance(seeds, dict):
        seeds = seeds.get(model, seeds["default"])
    return [int(seed) for seed in seeds]


def settings_from_params(
    params: dict[str, Any],
    model: str,
    scale: int,
    epochs: float | None = None,
    loss: str | None = None,
    seed: int | None = None,
) -> TrainSettings:
    """Resolve one run's settings (``epochs``, ``loss`` and ``seed`` override params.yaml's, as
    the plan's ablations do); a missing or wrong setting is a UsageError naming it."""

    def get(key: str) -> Any:
        return setting(params, key)

    hr, lr, cache, patch = training_data(params, scale)
    validation = get("train.validation.source")
    sizes = model_sizes(params, model)
    if epochs is None:
        epochs = get("train.epochs").get(model)
        if epochs is None:
            raise UsageError(f"params.yaml: train.epochs has no entry for model {model}")
    per_epoch = int(get("train.iterations_per_epoch"))
    compile_mode = get("train.compile")
    settings = TrainSettings(
        model=model,
        scale=scale,
        sizes=sizes,
        hr=hr,
        lr=lr,
        cache=cache,
        val_hr=str(source_path(params, validation)) if validation else None,
        val_images=int(get("train.validation.images")),
        val_every=int(get("train.validation.every")),
        batch=int(get("train.batch")),
        patch=patch,
        learning_rate=float(get("train.optimizer.lr")),
        betas=tuple(float(b) for b in get("train.optimizer.betas")),
        eps=float(get("train.optimizer.eps")),
        decay_every=round(float(get("train.decay.every_epochs")) * per_epoch),
        decay_factor=float(get("train.decay.factor")),
        loss=str(loss or get("train.loss")),
        iterations=round(float(epochs) * per_epoch),
        checkpoint_every=int(get("train.checkpoint_every")),
        log_every=int(get("train.log_every")),
        seed=seeds_of(params, model)[0] if seed is None else int(seed),
        deterministic=bool(get("train.deterministic")),
        compile="off" if compile_mode is False else str(compile_mode),
        channels_last=bool(get("train.channels_last")),
        workers=int(get("train.workers")),
        init_from=(get("train.init_from") or {}).get(f"x{scale}"),
        tracking_uri=str(get("tracking.uri")),
        experiment=str(get("tracking.experiment")),
    )
    if settings.loss not in LOSS_NAMES:
        raise UsageError(f"train.loss {settings.loss!r}: choose from {', '.join(LOSS_NAMES)}")
    if settings.compile not in COMPILE_MODES:
        raise UsageError(f"params.yaml: train.compile: choose from {', '.join(COMPILE_MODES)}")
    return settings


def result_settings(settings: TrainSettings) -> dict[str, Any]:
    """The settings that change what a run computes (not how fast or how it reports)."""
    return {k: v for k, v in settings.to_json().items() if k not in RESUMABLE_CHANGES}
