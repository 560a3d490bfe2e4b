"""Everything the report shows, gathered from the files the pipeline wrote (no rendering here).

What to look for comes from the plan (drn/pipeline/plan.py): its evaluations' JSONs (each one's
``path``)
and its runs' checkpoints ({directory}/checkpoints/last.pt: settings, curves, time, hardware);
then MLflow (run IDs, links, metric histories), dvc.lock (data hashes), params.yaml and the
paper's numbers (drn/reference/drn_paper.yaml), and a control's published numbers
(drn/reference/{control}.yaml). Nothing here rebuilds a label or a path.

A cell of the plan is one or more evaluations: one per seed of ``train.seeds``. Cells, verdicts,
ablation contrasts and the calibration follow the definitions of :mod:`drn.report.stats` (mean
± sample sd over seeds, n; reproduced / inconclusive / below / above; paired bootstrap intervals
and the supported / not supported / not resolved sentence). A section whose runs train far fewer
samples than the paper's recipe (under ``DEMO_FRACTION`` of its iterations x batch) is labelled
"demo-scale run (N iterations; the paper: M)".
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drn.pipeline.plan import BICUBIC, CONTROL_GROUP, MAIN_GROUP, Evaluation, Plan
from drn.pipeline.plan import Run as PlannedRun
from drn.report.stats import (
    NOT_PLANNED,
    NOT_RUN,
    Claim,
    Interval,
    Seeds,
    Verdict,
    paired_interval,
    seeds_of,
    sentence,
)

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
PAPER = REFERENCE / "drn_paper.yaml"
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
# Controls (params.yaml `controls`) by title, where their reference file gives none.
CONTROLS = {"edsr_baseline": "EDSR baseline"}
# The paper's recipe (drn_paper.yaml training.epochs) each model variant is compared with.
PAPER_RECIPE = {"drn": "DRN", "drn_plus": "DRN+", "drn_no_rd": "DRN"}
DEMO_FRACTION = 0.1  # a run of fewer samples (iterations x batch) than this of the paper's


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


def result(evaluation: Evaluation | None) -> tuple[float, float] | None:
    """(PSNR, SSIM) of an evaluation's JSON, or None: not planned or not run yet."""
    data = read(evaluation)
    return None if data is None else (data["psnr"], data["ssim"])


def seeds(evaluations: list[Evaluation]) -> Seeds | None:
    """The per-seed results of one cell's evaluations (one per seed), None: none run yet."""
    return seeds_of([result(e) for e in evaluations])


def cell_evaluations(plan: Plan, group: str, arm: str, scale: int,
                     dataset: str) -> list[Evaluation]:  # fmt: skip
    """The plan's evaluations of ``arm`` of ``group`` on ``dataset`` at ``scale``: one per seed."""
    return [e for e in plan.group(group) if (e.arm, e.scale, e.dataset) == (arm, scale, dataset)]


def per_image(evaluation: Evaluation) -> dict[str, float]:
    """PSNR by image name of an evaluation's JSON (an infinite PSNR, written as null, left out)."""
    data = read(evaluation) or {}
    return {i["name"]: i["psnr"] for i in data.get("images") or [] if i.get("psnr") is not None}


