"""The training engine: the paper's recipe, resumable, preemption-safe, multi-GPU, tracked.

``train(settings, run_dir)`` trains one model at one scale. Its run directory holds
``checkpoints/last.pt`` (every ``checkpoint_every`` iterations and on SIGTERM/SIGUSR1),
``checkpoints/best.pt`` (best validation PSNR), ``settings.json``, ``train.log`` (what every
attempt printed, appended) and, once finished, ``model.pt`` (the final weights). Calling it
again on the same directory resumes: model, optimizer, scheduler, step, RNG states and (by
construction, see :mod:`drn.dataset`) the data order, so an interrupted and resumed run ends
with the weights of an uninterrupted one.

Recipe (params.yaml ``train``): Adam (0.9, 0.999, 1e-8), lr 1e-4 halved every 200 epochs, L1 loss
(L2 selectable), batch 16 of 48x48 LR patches, where an epoch is 1000 iterations as in
EDSR-PyTorch, whose defaults the paper's settings match.

Under ``torchrun`` it trains with DistributedDataParallel: the global batch stays ``batch``
(split over the ranks), rank 0 validates, checkpoints and logs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from drn.checkpoint import load_checkpoint, save_checkpoint
from drn.data import atomic_write, list_images, modcrop, read_image, write_image
from drn.dataset import PatchDataset, StepSampler, build_cache, patch_loader
from drn.errors import UsageError
from drn.imresize import imresize
from drn.inference import super_resolve, to_tensor, to_uint8
from drn.metrics import luma, psnr, shave, ssim
from drn.models import build_model
from drn.settings import RESUMABLE_CHANGES, TrainSettings

LOSSES = {"l1": nn.functional.l1_loss, "l2": nn.functional.mse_loss}


def launch_under_torchrun(gpus: int, argv: list[str]) -> int:
    """Replace this process by torchrun running the same ``drn`` command on ``gpus`` GPUs
    (so that the scheduler's signals reach torchrun, which passes them to every rank)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={gpus}", "-m", "drn", *argv]  # fmt: skip
    os.execv(sys.executable, command)
    return 1  # not reached


# ---------------------------------------------------------------- process-level state


@dataclass
class _Cluster:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_cluster(device_name: str) -> tuple[_Cluster, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cluster = _Cluster(
        int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))
    )
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", cluster.local_rank if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return cluster, device


class _StopSignals:
    """Remembers SIGTERM / SIGUSR1 (Slurm's warnings before a time limit or preemption)."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.received = 0
        self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].tolist(),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), 624, 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- validation


def load_validation(settings: TrainSettings) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, HR cropped to the scale, its MATLAB-bicubic LR) for the first validation images."""
    if not settings.val_hr or settings.val_images <= 0:
        return []
    images = []
    for path in list_images(settings.val_hr, "train.validation.hr")[: settings.val_images]:
        hr = modcrop(read_image(path), settings.scale)
        hr = np.repeat(hr[:, :, None], 3, axis=2) if hr.ndim == 2 else hr
        images.append((path.stem, hr, imresize(hr, 1 / settings.scale)))
    return images


def validate(
    model: nn.Module,
    images: list[tuple[str, np.ndarray, np.ndarray]],
    scale: int,
    device: torch.device,
    save_dir: Path | None = None,
) -> tuple[float, float]:
    """Mean Y PSNR/SSIM (shave = scale) of the model's uint8 SR of the validation images."""
    model.eval()
    scores = []
    for name, hr, lr in images:
        sr = to_uint8(super_resolve(model, to_tensor(lr, device), scale))
        if save_dir is not None:
            write_image(save_dir / f"{name}_x{scale}.png", sr)
        sr_y, hr_y = shave(luma(sr), scale), shave(luma(hr), scale)
        scores.append((psnr(sr_y, hr_y), ssim(sr_y, hr_y)))
    model.train()
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


# ---------------------------------------------------------------- the run


class _Reporter:
    """A progress bar on a terminal; plain periodic lines in batch jobs. The lines also go to
    ``history`` (appended: the log of every attempt of a run, which a scheduler's own log of a
    job does not keep, e.g. Snakemake deletes a job's log when it starts the job again)."""

    def __init__(self, total: int, start: int, enabled: bool, history: Path | None = None):
        self.enabled, self.total = enabled, total
        self.history = history.open("a") if history is not None else None
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("training"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.2f} it/s  loss {task.fields[loss]:.5f}"),
                TimeRemainingColumn(), transient=False,
            )  # fmt: skip
            self.task = self.bar.add_task("train", total=total, completed=start, rate=0, loss=0)
            self.bar.start()

    def update(self, step: int, metrics: dict[str, float]) -> None:
        left = (self.total - step) / max(metrics["it_per_s"], 1e-9)
        fields = " ".join(f"{k} {v:.5g}" for k, v in metrics.items())
        line = f"step {step}/{self.total} {fields} eta {left / 60:.1f} min"
        self.record(line)
        if self.bar is not None:
            self.bar.update(
                self.task, completed=step, rate=metrics["it_per_s"], loss=metrics["loss"]
            )
        elif self.enabled:
            print(line, flush=True)

    def say(self, text: str) -> None:
        self.record(text)
        if self.bar is not None:
            self.bar.console.print(text)
        elif self.enabled:
            print(text, flush=True)

    def record(self, line: str) -> None:
        """Append ``line`` to the run's train.log only (not shown on the console)."""
        if self.history is not None:
            self.history.write(line + "\n")
            self.history.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        if self.history is not None:
            self.history.close()


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


