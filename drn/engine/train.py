"""The training engine: the paper's recipe, resumable, preemption-safe, multi-GPU, tracked.

``train(settings, run_dir)`` trains one model at one scale. Its run directory holds
``checkpoints/last.pt`` (every ``checkpoint_every`` iterations and on SIGTERM/SIGUSR1),
``checkpoints/best.pt`` (best validation PSNR), ``checkpoints/step_<N>.pt`` (the weights at each
milestone step asked for, naming the MLflow run), ``settings.json``, ``train.log`` (what every
attempt printed, appended), ``train_curve.csv`` and ``val_curve.csv``, ``progress.json`` (where
the run is, for ``drn status``), ``holder.json`` while a process trains it
(:mod:`drn.engine.holder`: one at a time) and, once finished, ``model.pt`` (the final weights,
naming their MLflow run for ``drn evaluate``). A run can be trained in segments (``until``):
each ends with its step's checkpoint and the next resumes it. Calling it
again on the same directory resumes: model, optimizer, scheduler, step, RNG states and (by
construction, see :mod:`drn.engine.dataset`) the data order, so an interrupted and resumed run ends
with the weights of an uninterrupted one.

Recipe (params.yaml ``train``): Adam (0.9, 0.999, 1e-8), lr 1e-4 halved every 200 epochs, L1 loss
(L2 selectable), batch 16 of 48x48 LR patches, where an epoch is 1000 iterations as in
EDSR-PyTorch, whose defaults the paper's settings match.

Validation scores the first ``train.validation.images`` images as ``drn evaluate`` does
(:func:`drn.protocol.scoring.lr_of`, :func:`drn.engine.inference.upscale_image`,
:func:`drn.protocol.scoring.score_image`):
the same model gives the same numbers either way.

Under ``torchrun`` it trains with DistributedDataParallel: the global batch stays ``batch``
(split over the ranks), rank 0 validates, checkpoints and logs.

One attempt is a :class:`_Run` (restore, log, data, tracking, compiled model; then a training
step, logging, validation, checkpoints, finishing); :func:`train` drives its loop.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from drn.core.errors import UsageError
from drn.core.images import atomic_write, list_images, read_image, write_image
from drn.engine.checkpoint import load_checkpoint, save_checkpoint
from drn.engine.dataset import PatchDataset, StepSampler, build_cache, patch_loader
from drn.engine.holder import hold
from drn.engine.inference import upscale_image
from drn.engine.reporter import TrainingReporter, write_progress
from drn.engine.runtime import (
    Cluster,
    StopSignals,
    rng_state,
    seed_everything,
    set_rng_state,
    start_cluster,
)
from drn.engine.settings import RESUMABLE_CHANGES, TrainSettings
from drn.models import build_model
from drn.protocol.scoring import ImageScore, SetScore, lr_of, score_image

if TYPE_CHECKING:
    from drn.engine.tracking import Tracker

LOSSES = {"l1": nn.functional.l1_loss, "l2": nn.functional.mse_loss}


# ---------------------------------------------------------------- validation


def load_validation(settings: TrainSettings) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR cropped to the scale, its MATLAB-bicubic LR) for the first validation images:
    :func:`drn.protocol.scoring.lr_of`, as ``drn evaluate`` makes them."""
    if not settings.val_hr or settings.val_images <= 0:
        return []
    paths = list_images(settings.val_hr, "train.validation.hr")[: settings.val_images]
    return [(path.stem, *lr_of(read_image(path), settings.scale)) for path in paths]


