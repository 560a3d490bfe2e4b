"""The experiment plan: every training run and evaluation params.yaml asks for, defined once.

Snakemake (one training rule over run names, one evaluation rule over labels), dvc.yaml
(generated from it: ``drn plan --dvc``), the report and the ``drn`` command all read the plan;
none of them rebuilds a name or a path. No torch here: the workflow reads it to build its DAG.

**Runs.** ``main``: every model of ``evaluation.models`` at every scale, for
``train.epochs.<model>`` epochs with ``train.loss``. ``control``: every model of ``controls``,
likewise (a published model that calibrates the pipeline). ``ablation``: each
``ablations.<name>`` trains one run per arm (a model of ``models``, or a loss of ``losses`` of
``model``) for its ``epochs`` at its ``scale``. Each of these is trained once per seed of
``train.seeds``. Runs of identical settings are one run, trained once and shared. A run is named by
its settings: ``{variant}_x{scale}``, then ``_e{epochs}`` when its epochs are not
``train.epochs.<variant>``, ``_{loss}`` when its loss is not ``train.loss``, ``_s{seed}`` when its
seed is not 0; it lives in ``{paths.runs}/{name}`` and is the MLflow run of that name, tagged
with its roles.

**Evaluations.** ``bicubic``, every ``{model}`` and ``{model}-ensemble`` (self-ensemble) at every
scale on every dataset (group ``table3``), every control likewise (group ``calibration``); each
ablation arm as ``{ablation}-{arm}`` at its scale on its dataset (group: the ablation's name).
A run of seed s > 0 is evaluated as ``{label}_s{s}``. Each writes
``{paths.results}/eval/{label}/x{scale}/{dataset}.json``.

**Released weights.** Each file of ``controls_released`` at a scale of ``evaluation.scales`` is
imported (``drn import``) to ``{paths.runs}/released/{variant}_x{scale}.pt`` and evaluated on
every dataset as ``{variant}-released`` (group ``released``), without training; a file that is
not there is left out (``Plan.missing_released``: ``drn plan`` warns, ``drn doctor`` fails).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from drn.core.errors import UsageError
from drn.engine.releases import releases
from drn.engine.settings import is_prefix
from drn.pipeline.settings import SETTING_KEYS, seeds_of, settings_from_params

ROLES = ("main", "ablation", "control")
MAIN_GROUP = "table3"
CONTROL_GROUP = "calibration"
RELEASED_GROUP = "released"
RELEASED_SUFFIX = "-released"
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
    directory: str  # of a served run: the directory of the run serving it
    keys: tuple[str, ...]  # the params.yaml settings that change what it computes
    iterations: int = 0
    served_by: str | None = None  # the longer run whose checkpoint at `iterations` this run is
    milestones: tuple[int, ...] = ()  # of a trained run: the steps it keeps (ascending)

    @property
    def role(self) -> str:
        return self.roles[0]

    @property
    def trained(self) -> bool:
        return self.served_by is None

    @property
    def model(self) -> str:
        """The weights it is evaluated with: model.pt, or the serving run's kept checkpoint."""
        if self.served_by is not None:
            return milestone_checkpoint(self.directory, self.iterations)
        return f"{self.directory}/model.pt"

    @property
    def segments(self) -> tuple[int, ...]:
        """The steps a trained run's segments end at: its milestones, then its last step."""
        return (*self.milestones, self.iterations)


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
    seed: int = 0  # of the run
    weights: str | None = None  # released weights (run None): the imported checkpoint

    @property
    def bicubic(self) -> bool:
        return self.run is None and self.weights is None


@dataclass(frozen=True)
class Released:
    """A model's weights as its authors released them (params.yaml ``controls_released``): the
    file as downloaded, and the drn checkpoint the DAG imports it to (``drn import``)."""

    variant: str
    scale: int
    file: str  # as params.yaml names it
    model: str  # the imported checkpoint
    present: bool  # the file is there: imported and evaluated; else left out of the plan
    url: str  # where the authors publish it (drn/reference)

    @property
    def key(self) -> str:
        return f"controls_released.{self.variant}.x{self.scale}"

    @property
    def missing(self) -> str:
        """Why it is left out of the plan, and where to get it, in one line."""
        return (f"{self.key}: {self.file} is not there: its evaluations are left out of the "
                f"plan; download it from {self.url}")  # fmt: skip

    @property
    def label(self) -> str:
        return f"{self.variant}{RELEASED_SUFFIX}"


