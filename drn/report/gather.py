"""Everything the report shows, gathered from the files the pipeline wrote (no rendering here).

What to look for comes from the plan (drn/plan.py): its evaluations' JSONs (each one's ``path``)
and its runs' checkpoints ({directory}/checkpoints/last.pt: settings, curves, time, hardware);
then MLflow (run IDs, links, metric histories), dvc.lock (data hashes), params.yaml and the
paper's numbers (drn/reference/drn_paper.yaml). Nothing here rebuilds a label or a path.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drn.plan import BICUBIC, MAIN_GROUP, Evaluation, Plan

PAPER = Path(__file__).resolve().parents[1] / "reference" / "drn_paper.yaml"
PAPER_DATASETS = ("Set5", "Set14", "B100", "Urban100", "Manga109")
SCALES = (2, 3, 4)
# Table 3's columns are the plan's arms of group table3; each known arm -> (its title, the paper's
# column it is put beside). An arm not here (a model variant added to evaluation.models) is titled
# by its name, with no paper column beside it.
ARMS = {
    "bicubic": ("Bicubic", "Bicubic"),
    "drn": ("DRN", "DRN"),
    "drn-ensemble": ("DRN (self-ensemble)", "DRN"),
    "drn_plus": ("DRN+", "DRN+"),
    "drn_plus-ensemble": ("DRN+ (self-ensemble)", "DRN+"),
}
# The rows of the paper's ablation tables (an ablation's `paper`) that our model variants redo.
PAPER_ARMS = {"table2": {"drn": "RDBs", "drn_no_rd": "No RDBs"}}
NOT_RUN = "not run"  # in the plan, no result yet
NOT_PLANNED = "not planned"  # params.yaml does not ask for it


def paper() -> dict[str, Any]:
    return yaml.safe_load(PAPER.read_text())


def parse_cell(printed: str) -> tuple[float, float]:
    """'38.06/0.9607' (or the paper's '33.32/0,9159') -> (38.06, 0.9607)."""
    psnr, ssim = printed.replace(",", ".").split("/")
    return float(psnr), float(ssim)


def title(arm: str) -> str:
    return ARMS.get(arm, (arm, None))[0]


def read(evaluation: Evaluation | None) -> dict[str, Any] | None:
    """The JSON an evaluation of the plan wrote, or None: not planned (None) or not run yet."""
    if evaluation is None or not Path(evaluation.path).is_file():
        return None
    return json.loads(Path(evaluation.path).read_text())


def find(plan: Plan, label: str, scale: int, dataset: str) -> Evaluation | None:
    """The plan's evaluation ``label`` of ``dataset`` at ``scale``, or None: not planned."""
    for found in plan.evaluations:
        if (found.label, found.scale, found.dataset) == (label, scale, dataset):
            return found
    return None


@dataclass
class Cell:
    """One table cell: our number (or None: ``missing`` says why), the paper's, their difference."""

    ours: tuple[float, float] | None
    theirs: tuple[float, float] | None
    note: str = ""
    best: bool = False
    missing: str = NOT_RUN

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


@dataclass(frozen=True)
class Column:
    arm: str  # the plan's arm (an evaluation label of group table3)
    title: str
    paper: str | None  # the paper's column beside it; None: none


def table3_columns(plan: Plan) -> list[Column]:
    """The plan's table3 arms, in the plan's order."""
    arms = dict.fromkeys(e.arm for e in plan.group(MAIN_GROUP))
    return [Column(arm, *ARMS.get(arm, (arm, None))) for arm in arms]


def unplanned_columns(plan: Plan) -> list[str]:
    """Titles of the known Table 3 columns the plan does not evaluate (e.g. DRN+ self-ensemble)."""
    planned = {column.arm for column in table3_columns(plan)}
    return [title for arm, (title, _paper) in ARMS.items() if arm not in planned]


def table3(plan: Plan, reference: dict[str, Any]) -> list[Row]:
    """The plan's bicubic and models (with and without self-ensemble) beside the paper's Table 3,
    one row per dataset and scale of the paper's."""
    values = reference["table3"]["values"]
    notes = {tuple(n["cell"]): n["note"] for n in reference["table3"]["notes"]}
    planned = {(e.arm, e.scale, e.dataset): e for e in plan.group(MAIN_GROUP)}
    columns = table3_columns(plan)
    rows = []
    for dataset in PAPER_DATASETS:
        for scale in SCALES:
            row = Row(dataset, scale)
            for column in columns:
                evaluation = planned.get((column.arm, scale, dataset))
                ours = read(evaluation)
                theirs = parse_cell(values[column.paper][dataset][scale]) if column.paper else None
                row.cells.append(Cell(
                    None if ours is None else (ours["psnr"], ours["ssim"]), theirs,
                    notes.get((column.paper, dataset, scale), ""),
                    missing=NOT_RUN if evaluation else NOT_PLANNED,
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
    planned: bool = True  # False: the plan evaluates it on none of the paper's datasets

    @property
    def text(self) -> str:
        if not self.deltas:
            return NOT_RUN if self.planned else NOT_PLANNED
        mean = statistics.fmean(self.deltas)
        sets = f"{len(self.deltas)} set{'s' * (len(self.deltas) > 1)}"
        if all(abs(d) <= self.tolerance for d in self.deltas):
            return f"reproduced: within {self.tolerance:.2f} dB on all {sets} (mean {mean:+.2f})"
        side = "below" if mean < 0 else "above"
        spread = f"{min(self.deltas):+.2f} to {max(self.deltas):+.2f}"
        return f"{side} the paper: mean {mean:+.2f} dB over {sets} ({spread})"


def verdicts(plan: Plan, rows: list[Row], tolerance: float) -> list[Verdict]:
    """One per model column with a paper column beside it, and scale of the paper's."""
    found = []
    for index, column in enumerate(table3_columns(plan)):
        if column.arm == BICUBIC or column.paper is None:
            continue
        for scale in SCALES:
            cells = [row.cells[index] for row in rows if row.scale == scale]
            deltas = [cell.delta[0] for cell in cells if cell.delta is not None]
            planned = any(cell.missing != NOT_PLANNED for cell in cells)
            found.append(Verdict(column.title, scale, deltas, tolerance, planned))
    return found


@dataclass
class AblationRow:
    arm: str
    label: str
    run: str
    ours: tuple[float, float] | None
    paper: float | None  # the paper's PSNR for this arm, where the ablation redoes its table


@dataclass
class Ablation:
    """One ablation of the plan: its arms' results and, where it redoes a table of the paper,
    that table's numbers beside them."""

    name: str
    title: str
    spec: dict[str, Any]
    varies: str  # "model" or "loss": what its arms are
    rows: list[AblationRow]
    paper: str | None = None  # the table of drn/reference it redoes
    paper_table: dict[str, Any] = field(default_factory=dict)

    @property
    def paper_title(self) -> str:
        """'table2' -> 'Table 2'."""
        return re.sub(r"^table(\d+)$", r"Table \1", self.paper or "")

    @property
    def paper_note(self) -> str:
        """Whether our numbers compare with the paper's table: same dataset, scale and epochs."""
        theirs = self.paper_table
        if "psnr" not in theirs:
            return f"drn/reference has no numbers of the paper's {self.paper_title} by arm."
        if self.as_in_paper:
            return f"As in the paper's {self.paper_title}."
        return (
            f"The paper's {self.paper_title} is {theirs.get('dataset')} x{theirs.get('scale')} "
            f"after {theirs.get('epochs')} epochs: not comparable."
        )

    @property
    def as_in_paper(self) -> bool:
        theirs = self.paper_table
        return (self.spec["dataset"], self.spec["scale"], float(self.spec["epochs"])) == (
            theirs.get("dataset"), theirs.get("scale"), float(theirs.get("epochs", -1)),
        )  # fmt: skip


def ablations(plan: Plan, params: dict[str, Any], reference: dict[str, Any]) -> list[Ablation]:
    """Every ablation of params.yaml, in its order, from the plan's evaluations of it."""
    found = []
    for name, spec in (params.get("ablations") or {}).items():
        table = spec.get("paper")
        theirs = (reference.get(table) or {}) if table else {}
        names = PAPER_ARMS.get(table or "", {})
        rows = []
        for evaluation in plan.group(name):
            ours = read(evaluation)
            paper_psnr = (theirs.get("psnr") or {}).get(names.get(evaluation.arm, ""))
            rows.append(AblationRow(
                evaluation.arm, evaluation.label, evaluation.run or BICUBIC,
                None if ours is None else (ours["psnr"], ours["ssim"]), paper_psnr,
            ))  # fmt: skip
        found.append(Ablation(
            name, spec.get("title") or name, spec, "loss" if "losses" in spec else "model", rows,
            table, theirs,
        ))  # fmt: skip
    return found


def elsewhere(plan: Plan) -> list[dict[str, Any]]:
    """The plan's Table 3 evaluations that no Table 3 row holds (datasets or scales that are not
    the paper's, like the demo's photos)."""
    rows = []
    for evaluation in plan.group(MAIN_GROUP):
        if evaluation.dataset in PAPER_DATASETS and evaluation.scale in SCALES:
            continue
        data = read(evaluation)
        rows.append({
            "label": evaluation.label, "scale": evaluation.scale, "dataset": evaluation.dataset,
            "run": evaluation.run or "-", "images": len(data["images"]) if data else "-",
            "result": data and (data["psnr"], data["ssim"]),
        })  # fmt: skip
    return rows


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

    @property
    def gpu_hours(self) -> str:
        if self.seconds is None or self.hardware == NOT_RECORDED:
            return NOT_RECORDED
        return f"{self.seconds * self.gpus / 3600:.2f}" if self.gpus else "none (CPU)"


def runs(plan: Plan, tracking: dict[str, Any]) -> list[Run]:
    """Every training run of the plan, in its order: from its last checkpoint (finished or
    interrupted), or not run."""
    from drn.checkpoint import load_checkpoint

    found = []
    for planned in plan.runs:
        run = Run(planned.name, planned.roles, planned.directory)
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
