"""The experiment plan: every training run and evaluation params.yaml asks for, defined once.

Snakemake (one training rule over run names, one evaluation rule over labels), dvc.yaml
(generated from it: ``drn plan --dvc``), the report and the ``drn`` command all read the plan;
none of them rebuilds a name or a path. No torch here: the workflow reads it to build its DAG.

**Runs.** ``main``: every model of ``evaluation.models`` at every scale, for
``train.epochs.<model>`` epochs with ``train.loss``. ``ablation``: each ``ablations.<name>`` trains
one run per arm (a model of ``models``, or a loss of ``losses`` of ``model``) for its ``epochs`` at
its ``scale``. Runs of identical settings are one run, trained once and shared. A run is named by
its settings: ``{variant}_x{scale}``, then ``_e{epochs}`` when its epochs are not
``train.epochs.<variant>``, ``_{loss}`` when its loss is not ``train.loss``; it lives in
``{paths.runs}/{name}`` and is the MLflow run of that name, tagged with its roles.

**Evaluations.** ``bicubic``, every ``{model}`` and ``{model}-ensemble`` (self-ensemble) at every
scale on every dataset (group ``table3``); each ablation arm as ``{ablation}-{arm}`` at its scale
on its dataset (group: the ablation's name). Each writes
``{paths.results}/eval/{label}/x{scale}/{dataset}.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from drn.errors import UsageError
from drn.settings import SETTING_KEYS

ROLES = ("main", "ablation", "control")
MAIN_GROUP = "table3"
BICUBIC = "bicubic"
ENSEMBLE_SUFFIX = "-ensemble"


@dataclass(frozen=True)
class Run:
    """One training run: what it trains, why (its roles) and where its files go."""

    name: str
    variant: str
    scale: int
    epochs: float
    loss: str
    seed: int
    roles: tuple[str, ...]  # of ROLES, in that order
    directory: str
    keys: tuple[str, ...]  # the params.yaml settings that change what it computes

    @property
    def role(self) -> str:
        return self.roles[0]

    @property
    def model(self) -> str:
        return f"{self.directory}/model.pt"


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: a run's model (or bicubic) on one dataset at one scale."""

    label: str
    group: str  # "table3", or the ablation's name
    arm: str  # the column: bicubic, a model, a model's -ensemble, an ablation's model or loss
    run: str | None  # None: bicubic
    scale: int
    dataset: str
    self_ensemble: bool
    path: str


@dataclass(frozen=True)
class Plan:
    runs: tuple[Run, ...]
    evaluations: tuple[Evaluation, ...]

    def run(self, name: str) -> Run:
        for run in self.runs:
            if run.name == name:
                return run
        known = ", ".join(r.name for r in self.runs) or "none"
        raise UsageError(f"no run {name!r} in the plan of params.yaml; it has: {known}")

    def evaluation(self, label: str, scale: int, dataset: str) -> Evaluation:
        for found in self.evaluations:
            if (found.label, found.scale, found.dataset) == (label, int(scale), dataset):
                return found
        raise UsageError(f"no evaluation {label} x{scale} on {dataset} in the plan of params.yaml")

    def group(self, name: str) -> list[Evaluation]:
        return [e for e in self.evaluations if e.group == name]

    def labels(self) -> list[str]:
        return sorted({e.label for e in self.evaluations})

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [asdict(r) | {"role": r.role, "model": r.model} for r in self.runs],
            "evaluations": [asdict(e) for e in self.evaluations],
        }


def eval_path(params: dict[str, Any], label: str, scale: int, dataset: str) -> str:
    """Where the evaluation ``label`` of ``dataset`` at ``scale`` writes its JSON."""
    return f"{params['paths']['results']}/eval/{label}/x{scale}/{dataset}.json"


def run_name(params: dict[str, Any], variant: str, scale: int, epochs: float | None = None,
             loss: str | None = None) -> str:  # fmt: skip
    """The name of the run of these settings (the defaults: ``train.epochs.<variant>``,
    ``train.loss``): ``{variant}_x{scale}`` plus what differs from the defaults."""
    train = params["train"]
    name = f"{variant}_x{scale}"
    if epochs is not None and float(epochs) != float(train["epochs"].get(variant, -1)):
        name += f"_e{float(epochs):g}"
    if loss is not None and loss != train["loss"]:
        name += f"_{loss}"
    return name