@dataclass
class Cell:
    """One table cell: our results over seeds (None: ``missing`` says why), the published
    number beside them, their difference."""

    seeds: Seeds | None
    theirs: tuple[float, float] | None
    note: str = ""
    best: bool = False
    missing: str = NOT_RUN
    deterministic: bool = False  # bicubic: no training, no seed

    @property
    def ours(self) -> tuple[float, float] | None:
        """The mean over seeds of (PSNR, SSIM)."""
        return None if self.seeds is None else self.seeds.mean

    @property
    def delta(self) -> tuple[float, float] | None:
        if self.ours is None or self.theirs is None:
            return None
        return self.ours[0] - self.theirs[0], self.ours[1] - self.theirs[1]

    @property
    def spread_delta(self) -> tuple[float, float] | None:
        """The seeds' spread (min..max PSNR) minus the published PSNR; None: one seed."""
        if self.seeds is None or self.seeds.spread is None or self.theirs is None:
            return None
        low, high = self.seeds.spread
        return low - self.theirs[0], high - self.theirs[0]


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
    one row per dataset and scale of the paper's; a model's cell over its seeds."""
    values = reference["table3"]["values"]
    notes = {tuple(n["cell"]): n["note"] for n in reference["table3"]["notes"]}
    columns = table3_columns(plan)
    rows = []
    for dataset in PAPER_DATASETS:
        for scale in SCALES:
            row = Row(dataset, scale)
            for column in columns:
                evaluations = cell_evaluations(plan, MAIN_GROUP, column.arm, scale, dataset)
                theirs = parse_cell(values[column.paper][dataset][scale]) if column.paper else None
                row.cells.append(Cell(
                    seeds(evaluations), theirs, notes.get((column.paper, dataset, scale), ""),
                    missing=NOT_RUN if evaluations else NOT_PLANNED,
                    deterministic=column.arm == BICUBIC,
                ))  # fmt: skip
            run = [c for c in row.cells if c.ours is not None]
            if run:
                max(run, key=lambda c: c.ours[0]).best = True
            rows.append(row)
    return rows


def verdict(model: str, scale: int, cells: list[Cell], tolerance: float,
            published: bool = False, empty: str | None = None) -> Verdict:  # fmt: skip
    """The verdict (drn.report.stats) of a model at a scale from its cells on the datasets."""
    measured = [cell for cell in cells if cell.delta is not None]
    found = Verdict(
        model, scale, [cell.delta[0] for cell in measured], tolerance,
        any(cell.missing != NOT_PLANNED for cell in cells),
        [cell.spread_delta for cell in measured], [cell.seeds.n for cell in measured],
        empty=empty,
    )  # fmt: skip
    if published:
        found.against, found.value = "the published numbers", "the published value"
    return found


def verdicts(plan: Plan, rows: list[Row], tolerance: float) -> list[Verdict]:
    """One per model column with a paper column beside it, and scale of the paper's."""
    found = []
    for index, column in enumerate(table3_columns(plan)):
        if column.arm == BICUBIC or column.paper is None:
            continue
        for scale in SCALES:
            cells = [row.cells[index] for row in rows if row.scale == scale]
            found.append(verdict(column.title, scale, cells, tolerance))
    return found


def paper_epochs(reference: dict[str, Any], variant: str) -> tuple[float, str]:
    """The epochs of the paper's recipe that a run of ``variant`` is compared with, and whose
    they are: the paper's for its models (PAPER_RECIPE), else (a control: the same recipe as
    DRN's) the paper's DRN's."""
    epochs = (reference.get("training") or {}).get("epochs") or {}
    column = PAPER_RECIPE.get(variant, "DRN")
    return float(epochs.get(column, 800)), column


def demo_scale(entries: list[tuple[str, PlannedRun, float]], params: dict[str, Any],
               reference: dict[str, Any], recipe: dict[str, Any] | None = None,
               whose: str = "the paper") -> str:  # fmt: skip
    """'demo-scale run (N iterations; the paper: M)' when the runs of a section, (title, run,
    the paper's epochs for it), train fewer than DEMO_FRACTION of the paper's samples (iterations
    x batch); '' when none does. ``recipe`` (iterations_per_epoch, batch): another than the
    paper's, e.g. a control's published one, and ``whose`` it is."""
    training = recipe or reference.get("training") or {}
    paper_per_epoch = float(training.get("iterations_per_epoch", 1000))
    paper_batch = int(training.get("batch", 16))
    train = params["train"]
    per_epoch, batch = float(train["iterations_per_epoch"]), int(train["batch"])
    short: dict[tuple[int, int], list[str]] = {}
    for name, run, epochs in entries:
        ours, theirs = round(run.epochs * per_epoch), round(epochs * paper_per_epoch)
        if ours * batch < DEMO_FRACTION * theirs * paper_batch:
            short.setdefault((ours, theirs), []).append(name)
    if not short:
        return ""
    of, theirs_of = ("", "")
    if batch != paper_batch:
        of, theirs_of = f" of batch {batch}", f" of batch {paper_batch}"
    parts = {key: f"{key[0]:,} iterations{of}; {whose}: {key[1]:,}{theirs_of}" for key in short}
    if len(short) == 1:
        return f"demo-scale run ({next(iter(parts.values()))})"
    listed = ". ".join(f"{', '.join(dict.fromkeys(names))}: {parts[key]}"
                       for key, names in short.items())  # fmt: skip
    return f"demo-scale run ({listed})"


def main_scale(plan: Plan, params: dict[str, Any], reference: dict[str, Any]) -> str:
    """The demo-scale label of Table 3 and the verdicts: the plan's main runs."""
    entries = []
    for run in plan.runs:
        if "main" in run.roles:
            entries.append((title(run.variant), run, paper_epochs(reference, run.variant)[0]))
    return demo_scale(entries, params, reference)