def validate(
    model: nn.Module,
    images: list[tuple[str, np.ndarray, np.ndarray]],
    scale: int,
    device: torch.device,
    save_dir: Path | None = None,
) -> SetScore:
    """Y PSNR/SSIM (shave = scale) of the model's uint8 SR of the validation images, made and
    scored as ``drn evaluate`` does (:func:`drn.engine.inference.evaluate_model`)."""
    model.eval()
    scores = []
    for name, hr, lr in images:
        sr = upscale_image(model, lr, scale, device)
        if save_dir is not None:
            write_image(save_dir / f"{name}_x{scale}.png", sr)
        scores.append(ImageScore(name, *score_image(sr, hr, scale)))
    model.train()
    return SetScore(scale, scale, tuple(scores))


# ---------------------------------------------------------------- run directories


def _changed_settings(saved: dict[str, Any], current: TrainSettings) -> list[str]:
    now = current.to_json()
    return sorted(k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k])


def _write_curves(run_dir: Path, history: dict[str, list[list[float]]]) -> None:
    """train_curve.csv (step, loss, lr) and val_curve.csv (step, psnr, ssim): DVC plots."""
    for name, header in (("train", "step,loss,lr"), ("val", "step,psnr,ssim")):
        rows = [",".join(f"{v:.10g}" for v in row) for row in history[name]]
        with atomic_write(run_dir / f"{name}_curve.csv") as tmp:
            tmp.write_text("\n".join([header, *rows]) + "\n")


def _init_from(model: nn.Module, path: str) -> int:
    """Copy every tensor whose name and shape match from a checkpoint (e.g. x2 into x4)."""
    source = load_checkpoint(path)["state_dict"]
    own = model.state_dict()
    matching = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(matching, strict=False)
    return len(matching)


def _hardware(device: torch.device, world: int) -> str:
    """What trained the run, for the report: e.g. '4 x NVIDIA H100 80GB HBM3' or 'CPU (...)'."""
    if device.type == "cuda":
        return f"{world} x {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    return f"CPU ({cpu}, {os.cpu_count()} cores{f', {world} processes' if world > 1 else ''})"


def _compile_mode(settings: TrainSettings, device: torch.device, world: int) -> str | None:
    mode = settings.compile
    if mode == "auto":
        mode = "off" if device.type != "cuda" else ("reduce-overhead" if world == 1 else "default")
    return None if mode == "off" else mode


def _set_aside(run_dir: Path, cluster: Cluster) -> None:
    """Move a run of other settings out of the way (never deleted): {run_dir}.replaced-<time>."""
    if cluster.world > 1:
        dist.barrier()
    if cluster.main:
        run_dir.rename(
            run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        )
    if cluster.world > 1:
        dist.barrier()


# ---------------------------------------------------------------- the run