@dataclass(frozen=True)
class Plan:
    runs: tuple[Run, ...]
    evaluations: tuple[Evaluation, ...]
    released: tuple[Released, ...] = ()  # of the plan's scales, present or not

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

    def present_released(self) -> list[Released]:
        return [r for r in self.released if r.present]

    def missing_released(self) -> list[Released]:
        """The released weights left out of the plan: their file is not there."""
        return [r for r in self.released if not r.present]

    def trained_runs(self) -> list[Run]:
        return [run for run in self.runs if run.trained]

    def served_runs(self, by: str | None = None) -> list[Run]:
        """The runs served by another's checkpoint (by run `by` only, if given): by serving run,
        in the plan's order, then by step."""
        order = {run.name: index for index, run in enumerate(self.runs)}
        served = [r for r in self.runs if r.served_by and by in (None, r.served_by)]
        return sorted(served, key=lambda r: (order[r.served_by or ""], r.iterations))

    def bicubic_of(self, evaluation: Evaluation) -> Evaluation | None:
        """The plan's bicubic evaluation of `evaluation`'s dataset and scale (a milestone's
        floor), None: none."""
        where = (evaluation.scale, evaluation.dataset)
        return next((e for e in self.evaluations
                     if e.bicubic and (e.scale, e.dataset) == where), None)  # fmt: skip

    def milestone_evaluations(self, of: str, step: int | None = None) -> list[Evaluation]:
        """The evaluations of the runs that run `of` serves (at `step` only, if given)."""
        served = {r.name for r in self.served_runs(of) if step in (None, r.iterations)}
        return [e for e in self.evaluations if e.run in served]

    def group(self, name: str) -> list[Evaluation]:
        return [e for e in self.evaluations if e.group == name]

    def labels(self) -> list[str]:
        return sorted({e.label for e in self.evaluations})

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [
                asdict(r) | {"role": r.role, "model": r.model, "trained": r.trained}
                for r in self.runs
            ],
            "evaluations": [asdict(e) for e in self.evaluations],
            "released": [asdict(r) | {"label": r.label} for r in self.released],
        }


def eval_path(params: dict[str, Any], label: str, scale: int, dataset: str) -> str:
    """Where the evaluation ``label`` of ``dataset`` at ``scale`` writes its JSON."""
    return f"{params['paths']['results']}/eval/{label}/x{scale}/{dataset}.json"


def run_name(params: dict[str, Any], variant: str, scale: int, epochs: float | None = None,
             loss: str | None = None, seed: int = 0) -> str:  # fmt: skip
    """The name of the run of these settings (the defaults: ``train.epochs.<variant>``,
    ``train.loss``, seed 0): ``{variant}_x{scale}`` plus what differs from the defaults."""
    train = params["train"]
    name = f"{variant}_x{scale}"
    if epochs is not None and float(epochs) != float(train["epochs"].get(variant, -1)):
        name += f"_e{float(epochs):g}"
    if loss is not None and loss != train["loss"]:
        name += f"_{loss}"
    return f"{name}_s{seed}" if seed else name


def seeded(label: str, seed: int) -> str:
    """The label of an evaluation of a run trained with ``seed`` (seed 0: the label itself)."""
    return f"{label}_s{seed}" if seed else label


def run_directory(params: dict[str, Any], name: str) -> str:
    return f"{params['paths']['runs']}/{name}"


def released_checkpoint(params: dict[str, Any], variant: str, scale: int | str) -> str:
    """Where the DAG imports ``variant``'s released weights of ``scale`` to."""
    return f"{params['paths']['runs']}/released/{variant}_x{scale}.pt"


def milestone_checkpoint(directory: str, step: int) -> str:
    """The checkpoint a run keeps at `step`, for the runs it serves."""
    return f"{directory}/checkpoints/step_{step}.pt"