def _set_aside(run_dir: Path, cluster: _Cluster) -> None:
    """Move a run of other settings out of the way (never deleted): {run_dir}.replaced-<time>."""
    if cluster.world > 1:
        dist.barrier()
    if cluster.main:
        run_dir.rename(
            run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        )
    if cluster.world > 1:
        dist.barrier()


def train(
    settings: TrainSettings,
    run_dir: str | os.PathLike,
    device_name: str = "auto",
    report: bool = True,
    track: bool = True,
    if_changed: str = "refuse",
    tags: dict[str, str] | None = None,
) -> int:
    """Train (or resume) one run; returns 0 when finished, 128 + signal when stopped early.

    A run directory holding a run of other settings is refused, or with ``if_changed="restart"``
    (what the pipeline uses when params.yaml changed) set aside and started afresh. ``tags``
    go to the MLflow run (the plan's roles), whose name is the run directory's.
    """
    run_dir = Path(run_dir)
    cluster, device = _start_cluster(device_name)
    if settings.batch % cluster.world:
        raise UsageError(f"train.batch {settings.batch} does not split over {cluster.world} ranks")
    if settings.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = not settings.deterministic
    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    random.seed(settings.seed)

    model = build_model(settings.model, settings.scale, **settings.sizes)
    last, best_path = run_dir / "checkpoints/last.pt", run_dir / "checkpoints/best.pt"
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, betas=settings.betas, eps=settings.eps
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=settings.decay_every, gamma=settings.decay_factor
    )
    step, best_psnr, run_id, spent = 0, -math.inf, None, 0.0
    history: dict[str, list[list[float]]] = {"train": [], "val": []}
    payload = load_checkpoint(last) if last.is_file() else None
    if payload is not None:
        saved = payload.get("training", {})
        changed = _changed_settings(saved.get("settings", {}), settings)
        if changed and if_changed == "restart":
            _set_aside(run_dir, cluster)
            payload = None
        elif changed:
            key, now = changed[0], settings.to_json()[changed[0]]
            raise UsageError(
                f"{last}: this run was started with {key} = {saved['settings'].get(key)!r}, "
                f"now {now!r}; use another run directory, or the same settings to resume"
            )
    if payload is not None:
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        step, best_psnr, run_id = saved["step"], saved["best_psnr"], saved.get("mlflow_run_id")
        history = saved.get("history", history)
        spent = saved.get("train_seconds", 0.0)
        _set_rng_state(saved["rng"])
    elif settings.init_from:
        _init_from(model, settings.init_from)
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    for state in optimizer.state.values():  # a resumed optimizer's moments follow the model
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(device)

    if cluster.main:
        run_dir.mkdir(parents=True, exist_ok=True)
    train_log = run_dir / "train.log" if cluster.main else None
    reporter = _Reporter(settings.iterations, step, report and cluster.main, train_log)
    job = os.environ.get("SLURM_JOB_ID")  # one header per start: the history shows each one
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    where = f"{platform.node()}, Slurm job {job}" if job else platform.node()
    reporter.say(f"== {run_dir}: started {started} on {where} ==")
    if payload is not None:
        reporter.say(f"resumed from step {step} (of {settings.iterations})")
    if cluster.main:
        (run_dir / "settings.json").write_text(json.dumps(settings.to_json(), indent=2) + "\n")
        pairs, data_version = build_cache(
            settings.hr, settings.lr, settings.scale, settings.cache, settings.patch
        )
    if cluster.world > 1:
        dist.barrier()
    if not cluster.main:
        pairs, data_version = build_cache(
            settings.hr, settings.lr, settings.scale, settings.cache, settings.patch
        )
    validation = load_validation(settings) if cluster.main else []

    hardware = _hardware(device, cluster.world)
    tracker = None
    if track and cluster.main:
        from drn.tracking import Tracker, git_commit

        tracker = Tracker(settings.tracking_uri, settings.experiment, run_dir.name, run_id=run_id)
        tracker.log_params(settings.to_json())
        tracker.set_tags({
            "variant": settings.model, "scale": settings.scale, "loss": settings.loss,
            "git_commit": git_commit(), "data_version": data_version,
            "run_dir": str(run_dir.resolve()), "world_size": cluster.world, "device": hardware,
            "torch": torch.__version__, **(tags or {}),
        })  # fmt: skip

    raw_model = model
    if cluster.world > 1:
        model = nn.parallel.DistributedDataParallel(  # the only buffers are constants
            model, device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )  # fmt: skip
    compile_mode = _compile_mode(settings, device, cluster.world)
    runner = torch.compile(model, mode=compile_mode) if compile_mode else model
    loss_fn = LOSSES[settings.loss]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    def save_last(stopped_by: int = 0) -> None:
        save_checkpoint(last, raw_model, {
            "step": step, "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(), "best_psnr": best_psnr,
            "settings": settings.to_json(), "mlflow_run_id": tracker.run_id if tracker else run_id,
            "stopped_by_signal": stopped_by, "history": history, "world_size": cluster.world,
            "train_seconds": spent + time.perf_counter() - started, "device": hardware,
            "data_version": data_version,
        })  # fmt: skip

    signals = _StopSignals()
    sampler = StepSampler(step, settings.iterations, settings.batch // cluster.world,
                          cluster.rank, cluster.world)  # fmt: skip
    loader = patch_loader(
        PatchDataset(pairs, settings.scale, settings.patch, settings.seed),
        sampler, settings.workers, device.type == "cuda", settings.seed,
    )  # fmt: skip
    status, exit_code = "FINISHED", 0
    loss_sum = torch.zeros((), device=device)
    window_steps, window_start, waited = 0, time.perf_counter(), 0.0
    started = time.perf_counter()
    batches = None
    try:
        model.train()
        batches = iter(loader)
        while step < settings.iterations:
            wait_start = time.perf_counter()
            lr_u8, hr_u8 = next(batches)
            waited += time.perf_counter() - wait_start
            lr = lr_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
            hr = hr_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
            lr = lr.contiguous(memory_format=fmt)
            if compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            with autocast:
                sr = runner(lr)
            loss = loss_fn(sr.float(), hr)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            loss_sum += loss.detach()
            window_steps += 1

            if step % settings.log_every == 0 or step == settings.iterations:
                elapsed = time.perf_counter() - window_start
                metrics = {
                    "loss": loss_sum.item() / window_steps,
                    "lr": scheduler.get_last_lr()[0],
                    "it_per_s": window_steps / elapsed,
                    "data_wait_fraction": waited / elapsed,
                }
                if tracker:
                    tracker.log_metrics(metrics, step)
                history["train"].append([step, metrics["loss"], metrics["lr"]])
                if cluster.main:
                    _write_curves(run_dir, history)
                reporter.update(step, metrics)
                loss_sum.zero_()
                window_steps, window_start, waited = 0, time.perf_counter(), 0.0

            validate_now = settings.val_every > 0 and step % settings.val_every == 0
            if cluster.main and validation and (validate_now or step == settings.iterations):
                val_psnr, val_ssim = validate(raw_model, validation, settings.scale, device)
                if tracker:
                    tracker.log_metrics({"val_psnr": val_psnr, "val_ssim": val_ssim}, step)
                history["val"].append([step, val_psnr, val_ssim])
                _write_curves(run_dir, history)
                if val_psnr > best_psnr:
                    best_psnr = val_psnr
                    save_checkpoint(best_path, raw_model, {"step": step, "val_psnr": val_psnr})
            if cluster.main and step % settings.checkpoint_every == 0:
                save_last()

            stop = torch.tensor([signals.received], device=device)
            if cluster.world > 1:
                dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            if stop.item() and step < settings.iterations:
                status, exit_code = "KILLED", 128 + int(stop.item())
                break
        if cluster.main:
            save_last(exit_code and exit_code - 128)
            _write_curves(run_dir, history)
            if status == "FINISHED":
                save_checkpoint(run_dir / "model.pt", raw_model)
                _log_results(tracker, raw_model, run_dir, validation, settings, device)
        reporter.say(
            f"stopped by signal {signal.Signals(exit_code - 128).name} at step {step}; "
            "run again to resume"
            if exit_code
            else f"finished {step} iterations; weights in {run_dir / 'model.pt'}"
        )
    except BaseException as error:
        status = "FAILED"
        reporter.record(f"failed at step {step}: {type(error).__name__}: {error}")
        raise
    finally:
        batches = None  # shuts the loader's workers down (they ignore SIGTERM; see drn.dataset)
        signals.restore()
        reporter.close()
        if tracker:
            tracker.finish(status)
        if cluster.world > 1:
            dist.barrier()
            dist.destroy_process_group()
    return exit_code


def _log_results(tracker, model, run_dir, validation, settings, device) -> None:
    if tracker is None:
        return
    samples = run_dir / "samples"
    if validation:
        validate(model, validation[:3], settings.scale, device, save_dir=samples)
        for png in sorted(samples.glob("*.png")):
            tracker.log_artifact(png, "samples")
    tracker.log_artifact(run_dir / "model.pt", "checkpoint")
    tracker.log_model(model, run_dir / "model.pt")