def train(
    settings: TrainSettings,
    run_dir: str | os.PathLike,
    device_name: str = "auto",
    report: bool = True,
    track: bool = True,
    if_changed: str = "refuse",
    tags: dict[str, str] | None = None,
    until: int | None = None,
    keep: tuple[int, ...] = (),
    restore_only: bool = False,
) -> int:
    """Train (or resume) one run; returns 0 when finished (or its segment is), 128 + signal when
    stopped early.

    A run directory holding a run of other settings is refused, or with ``if_changed="restart"``
    (what the pipeline uses when params.yaml changed) set aside and started afresh. ``tags``
    go to the MLflow run (the plan's roles), whose name is the run directory's. ``until``: train
    one segment, up to that step (then ``checkpoints/step_<until>.pt`` is kept, and the next call
    resumes there, in the same MLflow run); ``keep``: the steps whose checkpoint is kept as
    ``checkpoints/step_<N>.pt`` (the plan's milestones). A finished run is not trained again.
    Rank 0 holds the run directory (:mod:`drn.engine.holder`): one another live process trains
    is refused (HeldError, exit 75), a gone holder's taken over. ``restore_only`` (a run a pack
    trained): train nothing; a segment or run not done is a UsageError.
    """
    cluster, device = start_cluster(device_name)
    if settings.batch % cluster.world:
        raise UsageError(f"train.batch {settings.batch} does not split over {cluster.world} ranks")
    seed_everything(settings)
    held = hold(run_dir) if cluster.main else None  # one trainer per run directory; HeldError
    try:  # released below, else in the loop's finally
        run = _Run(settings, Path(run_dir), cluster, device)
        resumed = run.restore(if_changed)
        if held is not None:
            held.follow()  # a run set aside took holder.json with it: hold the fresh directory
        end = settings.iterations if until is None else min(until, settings.iterations)
        if run.nothing_to_do(end):
            if held is not None:
                held.release()
            return 0
        if restore_only:
            raise UsageError(f"{run_dir}: at step {run.step}, not trained to step {end} by its "
                             "pack (see the pack job's log)")  # fmt: skip
        run.until = end if end < settings.iterations else None
        run.open_log(report, resumed)
        if held is not None and held.took_over:
            run.reporter.say(held.took_over)  # took over a gone holder's record: console, log
        run.prepare_data()
        if track and cluster.main:
            run.start_tracking(tags or {})
        run.compile()
    except BaseException:
        if held is not None:
            held.release()
        raise

    signals = StopSignals()
    status, signum = "FINISHED", 0
    try:
        run.start_loader()
        kept = {step for step in (*keep, end) if step < settings.iterations}
        while run.step < end:
            run.train_step()
            if run.step % settings.log_every == 0 or run.step == end:
                run.log()
            if run.validation_due():
                run.validate()
            if cluster.main and run.step % settings.checkpoint_every == 0:
                run.save_last()
            if cluster.main and run.step in kept:
                run.save_milestone()
                run.reporter.say(f"kept the checkpoint of step {run.step}: "
                                 f"{run.milestone_path(run.step)}")  # fmt: skip
            signum = run.stop_signal(signals)
            if signum:
                status = "KILLED"
                break
        if not signum and run.step < settings.iterations:
            status = "SCHEDULED"  # MLflow's state between segments: the next one resumes it
        run.finish(signum)
    except BaseException as error:
        status = "FAILED"
        run.reporter.record(f"failed at step {run.step}: {type(error).__name__}: {error}")
        raise
    finally:
        run.batches = (
            None  # shuts the loader's workers down (they ignore SIGTERM; drn.engine.dataset)
        )
        signals.restore()
        try:
            run.close(status)
        finally:
            if held is not None:
                held.release()  # after the last write of train.log and MLflow
    return 128 + signum if signum else 0