def milestone_passed(directory: str, step: int) -> bool:
    """Whether the run in `directory` is past `step` without having kept its checkpoint there
    (it ran before the milestone was planned): its progress.json's checkpoint step, read
    without torch; a missing or unreadable file says no."""
    if Path(milestone_checkpoint(directory, step)).is_file():
        return False
    if Path(f"{directory}/model.pt").is_file():  # finished: past every step before its last
        return True
    try:
        progress = json.loads(Path(f"{directory}/progress.json").read_text())
        return int(progress.get("checkpoint_step") or 0) > step
    except (OSError, ValueError, TypeError, AttributeError):
        return False


@dataclass(frozen=True)
class _Wanted:
    """A run as one part of params.yaml asks for it (before seeds), and what it is evaluated
    for: (label, group, arm, self-ensemble, datasets)."""

    variant: str
    scale: int
    epochs: float
    loss: str
    role: str
    keys: tuple[str, ...]  # where its epochs and loss come from
    evaluations: tuple[tuple[str, str, str, bool, tuple[str, ...]], ...]


def _wanted_runs(params: dict[str, Any]) -> list[_Wanted]:
    """Every run the main table, the controls and the ablations of params.yaml ask for."""
    train, evaluation = params["train"], params["evaluation"]
    datasets = tuple(evaluation["datasets"])
    wanted = []
    for variant in evaluation["models"]:
        labels = [(variant, MAIN_GROUP, variant, False, datasets)]
        if variant in evaluation["ensemble_models"]:
            label = f"{variant}{ENSEMBLE_SUFFIX}"
            labels.append((label, MAIN_GROUP, label, True, datasets))
        keys = (f"train.epochs.{variant}", "train.loss")
        wanted.extend(
            _Wanted(variant, scale, float(train["epochs"][variant]), train["loss"], "main", keys,
                    tuple(labels))
            for scale in evaluation["scales"]
        )  # fmt: skip
    for variant in params.get("controls") or []:
        labels = ((variant, CONTROL_GROUP, variant, False, datasets),)
        keys = (f"train.epochs.{variant}", "train.loss")
        wanted.extend(
            _Wanted(variant, scale, float(train["epochs"][variant]), train["loss"], "control",
                    keys, labels)
            for scale in evaluation["scales"]
        )  # fmt: skip
    for name, spec in (params.get("ablations") or {}).items():
        epochs_key, on = f"ablations.{name}.epochs", (spec["dataset"],)
        if "losses" in spec:
            arms = [(spec["model"], loss, loss, (epochs_key, f"ablations.{name}.losses",
                                                 f"ablations.{name}.model"))
                    for loss in spec["losses"]]  # fmt: skip
        else:
            arms = [(model, train["loss"], model, (epochs_key, f"ablations.{name}.models",
                                                   "train.loss"))
                    for model in spec["models"]]  # fmt: skip
        wanted.extend(
            _Wanted(variant, spec["scale"], float(spec["epochs"]), loss, "ablation", keys,
                    ((f"{name}-{arm}", name, arm, False, on),))
            for variant, loss, arm, keys in arms
        )  # fmt: skip
    return wanted


def _run_keys(params: dict[str, Any], variant: str, scale: int, own: set[str]) -> tuple[str, ...]:
    keys = set(own)
    for sources in SETTING_KEYS.values():
        keys.update(key.format(variant=variant, scale=scale) for key in sources)
    if variant not in (params.get("models") or {}):
        keys.discard(f"models.{variant}")
    return tuple(sorted(keys))


