"""Everything the report shows, gathered from the files the pipeline wrote (no rendering here).

Sources: the evaluation JSONs ({results}/eval/{label}/x{scale}/{dataset}.json), the training runs'
checkpoints ({runs}/.../checkpoints/last.pt: settings, curves, time, hardware), MLflow (run IDs,
links, metric histories), dvc.lock (data hashes), params.yaml and the paper's numbers
(drn/reference/drn_paper.yaml).
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAPER = Path(__file__).resolve().parents[1] / "reference" / "drn_paper.yaml"
PAPER_DATASETS = ("Set5", "Set14", "B100", "Urban100", "Manga109")
SCALES = (2, 3, 4)
# our evaluation label -> (column title, the paper's column it is put beside)
COLUMNS = (
    ("bicubic", "Bicubic", "Bicubic"),
    ("drn", "DRN", "DRN"),
    ("drn-ensemble", "DRN (self-ensemble)", "DRN"),
    ("drn_plus", "DRN+", "DRN+"),
    ("drn_plus-ensemble", "DRN+ (self-ensemble)", "DRN+"),
)


def paper() -> dict[str, Any]:
    return yaml.safe_load(PAPER.read_text())


def parse_cell(printed: str) -> tuple[float, float]:
    """'38.06/0.9607' (or the paper's '33.32/0,9159') -> (38.06, 0.9607)."""
    psnr, ssim = printed.replace(",", ".").split("/")
    return float(psnr), float(ssim)


@dataclass
class Cell:
    """One table cell: our number (or None: not run), the paper's, and their difference."""

    ours: tuple[float, float] | None
    theirs: tuple[float, float] | None
    note: str = ""
    best: bool = False

    @property
    def delta(self) -> tuple[float, float] | None:
        if self.ours is None or self.theirs is None:
            return None
        return self.ours[0] - self.theirs[0], self.ours[1] - self.theirs[1]


@dataclass
class Row:
    dataset: str
    scale: int
    cells: list[Cell] = field(default_factory=list)


def evaluation(results: Path, label: str, scale: int, dataset: str) -> dict[str, Any] | None:
    path = results / "eval" / label / f"x{scale}" / f"{dataset}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def table3(results: Path, reference: dict[str, Any]) -> list[Row]:
    """Bicubic, DRN and DRN+ (with and without self-ensemble) beside the paper's Table 3."""
    values = reference["table3"]["values"]
    notes = {tuple(n["cell"]): n["note"] for n in reference["table3"]["notes"]}
    rows = []
    for dataset in PAPER_DATASETS:
        for scale in SCALES:
            row = Row(dataset, scale)
            for label, _title, theirs in COLUMNS:
                ours = evaluation(results, label, scale, dataset)
                row.cells.append(Cell(
                    None if ours is None else (ours["psnr"], ours["ssim"]),
                    parse_cell(values[theirs][dataset][scale]),
                    notes.get((theirs, dataset, scale), ""),
                ))  # fmt: skip
            run = [c for c in row.cells if c.ours is not None and c.ours[0] is not None]
            if run:
                max(run, key=lambda c: c.ours[0]).best = True
            rows.append(row)
    return rows


@dataclass
class Verdict:
    model: str
    scale: int
    deltas: list[float]
    tolerance: float

    @property
    def text(self) -> str:
        if not self.deltas:
            return "not run"
        mean = statistics.fmean(self.deltas)
        sets = f"{len(self.deltas)} set{'s' * (len(self.deltas) > 1)}"
        if all(abs(d) <= self.tolerance for d in self.deltas):
            return f"reproduced: within {self.tolerance:.2f} dB on all {sets} (mean {mean:+.2f})"
        side = "below" if mean < 0 else "above"
        spread = f"{min(self.deltas):+.2f} to {max(self.deltas):+.2f}"
        return f"{side} the paper: mean {mean:+.2f} dB over {sets} ({spread})"


def verdicts(rows: list[Row], tolerance: float) -> list[Verdict]:
    found = []
    for index, (label, title, _theirs) in enumerate(COLUMNS):
        if label == "bicubic":
            continue
        for scale in SCALES:
            deltas = [
                row.cells[index].delta[0]
                for row in rows
                if row.scale == scale and row.cells[index].delta is not None
            ]
            found.append(Verdict(title, scale, deltas, tolerance))
    return found


def table2(results: Path, params: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """The residual-distilling ablation beside the paper's Table 2."""
    spec, theirs = params["ablations"]["distillation"], reference["table2"]
    paper_names = {"drn": "RDBs", "drn_no_rd": "No RDBs"}
    rows = []
    for model in spec["models"]:
        ours = evaluation(results, f"table2-{model}", spec["scale"], spec["dataset"])
        rows.append({
            "model": model, "ours": ours and (ours["psnr"], ours["ssim"]),
            "paper": theirs["psnr"].get(paper_names.get(model, ""), None),
        })  # fmt: skip
    same = (spec["dataset"], spec["scale"], spec["epochs"]) == (
        theirs["dataset"], theirs["scale"], theirs["epochs"],
    )  # fmt: skip
    return {"spec": spec, "rows": rows, "as_in_paper": same, "paper": theirs}


def loss_comparison(results: Path, params: dict[str, Any]) -> list[dict[str, Any]]:
    spec = params["ablations"]["loss"]
    return [
        {"loss": loss, "run": f"ablations/loss/{loss}_x{spec['scale']}",
         "result": evaluation(results, f"loss-{loss}", spec["scale"], spec["dataset"])}
        for loss in spec["losses"]
    ]  # fmt: skip


NOT_RECORDED = "not recorded"


@dataclass
class Run:
    """One training run as its last checkpoint and MLflow record it."""

    name: str  # relative to {runs}, e.g. drn_x2 or ablations/loss/l2_x2
    settings: dict[str, Any]
    step: int
    seconds: float | None  # None: not recorded (a checkpoint from before drn recorded it)
    hardware: str
    gpus: int
    data_version: str
    train_curve: list[list[float]]
    val_curve: list[list[float]]
    mlflow_run_id: str | None = None
    mlflow_link: str | None = None
    curves_from: str = "checkpoint"

    @property
    def gpu_hours(self) -> str:
        if self.seconds is None or self.hardware == NOT_RECORDED:
            return NOT_RECORDED
        return f"{self.seconds * self.gpus / 3600:.2f}" if self.gpus else "none (CPU)"


def runs(runs_dir: Path, tracking: dict[str, Any]) -> list[Run]:
    """Every finished or interrupted training run under ``runs_dir`` (not the set-aside ones)."""
    from drn.checkpoint import load_checkpoint

    found = []
    for last in sorted(runs_dir.glob("**/checkpoints/last.pt")):
        run_dir = last.parent.parent
        if ".replaced-" in str(run_dir):
            continue
        training = load_checkpoint(last).get("training", {})
        hardware = training.get("device", NOT_RECORDED)
        found.append(Run(
            name=str(run_dir.relative_to(runs_dir)), settings=training.get("settings", {}),
            step=training.get("step", 0), seconds=training.get("train_seconds"),
            hardware=hardware,
            gpus=int(hardware.split(" x ")[0]) if " x " in hardware else 0,
            data_version=training.get("data_version", NOT_RECORDED),
            train_curve=training.get("history", {}).get("train", []),
            val_curve=training.get("history", {}).get("val", []),
            mlflow_run_id=training.get("mlflow_run_id"),
        ))  # fmt: skip
    if tracking.get("enabled"):
        _from_mlflow(found, tracking)
    return found


def _from_mlflow(found: list[Run], tracking: dict[str, Any]) -> None:
    """Curves and links from MLflow where the run is there (else the checkpoint's copy stays)."""
    try:
        from mlflow.tracking import MlflowClient

        from drn.tracking import tracking_uri

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
