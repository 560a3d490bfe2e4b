"""One training run's settings, resolved from params.yaml (no torch: the workflow reads them).

:func:`settings_from_params` turns params.yaml plus a run of the plan (variant, scale, epochs,
loss, seed) into the engine's :class:`~drn.engine.settings.TrainSettings`, and
:data:`SETTING_KEYS` says where in params.yaml each result setting comes from (dvc.yaml's
``params:``).
"""

from __future__ import annotations

from typing import Any

from drn.core.errors import UsageError
from drn.engine.settings import COMPILE_MODES, LOSS_NAMES, TrainSettings
from drn.pipeline.params import model_sizes, setting, source_path

# Where each result setting comes from in params.yaml, for the run's {variant} and {scale}. The
# run's identity (model, scale) and what a plan entry chooses (iterations: its epochs; loss; seed)
# come from the plan, which adds the keys it read them from (drn.pipeline.plan.Run.keys).
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