def run_directory(params: dict[str, Any], name: str) -> str:
    return f"{params['paths']['runs']}/{name}"


@dataclass(frozen=True)
class _Wanted:
    """A run as one user of it asks for it, before identical ones are merged."""

    variant: str
    scale: int
    epochs: float
    loss: str
    role: str
    keys: tuple[str, ...]  # where its epochs and loss come from


def _wanted_runs(params: dict[str, Any]) -> list[tuple[_Wanted, list[tuple[str, str, str, bool]]]]:
    """Every run each part of params.yaml asks for, with its evaluations (label, group, arm,
    self-ensemble)."""
    train, evaluation = params["train"], params["evaluation"]
    wanted = []
    for variant in evaluation["models"]:
        for scale in evaluation["scales"]:
            run = _Wanted(variant, scale, float(train["epochs"][variant]), train["loss"], "main",
                          (f"train.epochs.{variant}", "train.loss"))  # fmt: skip
            labels = [(variant, MAIN_GROUP, variant, False)]
            if variant in evaluation["ensemble_models"]:
                label = f"{variant}{ENSEMBLE_SUFFIX}"
                labels.append((label, MAIN_GROUP, label, True))
            wanted.append((run, labels))
    for name, spec in (params.get("ablations") or {}).items():
        epochs_key = f"ablations.{name}.epochs"
        if "losses" in spec:
            arms = [(spec["model"], loss, loss, (epochs_key, f"ablations.{name}.losses",
                                                 f"ablations.{name}.model"))
                    for loss in spec["losses"]]  # fmt: skip
        else:
            arms = [(model, train["loss"], model, (epochs_key, f"ablations.{name}.models",
                                                   "train.loss"))
                    for model in spec["models"]]  # fmt: skip
        for variant, loss, arm, keys in arms:
            run = _Wanted(variant, spec["scale"], float(spec["epochs"]), loss, "ablation", keys)
            wanted.append((run, [(f"{name}-{arm}", name, arm, False)]))
    return wanted


def _run_keys(params: dict[str, Any], variant: str, scale: int, own: set[str]) -> tuple[str, ...]:
    keys = set(own) | {"train.seed"}
    for sources in SETTING_KEYS.values():
        keys.update(key.format(variant=variant, scale=scale) for key in sources)
    if variant not in (params.get("models") or {}):
        keys.discard(f"models.{variant}")
    return tuple(sorted(keys))


def build_plan(params: dict[str, Any]) -> Plan:
    """The plan of validated ``params``: runs in the order first asked for, then evaluations."""
    seed = int(params["train"]["seed"])
    runs: dict[str, dict[str, Any]] = {}
    evaluations = []
    scales, datasets = params["evaluation"]["scales"], params["evaluation"]["datasets"]
    for scale in scales:
        for dataset in datasets:
            path = eval_path(params, BICUBIC, scale, dataset)
            evaluations.append(
                Evaluation(BICUBIC, MAIN_GROUP, BICUBIC, None, scale, dataset, False, path)
            )
    for wanted, labels in _wanted_runs(params):
        name = run_name(params, wanted.variant, wanted.scale, wanted.epochs, wanted.loss)
        entry = runs.setdefault(name, {"wanted": wanted, "roles": set(), "keys": set()})
        entry["roles"].add(wanted.role)
        entry["keys"].update(wanted.keys)
        for label, group, arm, ensemble in labels:
            on = datasets if group == MAIN_GROUP else [params["ablations"][group]["dataset"]]
            evaluations.extend(
                Evaluation(label, group, arm, name, wanted.scale, dataset, ensemble,
                           eval_path(params, label, wanted.scale, dataset))
                for dataset in on
            )  # fmt: skip
    planned = tuple(
        Run(name, e["wanted"].variant, e["wanted"].scale, e["wanted"].epochs, e["wanted"].loss,
            seed, tuple(r for r in ROLES if r in e["roles"]), run_directory(params, name),
            _run_keys(params, e["wanted"].variant, e["wanted"].scale, e["keys"]))
        for name, e in runs.items()
    )  # fmt: skip
    return Plan(planned, tuple(evaluations))