class _Run:
    """One attempt at a run on this rank: the model, its optimizer and scheduler, the state a
    checkpoint resumes (step, best PSNR, history, MLflow run, time spent), the data, the log and
    the tracker. :func:`train` calls its parts in order, then its loop steps."""

    reporter: TrainingReporter
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None

    def __init__(
        self, settings: TrainSettings, run_dir: Path, cluster: Cluster, device: torch.device
    ):
        self.settings, self.run_dir, self.cluster, self.device = settings, run_dir, cluster, device
        self.last, self.best = run_dir / "checkpoints/last.pt", run_dir / "checkpoints/best.pt"
        self.model = build_model(settings.model, settings.scale, **settings.sizes)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=settings.learning_rate, betas=settings.betas,
            eps=settings.eps,
        )  # fmt: skip
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=settings.decay_every, gamma=settings.decay_factor
        )
        self.step, self.best_psnr, self.run_id, self.spent = 0, -math.inf, None, 0.0
        self.checkpoint_step, self.it_per_s, self.started = 0, None, None
        self.until: int | None = None  # the end of this attempt's segment, if not the last
        self.history: dict[str, list[list[float]]] = {"train": [], "val": []}
        self.tracker: Tracker | None = None
        self.batches = None
        self.format = torch.channels_last if settings.channels_last else torch.contiguous_format
        self.hardware = _hardware(device, cluster.world)

    # ------------------------------------------------------------ before the loop

    def restore(self, if_changed: str) -> bool:
        """Resume from last.pt, or start afresh (from ``init_from`` if set), then put the model
        and the optimizer's moments on the device; True if resumed. A last.pt of other settings
        is refused, or set aside with ``if_changed="restart"``."""
        settings = self.settings
        payload = load_checkpoint(self.last) if self.last.is_file() else None
        saved = payload.get("training", {}) if payload is not None else {}
        changed = [] if payload is None else _changed_settings(saved.get("settings", {}), settings)
        if changed and if_changed == "restart":
            _set_aside(self.run_dir, self.cluster)
            payload = None
        elif changed:
            key, now = changed[0], settings.to_json()[changed[0]]
            raise UsageError(
                f"{self.last}: this run was started with {key} = {saved['settings'].get(key)!r}, "
                f"now {now!r}; use another run directory, or the same settings to resume"
            )
        if payload is not None:
            self.model.load_state_dict(payload["state_dict"])
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            self.step, self.best_psnr = saved["step"], saved["best_psnr"]
            self.checkpoint_step = self.step
            self.run_id = saved.get("mlflow_run_id")
            self.history = saved.get("history", self.history)
            self.spent = saved.get("train_seconds", 0.0)
            set_rng_state(saved["rng"])
        elif settings.init_from:
            _init_from(self.model, settings.init_from)
        self.model.to(self.device, memory_format=self.format)
        for state in self.optimizer.state.values():  # a resumed optimizer's moments follow
            for key, value in state.items():
                if torch.is_tensor(value) and key != "step":
                    state[key] = value.to(self.device)
        return payload is not None

    def nothing_to_do(self, end: int) -> bool:
        """Whether this attempt has no step to train: the run is finished (model.pt written),
        or its segment up to `end` is done (its step checkpoint kept); says so on the console.
        A segment's checkpoint that is gone while last.pt is at its step (Snakemake removes a
        job's outputs before running it, and a failed job's: e.g. a job refused while another
        trainer held the run) is written again from those weights; a run past `end` without it
        cannot serve that milestone: a UsageError. A finished run's lost model.pt is written
        again from last.pt likewise (its MLflow artifacts were logged when it finished)."""
        settings, model = self.settings, self.run_dir / "model.pt"
        if self.step >= settings.iterations and model.is_file():
            print(f"{self.run_dir}: already finished ({self.step} iterations; {model}); "
                  "nothing to do", flush=True)  # fmt: skip
            return True
        if self.step >= settings.iterations:  # every rank returns, rank 0 writes
            if self.cluster.main:
                save_checkpoint(model, self.model, mlflow=self._recorded_run())
            print(f"{self.run_dir}: wrote {model} again, from last.pt at step {self.step}",
                  flush=True)  # fmt: skip
            return True
        if end >= settings.iterations or self.step < end:
            return False
        kept = self.milestone_path(end)
        if not kept.is_file() and self.step == end and self.cluster.main:
            self.save_milestone(self._recorded_run())
            print(f"{self.run_dir}: wrote {kept} again, from last.pt at step {end}", flush=True)
            return True
        if not kept.is_file():
            raise UsageError(
                f"{self.run_dir}: at step {self.step}, past step {end} without its checkpoint "
                f"{kept.name}; it cannot serve that milestone (train it as its own run)"
            )
        print(f"{self.run_dir}: segment up to step {end} already done ({kept})", flush=True)
        return True

    def milestone_path(self, step: int) -> Path:
        return self.run_dir / f"checkpoints/step_{step}.pt"

    def open_log(self, report: bool, resumed: bool) -> None:
        """The console and train.log (rank 0), opened with this attempt's header line."""
        main = self.cluster.main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.reporter = TrainingReporter(
            self.settings.iterations, self.step, report and main,
            self.run_dir / "train.log" if main else None,
        )  # fmt: skip
        job = os.environ.get("SLURM_JOB_ID")  # one header per start: the history shows each one
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        where = f"{platform.node()}, Slurm job {job}" if job else platform.node()
        self.reporter.say(f"== {self.run_dir}: started {started} on {where} ==")
        if resumed:
            self.reporter.say(f"resumed from step {self.step} (of {self.settings.iterations})")

    def prepare_data(self) -> None:
        """settings.json, the patch cache (rank 0 builds it, the others then open it) and the
        validation images (rank 0)."""
        settings = self.settings
        if self.cluster.main:
            (self.run_dir / "settings.json").write_text(
                json.dumps(settings.to_json(), indent=2) + "\n"
            )
            self.pairs, self.data_version = build_cache(
                settings.hr, settings.lr, settings.scale, settings.cache, settings.patch
            )
        if self.cluster.world > 1:
            dist.barrier()
        if not self.cluster.main:
            self.pairs, self.data_version = build_cache(
                settings.hr, settings.lr, settings.scale, settings.cache, settings.patch
            )
        self.validation = load_validation(settings) if self.cluster.main else []

    def start_tracking(self, tags: dict[str, str]) -> None:
        """The MLflow run (named as the run directory; resumed with it): params and tags."""
        from drn.engine.tracking import Tracker, git_commit

        settings = self.settings
        self.tracker = Tracker(
            settings.tracking_uri, settings.experiment, self.run_dir.name, run_id=self.run_id
        )
        self.tracker.log_params(settings.to_json())
        self.tracker.set_tags({
            "variant": settings.model, "scale": settings.scale, "loss": settings.loss,
            "git_commit": git_commit(), "data_version": self.data_version,
            "run_dir": str(self.run_dir.resolve()), "world_size": self.cluster.world,
            "device": self.hardware, "torch": torch.__version__, **tags,
        })  # fmt: skip
        self._log_datasets()

    def _log_datasets(self) -> None:
        """The training pairs (the cache folder; digest: the data version of drn.engine.dataset) and
        the
        validation images (their source folder; digest of the images in memory) as inputs."""
        from drn.engine.tracking import images_digest

        settings, tracker = self.settings, self.tracker
        assert tracker is not None
        tracker.log_dataset(
            f"train {Path(settings.hr).name} x{settings.scale}", self.data_version,
            settings.cache, "training",
            {"pairs": len(self.pairs), "hr": settings.hr,
             "lr": settings.lr if settings.lr and Path(settings.lr).is_dir() else "imresize"},
        )  # fmt: skip
        if self.validation and settings.val_hr:
            images = [(name, hr) for name, hr, _ in self.validation]
            tracker.log_dataset(
                f"validation {Path(settings.val_hr).name} x{settings.scale}",
                images_digest(images), settings.val_hr, "validation",
                {"images": len(images), "names": [name for name, _ in images]},
            )  # fmt: skip

    def compile(self) -> None:
        """What a step runs: DDP over the ranks, then torch.compile (CUDA graphs by default on
        one GPU), under bf16 autocast on CUDA."""
        self.parallel: nn.Module = self.model
        if self.cluster.world > 1:
            self.parallel = nn.parallel.DistributedDataParallel(  # the only buffers: constants
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False,
            )  # fmt: skip
        mode = self.compile_mode = _compile_mode(self.settings, self.device, self.cluster.world)
        self.runner = torch.compile(self.parallel, mode=mode) if mode else self.parallel
        self.loss_fn = LOSSES[self.settings.loss]
        cuda = self.device.type == "cuda"
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda)

    def start_loader(self) -> None:
        """This rank's share of the remaining steps' batches, in the run's fixed order; the
        clocks of the log window and of the attempt start."""
        settings, cluster = self.settings, self.cluster
        sampler = StepSampler(self.step, settings.iterations, settings.batch // cluster.world,
                              cluster.rank, cluster.world)  # fmt: skip
        loader = patch_loader(
            PatchDataset(self.pairs, settings.scale, settings.patch, settings.seed),
            sampler, settings.workers, self.device.type == "cuda", settings.seed,
        )  # fmt: skip
        self.loss_sum = torch.zeros((), device=self.device)
        self._new_window()
        self.started = time.perf_counter()
        self.write_progress("running")
        self.parallel.train()
        self.batches = iter(loader)

    # ------------------------------------------------------------ the loop's parts

    def train_step(self) -> None:
        """One optimizer step on the next batch."""
        assert self.batches is not None
        wait_start = time.perf_counter()
        lr_u8, hr_u8 = next(self.batches)
        self.waited += time.perf_counter() - wait_start
        lr = lr_u8.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        hr = hr_u8.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        lr = lr.contiguous(memory_format=self.format)
        if self.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        with self.autocast:
            sr = self.runner(lr)
        loss = self.loss_fn(sr.float(), hr)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.loss_sum += loss.detach()
        self.window_steps += 1

    def log(self) -> None:
        """The window's mean loss, lr, speed and data wait: MLflow, train_curve.csv, console."""
        elapsed = time.perf_counter() - self.window_start
        metrics = {
            "loss": self.loss_sum.item() / self.window_steps,
            "lr": self.scheduler.get_last_lr()[0],
            "it_per_s": self.window_steps / elapsed,
            "data_wait_fraction": self.waited / elapsed,
        }
        if self.tracker:
            self.tracker.log_metrics(metrics, self.step)
        self.history["train"].append([self.step, metrics["loss"], metrics["lr"]])
        if self.cluster.main:
            _write_curves(self.run_dir, self.history)
        self.reporter.update(self.step, metrics)
        self.it_per_s = metrics["it_per_s"]
        self.write_progress("running")
        self._new_window()

    def _new_window(self) -> None:
        self.loss_sum.zero_()
        self.window_steps, self.window_start, self.waited = 0, time.perf_counter(), 0.0

    def validation_due(self) -> bool:
        """Rank 0 with validation images, every ``val_every`` steps and at the last."""
        every, last = self.settings.val_every, self.settings.iterations
        due = (every > 0 and self.step % every == 0) or self.step == last
        return self.cluster.main and bool(self.validation) and due

    def validate(self) -> None:
        """Score the validation images: MLflow, val_curve.csv, best.pt when the best PSNR."""
        score = validate(self.model, self.validation, self.settings.scale, self.device)
        if self.tracker:
            self.tracker.log_metrics({"val_psnr": score.psnr, "val_ssim": score.ssim}, self.step)
        self.history["val"].append([self.step, score.psnr, score.ssim])
        _write_curves(self.run_dir, self.history)
        if score.psnr > self.best_psnr:
            self.best_psnr = score.psnr
            save_checkpoint(self.best, self.model, {"step": self.step, "val_psnr": score.psnr})

    def save_last(self, stopped_by: int = 0) -> None:
        """checkpoints/last.pt: the weights and all a resumed attempt needs (rank 0)."""
        save_checkpoint(self.last, self.model, {
            "step": self.step, "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(),
            "best_psnr": self.best_psnr, "settings": self.settings.to_json(),
            "mlflow_run_id": self.tracker.run_id if self.tracker else self.run_id,
            "stopped_by_signal": stopped_by, "history": self.history,
            "world_size": self.cluster.world,
            "train_seconds": self.spent + time.perf_counter() - self.started,
            "device": self.hardware, "data_version": self.data_version,
        })  # fmt: skip
        self.checkpoint_step = self.step

    def save_milestone(self, record: dict[str, str] | None = None) -> None:
        """checkpoints/step_<N>.pt: the weights at a milestone (naming the MLflow run, as
        model.pt does, so that its evaluation is logged there; `record`, where not tracking)."""
        record = self.tracker.record() if self.tracker else record
        save_checkpoint(self.milestone_path(self.step), self.model, mlflow=record,
                        milestone={"step": self.step, "run": self.run_dir.name})  # fmt: skip

    def _recorded_run(self) -> dict[str, str] | None:
        """The MLflow record of the run last.pt names, without opening the store."""
        from drn.engine.tracking import recorded_uri, tracking_uri

        if not self.run_id:
            return None
        return {
            "run_id": self.run_id,
            "tracking_uri": recorded_uri(tracking_uri(self.settings.tracking_uri)),
        }

    def write_progress(self, state: str) -> None:
        """progress.json (rank 0): where the run is, for ``drn status`` and the plan."""
        if not self.cluster.main:
            return
        val = self.history["val"][-1] if self.history["val"] else None
        seconds = self.spent + (time.perf_counter() - self.started if self.started else 0.0)
        write_progress(self.run_dir, {
            "run": self.run_dir.name, "step": self.step, "iterations": self.settings.iterations,
            "checkpoint_step": self.checkpoint_step, "it_per_s": self.it_per_s,
            "train_seconds": round(seconds, 1), "gpus": self.cluster.world if
            self.device.type == "cuda" else 0, "device": self.hardware,
            "latest_val_psnr": val[1] if val else None, "latest_val_step": val[0] if val else None,
            "best_val_psnr": self.best_psnr if math.isfinite(self.best_psnr) else None,
            "state": state, "until": self.until, "host": platform.node(), "pid": os.getpid(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
        })  # fmt: skip

    def stop_signal(self, signals: StopSignals) -> int:
        """The SIGTERM/SIGUSR1 any rank received (0: none, or the run's last step is done)."""
        stop = torch.tensor([signals.received], device=self.device)
        if self.cluster.world > 1:
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        received = int(stop.item())
        return received if self.step < self.settings.iterations else 0

    # ------------------------------------------------------------ after the loop

    def finish(self, signum: int) -> None:
        """last.pt and the curves; once finished model.pt and the MLflow artifacts (at the end
        of a segment, a tag saying where the run is); progress.json; the closing line of
        train.log."""
        last = self.step >= self.settings.iterations
        if self.cluster.main:
            self.save_last(signum)
            _write_curves(self.run_dir, self.history)
            if not signum and last:
                record = self.tracker.record() if self.tracker else None  # drn evaluate logs there
                save_checkpoint(self.run_dir / "model.pt", self.model, mlflow=record)
                self._log_results()
            elif not signum and self.tracker:
                self.tracker.set_tags(
                    {
                        "segment": f"step {self.step} of "
                        f"{self.settings.iterations}: the next segment resumes"
                    }
                )
            self.write_progress("stopped" if signum else "finished" if last else "segment_done")
        if signum:
            line = (f"stopped by signal {signal.Signals(signum).name} at step {self.step}; "
                    "run again to resume")  # fmt: skip
        elif last:
            line = f"finished {self.step} iterations; weights in {self.run_dir / 'model.pt'}"
        else:
            line = (f"segment done at step {self.step} of {self.settings.iterations}; "
                    "the next segment resumes here")  # fmt: skip
        self.reporter.say(line)

    def _log_results(self) -> None:
        if self.tracker is None:
            return
        samples = self.run_dir / "samples"
        if self.validation:
            validate(self.model, self.validation[:3], self.settings.scale, self.device, samples)
            for png in sorted(samples.glob("*.png")):
                self.tracker.log_artifact(png, "samples")
        self.tracker.log_artifact(self.run_dir / "model.pt", "checkpoint")
        self.tracker.log_model(self.model, self.run_dir / "model.pt")

    def close(self, status: str) -> None:
        """The console and train.log, the MLflow run (FINISHED, KILLED, FAILED, or SCHEDULED
        between segments), the ranks."""
        if status == "FAILED":
            self.write_progress("failed")
        self.reporter.close()
        if self.tracker:
            self.tracker.finish(status)
        if self.cluster.world > 1:
            dist.barrier()
            dist.destroy_process_group()
