"""Where each training run of the plan stands and what it took: its last checkpoint, its MLflow
record, the data it trained on, the software and machine the report was made with.

Owns: ``Run`` (a run of the plan as its checkpoint records it: settings, steps, time, hardware,
GPU-hours, curves, MLflow run ID and link; ``trained`` False: not run; ``served_by``: a milestone,
not trained itself but another run's checkpoint at its step), curves and links fetched
back from MLflow where it is on, the GPU-hours ``drn plan --cost`` projected for a run, the data
hashes of dvc.lock, the software versions and the machine.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drn.pipeline.plan import Plan
from drn.pipeline.plan import Run as PlannedRun

NOT_RECORDED = "not recorded"


@dataclass
class Run:
    """One training run of the plan as its last checkpoint and MLflow record it (``trained``
    False: no checkpoint yet, not run)."""

    name: str  # the plan's run name, e.g. drn_x2 or drn_x3_e100
    roles: tuple[str, ...]  # the plan's: main, ablation, control
    directory: str
    trained: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    seconds: float | None = None  # None: not recorded (a checkpoint from before drn recorded it)
    hardware: str = NOT_RECORDED
    gpus: int = 0
    data_version: str = NOT_RECORDED
    train_curve: list[list[float]] = field(default_factory=list)
    val_curve: list[list[float]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    mlflow_link: str | None = None
    curves_from: str = "checkpoint"
    projected: str = ""  # GPU-hours projected before the run (drn plan --cost)
    served_by: str | None = None  # a milestone: the run whose checkpoint at `step` it is

    @property
    def gpu_hours(self) -> str:
        if self.seconds is None or self.hardware == NOT_RECORDED:
            return NOT_RECORDED
        return f"{self.seconds * self.gpus / 3600:.2f}" if self.gpus else "none (CPU)"


def runs(plan: Plan, tracking: dict[str, Any]) -> list[Run]:
    """Every training run of the plan, in its order: from its last checkpoint (finished or
    interrupted), or not run; a milestone (served by another run's checkpoint) as such, its step
    the serving run's step it is."""
    from drn.engine.checkpoint import load_checkpoint

    found = []
    for planned in plan.runs:
        run = Run(planned.name, planned.roles, planned.directory)
        if not planned.trained:
            run.served_by, run.step = planned.served_by, planned.iterations
            found.append(run)
            continue
        last = Path(planned.directory) / "checkpoints" / "last.pt"
        if last.is_file():
            training = load_checkpoint(last).get("training", {})
            hardware = training.get("device", NOT_RECORDED)
            run.trained, run.settings = True, training.get("settings", {})
            run.step, run.seconds = training.get("step", 0), training.get("train_seconds")
            run.hardware = hardware
            run.gpus = int(hardware.split(" x ")[0]) if " x " in hardware else 0
            run.data_version = training.get("data_version", NOT_RECORDED)
            run.train_curve = training.get("history", {}).get("train", [])
            run.val_curve = training.get("history", {}).get("val", [])
            run.mlflow_run_id = training.get("mlflow_run_id")
        found.append(run)
    if tracking.get("enabled"):
        _from_mlflow([run for run in found if run.trained], tracking)
    return found


def _from_mlflow(found: list[Run], tracking: dict[str, Any]) -> None:
    """Curves and links from MLflow where the run is there (else the checkpoint's copy stays)."""
    try:
        from mlflow.tracking import MlflowClient

        from drn.engine.tracking import tracking_uri

        uri = tracking_uri(tracking["uri"])
        client = MlflowClient(uri)
        for run in found:
            if not run.mlflow_run_id:
                continue
            record = client.get_run(run.mlflow_run_id)
            history = {
                name: [
                    [m.step, m.value] for m in client.get_metric_history(record.info.run_id, name)
                ]
                for name in ("loss", "lr", "val_psnr", "val_ssim")
            }
            run.train_curve = [[s, v] for s, v in history["loss"]]
            run.val_curve = [[s, v] for s, v in history["val_psnr"]]
            run.curves_from = "MLflow"
            if uri.startswith(("http://", "https://")):
                experiment = record.info.experiment_id
                run.mlflow_link = (
                    f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{record.info.run_id}"
                )
    except Exception as error:  # a missing or unreachable store: the checkpoints still tell
        for run in found:
            run.curves_from = f"checkpoint (MLflow unavailable: {type(error).__name__})"


def projected_gpu_hours(params: dict[str, Any], run: PlannedRun) -> str:
    """The GPU-hours `drn plan --cost` projects for ``run``, and whether its rate was measured;
    none for a milestone (the run serving it trains it)."""
    from drn.pipeline.cost import estimate

    if not run.trained:
        return f"none (in {run.served_by}'s)"
    cost = estimate(params, run)
    if not cost.gpus:
        return "none (CPU)"
    return f"{cost.gpu_hours:.2f} ({'measured rate' if cost.measured else 'derived rate'})"


def dvc_data_hashes(root: Path) -> list[tuple[str, str]]:
    """(path, md5) of every output of a `fetch`/`downscale` stage in dvc.lock, if DVC ran."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return []
    stages = yaml.safe_load(lock.read_text()).get("stages", {})
    return [
        (out["path"], out.get("md5", ""))
        for name, stage in sorted(stages.items())
        if name.split("@")[0] in ("fetch", "downscale")
        for out in stage.get("outs", [])
    ]


def software() -> list[tuple[str, str]]:
    names = (
        "drn-repro", "torch", "numpy", "pillow", "scikit-image", "snakemake",
        "snakemake-executor-plugin-slurm", "dvc", "mlflow", "matplotlib", "jinja2",
    )  # fmt: skip
    versions = [("python", platform.python_version())]
    for name in names:
        try:
            versions.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((name, "not installed"))
    return versions


def machine() -> str:
    return f"{platform.node()}: {platform.platform()}, {platform.processor() or platform.machine()}"