@dataclass
class AblationRow:
    """One arm of an ablation over its seeds."""

    arm: str
    labels: list[str]
    runs: list[str]
    seeds: Seeds | None
    paper: float | None  # the paper's PSNR for this arm, where the ablation redoes its table

    @property
    def ours(self) -> tuple[float, float] | None:
        return None if self.seeds is None else self.seeds.mean

    @property
    def run(self) -> str:
        return ", ".join(self.runs)


@dataclass
class Contrast:
    """An arm against the ablation's first: the paired per-image differences, first minus other
    (dB), their interval, and the paper's claim about them if it makes one."""

    first: str
    other: str
    interval: Interval | None  # None: no pair of images yet
    claim: Claim | None
    images: int = 0  # distinct images paired
    seeds: list[int] = field(default_factory=list)  # seeds paired

    @property
    def sentence(self) -> str:
        return sentence(self.first, self.other, self.interval, self.claim)

    @property
    def pairs(self) -> str:
        if self.interval is None:
            return "-"
        seeds = len(self.seeds)
        return (f"{self.interval.n} ({self.images} image{'s' * (self.images > 1)} x {seeds} "
                f"seed{'s' * (seeds > 1)})")  # fmt: skip


@dataclass
class Ablation:
    """One ablation of the plan: its arms' results over seeds, the paired differences of each
    arm against the first and, where it redoes a table of the paper, that table's numbers."""

    name: str
    title: str
    spec: dict[str, Any]
    varies: str  # "model" or "loss": what its arms are
    rows: list[AblationRow]
    paper: str | None = None  # the table of drn/reference it redoes
    paper_table: dict[str, Any] = field(default_factory=dict)
    contrasts: list[Contrast] = field(default_factory=list)
    scale_label: str = ""  # "demo-scale run (...)" or ""

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


def claim_of(ablation: str | None, varies: str, first: str, other: str,
             reference: dict[str, Any]) -> Claim | None:  # fmt: skip
    """What the paper claims about ``first`` minus ``other`` of an ablation: Table 2's numbers
    where the ablation redoes it (paper: table2), the MAE-vs-MSE direction (claims.
    loss_comparison) where it compares those two losses; None: no claim."""
    table = (reference.get(ablation) or {}) if ablation else {}
    names = PAPER_ARMS.get(ablation or "", {})
    psnr = table.get("psnr") or {}
    if first in names and other in names and names[first] in psnr and names[other] in psnr:
        a, b = psnr[names[first]], psnr[names[other]]
        size = round(a - b, 6)
        table_title = re.sub(r"^table(\d+)$", r"Table \1", ablation or "")
        source = f"{table_title}: {names[first]} {a:.2f} - {names[other]} {b:.2f}"
        return Claim((size > 0) - (size < 0), size, source)
    loss = (reference.get("claims") or {}).get("loss_comparison")
    if (
        varies == "loss"
        and isinstance(loss, dict)
        and {first, other} == {loss["better"], loss["than"]}
    ):
        sign = 1 if first == loss["better"] else -1
        size = loss.get("difference_db")
        return Claim(sign, None if size is None else sign * float(size), loss["source"])
    return None


def contrast(first: tuple[str, list[Evaluation]], other: tuple[str, list[Evaluation]],
             claim: Claim | None) -> Contrast:  # fmt: skip
    """Paired per-image differences first - other, matched by seed and image name."""
    by_seed = {e.seed: per_image(e) for e in first[1]}
    differences, images, paired_seeds = [], set(), []
    for evaluation in other[1]:
        mine = by_seed.get(evaluation.seed)
        if not mine:
            continue
        theirs = per_image(evaluation)
        common = sorted(set(mine) & set(theirs))
        if common:
            paired_seeds.append(evaluation.seed)
            images.update(common)
            differences.extend(mine[name] - theirs[name] for name in common)
    interval = paired_interval(differences, len(paired_seeds))
    return Contrast(first[0], other[0], interval, claim, len(images), paired_seeds)