def build_plan(
    params: dict[str, Any],
    passed: Callable[[str, int], bool] | None = milestone_passed,
    present: Callable[[str], bool] = os.path.isfile,
) -> Plan:
    """The plan of validated ``params``: runs in the order first asked for (each seed of a run
    after the other), bicubic's evaluations, then the runs', then the released weights' of the
    files that ``present`` says are there. A run that is the first steps of a longer one is
    served by it (:func:`_serve`), unless ``passed(directory, step)`` says the longer run went
    past that step without keeping its checkpoint (None: never asked; the default reads the run
    directories)."""
    runs: dict[str, dict[str, Any]] = {}
    evaluations = [
        Evaluation(BICUBIC, MAIN_GROUP, BICUBIC, None, scale, dataset, False,
                   eval_path(params, BICUBIC, scale, dataset))
        for scale in params["evaluation"]["scales"]
        for dataset in params["evaluation"]["datasets"]
    ]  # fmt: skip
    for wanted in _wanted_runs(params):
        for seed in seeds_of(params, wanted.variant):
            name = run_name(params, wanted.variant, wanted.scale, wanted.epochs, wanted.loss, seed)
            entry = runs.setdefault(name, {"wanted": wanted, "seed": seed, "roles": set(),
                                           "keys": set()})  # fmt: skip
            entry["roles"].add(wanted.role)
            entry["keys"].update(wanted.keys)
            for label, group, arm, ensemble, datasets in wanted.evaluations:
                label = seeded(label, seed)
                evaluations.extend(
                    Evaluation(label, group, arm, name, wanted.scale, dataset, ensemble,
                               eval_path(params, label, wanted.scale, dataset), seed)
                    for dataset in datasets
                )  # fmt: skip
    planned = tuple(
        Run(name, e["wanted"].variant, e["wanted"].scale, e["wanted"].epochs, e["wanted"].loss,
            e["seed"], tuple(r for r in ROLES if r in e["roles"]), run_directory(params, name),
            _run_keys(params, e["wanted"].variant, e["wanted"].scale, e["keys"]))
        for name, e in runs.items()
    )  # fmt: skip
    released = _released(params, present)
    evaluations.extend(
        Evaluation(r.label, RELEASED_GROUP, r.variant, None, r.scale, dataset, False,
                   eval_path(params, r.label, r.scale, dataset), weights=r.model)
        for r in released if r.present
        for dataset in params["evaluation"]["datasets"]
    )  # fmt: skip
    return Plan(_serve(params, planned, passed), tuple(evaluations), released)


def _released(params: dict[str, Any], present: Callable[[str], bool]) -> tuple[Released, ...]:
    """controls_released at the plan's scales (evaluation.scales), in scale order."""
    scales, found = params["evaluation"]["scales"], []
    for variant, files in (params.get("controls_released") or {}).items():
        known = releases(variant)
        for key, file in sorted(files.items(), key=lambda item: int(item[0][1:])):
            scale = int(key[1:])
            if scale in scales:
                found.append(Released(variant, scale, file,
                                      released_checkpoint(params, variant, scale), present(file),
                                      known[scale].url))  # fmt: skip
    return tuple(found)


def _serve(params: dict[str, Any], runs: tuple[Run, ...],
           passed: Callable[[str, int], bool] | None) -> tuple[Run, ...]:  # fmt: skip
    """Milestones: a run whose settings are the first steps of a longer run's
    (:func:`drn.engine.settings.is_prefix`: same variant, scale, loss, seed, data, init_from and
    schedule) is that run's checkpoint at its last step, not trained; the longest such run
    serves all the others and keeps a checkpoint at each of their steps. Only the served runs
    depend on the others' settings: the serving run's own settings (what its job's params are)
    do not change."""
    settings = {r.name: settings_from_params(params, r.variant, r.scale, r.epochs, r.loss, r.seed)
                for r in runs}  # fmt: skip
    sized = [replace(r, iterations=settings[r.name].iterations) for r in runs]
    serving: dict[str, Run] = {}
    for run in sized:
        longer = [o for o in sized if is_prefix(settings[run.name], settings[o.name])]
        if longer:
            longest = max(longer, key=lambda o: o.iterations)
            if passed is None or not passed(longest.directory, run.iterations):
                serving[run.name] = longest
    steps: dict[str, set[int]] = {}
    for name, by in serving.items():
        steps.setdefault(by.name, set()).add(next(r for r in sized if r.name == name).iterations)
    return tuple(
        replace(r, served_by=serving[r.name].name, directory=serving[r.name].directory)
        if r.name in serving
        else replace(r, milestones=tuple(sorted(steps.get(r.name, ()))))
        for r in sized
    )