def ablations(plan: Plan, params: dict[str, Any], reference: dict[str, Any]) -> list[Ablation]:
    """Every ablation of params.yaml, in its order, from the plan's evaluations of it: one row
    per arm over its seeds, each arm paired against the first."""
    found = []
    for name, spec in (params.get("ablations") or {}).items():
        table = spec.get("paper")
        theirs = (reference.get(table) or {}) if table else {}
        names = PAPER_ARMS.get(table or "", {})
        varies = "loss" if "losses" in spec else "model"
        arms: dict[str, list[Evaluation]] = {}
        for evaluation in plan.group(name):
            arms.setdefault(evaluation.arm, []).append(evaluation)
        rows = [
            AblationRow(
                arm, [e.label for e in evaluations], [e.run or BICUBIC for e in evaluations],
                seeds(evaluations), (theirs.get("psnr") or {}).get(names.get(arm, "")),
            )
            for arm, evaluations in arms.items()
        ]  # fmt: skip
        items = list(arms.items())
        contrasts = [
            contrast(items[0], item, claim_of(table, varies, items[0][0], item[0], reference))
            for item in items[1:]
        ]
        entries = []
        for evaluations in arms.values():
            for evaluation in evaluations:
                run = plan.run(evaluation.run)
                epochs = theirs.get("epochs") or paper_epochs(reference, run.variant)[0]
                entries.append((evaluation.arm, run, float(epochs)))
        found.append(Ablation(
            name, spec.get("title") or name, spec, varies, rows, table, theirs, contrasts,
            demo_scale(entries, params, reference),
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
    projected: str = ""  # GPU-hours projected before the run (drn plan --cost)

    @property
    def gpu_hours(self) -> str:
        if self.seconds is None or self.hardware == NOT_RECORDED:
            return NOT_RECORDED
        return f"{self.seconds * self.gpus / 3600:.2f}" if self.gpus else "none (CPU)"


def runs(plan: Plan, tracking: dict[str, Any]) -> list[Run]:
    """Every training run of the plan, in its order: from its last checkpoint (finished or
    interrupted), or not run."""
    from drn.engine.checkpoint import load_checkpoint

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


def model_parameters(name: str, scale: int, params: dict[str, Any]) -> int:
    """Trainable parameters of ``name`` at ``scale`` as params.yaml sizes it (built on the meta
    device: no memory, no time)."""
    import torch

    from drn.models.complexity import trainable_parameters
    from drn.pipeline.params import build_from_params

    with torch.device("meta"):
        return trainable_parameters(build_from_params(params, name, scale))


def control_reference(variant: str) -> dict[str, Any]:
    """The published numbers of control ``variant``: drn/reference/{variant}.yaml ({} if none)."""
    path = REFERENCE / f"{variant}.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def published_cell(published: dict[str, Any], dataset: str,
                   scale: int) -> tuple[float, float] | None:  # fmt: skip
    """The published (PSNR, SSIM) of ``dataset`` at ``scale`` (benchmarks.values), None: none."""
    values = (published.get("benchmarks") or {}).get("values") or {}
    printed = (values.get(dataset) or {}).get(scale)
    return None if printed is None else parse_cell(printed)


def published_notes(published: dict[str, Any], dataset: str, scale: int) -> list[str]:
    """What the reference says of one published cell: another source, or how it is printed."""
    benchmarks = published.get("benchmarks") or {}
    notes = []
    for entry in benchmarks.get("from_other_sources") or []:
        if tuple(entry["cell"]) == (dataset, scale):
            notes.append(f"from {entry['source']}: {entry['note']}")
    for entry in benchmarks.get("notes") or []:
        if tuple(entry["cell"]) == (dataset, scale):
            notes.append(f'printed "{entry["printed"]}": {entry["note"]}')
    return notes


def cross_checks(published: dict[str, Any], dataset: str, scale: int) -> list[str]:
    """The same cell as the reference's other sources print it: 'PSNR/SSIM (source)'."""
    checks = ((published.get("benchmarks") or {}).get("cross_checks")) or {}
    return [
        f"{values[dataset][scale]} ({source})"
        for source, values in checks.items()
        if scale in (values.get(dataset) or {})
    ]


def published_source(published: dict[str, Any]) -> dict[str, Any]:
    """The primary source of a control's published numbers (cite, what, protocol, caveats)."""
    primary = (published.get("benchmarks") or {}).get("primary")
    return ((published.get("sources") or {}).get(primary) or {}) if primary else {}


@dataclass(frozen=True)
class ParameterCheck:
    """Our control's trainable parameters at a scale against the published count."""

    scale: int
    ours: int
    printed: str | None  # as published, e.g. 1.37M; None: not published

    @property
    def matches(self) -> bool | None:
        """Ours rounds to the published figure at its printed precision (1,369,859 -> 1.37M);
        None: none published."""
        found = re.fullmatch(r"([\d.]+)\s*([KM]?)", (self.printed or "").replace(",", ""))
        if found is None:
            return None
        number, unit = found.groups()
        decimals = len(number.split(".")[1]) if "." in number else 0
        scale = {"M": 1e6, "K": 1e3, "": 1}[unit]
        return round(self.ours / scale, decimals) == round(float(number), decimals)


@dataclass
class CalibrationRow:
    dataset: str
    scale: int
    cell: Cell  # ours over seeds; theirs: the primary source's
    verdict: Verdict  # on this dataset alone
    notes: list[str] = field(default_factory=list)  # on the published cell
    cross_checks: list[str] = field(default_factory=list)


@dataclass
class Calibration:
    """A control of the plan (params.yaml ``controls``): ours against its published numbers, per
    dataset and scale, and what that means for the verdicts on DRN."""

    variant: str
    title: str
    rows: list[CalibrationRow]
    verdicts: list[Verdict]  # per scale, over the datasets with a published value
    parameters: list[ParameterCheck]
    published: dict[str, Any]  # drn/reference/{variant}.yaml
    scale_label: str = ""

    @property
    def source(self) -> dict[str, Any]:
        return published_source(self.published)

    @property
    def source_line(self) -> str:
        """Where the published numbers come from, their protocol and its caveats, in one line."""
        source = self.source
        if not source:
            return f"No published numbers in drn/reference/{self.variant}.yaml."
        text = f"Published: {str(source.get('what', '')).strip()} ({source.get('cite', '')})."
        if source.get("protocol"):
            text += f" Their protocol: {str(source['protocol']).strip().rstrip('.')}."
        caveats = source.get("caveats") or []
        caveats = [caveats] if isinstance(caveats, str) else caveats
        if caveats:
            text += " Caveats: " + " ".join(str(c).strip() for c in caveats)
        return text

    @property
    def parameter_source(self) -> str:
        counts = self.published.get("parameters") or {}
        paper = counts.get("paper") or {}
        text = counts.get("source") or "no published parameter count"
        if paper:
            text += f"; the paper: {paper.get('printed')} ({paper.get('source')})"
        return text

    @property
    def kinds(self) -> list[str]:
        return [v.kind for v in self.verdicts if v.kind is not None]

    @property
    def case(self) -> str:
        """not run / reproduces / off / inconclusive: which reading applies."""
        kinds = self.kinds
        if not kinds:
            return "not run"
        if any(kind in ("below", "above") for kind in kinds):
            return "off"
        if all(kind == "reproduced" for kind in kinds):
            return "reproduces"
        return "inconclusive"


def calibrations(plan: Plan, params: dict[str, Any], reference: dict[str, Any],
                 tolerance: float) -> list[Calibration]:  # fmt: skip
    """One per control of the plan, in its order: every dataset and scale it is evaluated on
    beside its published numbers (drn/reference/{control}.yaml), the same verdict rule as
    DRN's, its parameter count against the published one."""
    found = []
    for variant in dict.fromkeys(e.arm for e in plan.group(CONTROL_GROUP)):
        published = control_reference(variant)
        evaluations = [e for e in plan.group(CONTROL_GROUP) if e.arm == variant]
        places = list(dict.fromkeys((e.dataset, e.scale) for e in evaluations))
        name = published.get("method") or CONTROLS.get(variant, variant)
        rows = []
        for dataset, scale in sorted(places, key=lambda p: (p[1], p[0] not in PAPER_DATASETS)):
            found_cells = cell_evaluations(plan, CONTROL_GROUP, variant, scale, dataset)
            cell = Cell(seeds(found_cells), published_cell(published, dataset, scale))
            rows.append(CalibrationRow(
                dataset, scale, cell, verdict(name, scale, [cell], tolerance, published=True),
                published_notes(published, dataset, scale),
                cross_checks(published, dataset, scale),
            ))  # fmt: skip
        scales = list(dict.fromkeys(scale for _dataset, scale in places))
        verdicts_ = []
        for scale in scales:
            cells = [r.cell for r in rows if r.scale == scale and r.cell.theirs]
            empty = None if cells else f"no published numbers at x{scale} to compare with"
            verdicts_.append(verdict(name, scale, cells, tolerance, True, empty))
        printed = (published.get("parameters") or {}).get("printed") or {}
        checks = [
            ParameterCheck(scale, model_parameters(variant, scale, params), printed.get(scale))
            for scale in scales
        ]
        recipe = (published.get("training") or {}).get("published") or {}
        entries = [
            (
                name,
                plan.run(e.run),
                float(recipe.get("epochs") or paper_epochs(reference, variant)[0]),
            )
            for e in evaluations
            if e.run
        ]
        label = demo_scale(entries, params, reference, recipe or None, "the published recipe")
        found.append(Calibration(variant, name, rows, verdicts_, checks, published, label))
    return found
