"""What the training runs of the plan cost before they are launched (a projection, not measured).

This module owns that projection: reading the GPU throughput recorded in
``drn/reference/gpu_throughput.yaml`` (figures transcribed from ``docs/perf/*.json``), choosing the
figure each run rests on and saying which (its *basis*), and the arithmetic: a run's iterations
(``drn.pipeline.settings``), its hours at that rate, and its GPU-hours. ``drn plan --cost`` prints
:func:`estimate_plan`; the report sets :func:`estimate` of a run beside what it measured.

**Basis** of a run of ``variant`` at ``scale``, when params.yaml trains that variant at the sizes,
batch and patch it was measured with: the measurement of the variant that is (1) a full engine
step (``drn train``) rather than a model step alone, (2) at the nearest scale, (3) the slower on a
tie. At the run's own scale it is *measured*; at another it is *derived* from that scale. Any other
run (a variant never measured, other sizes, batch or patch) is *derived* from a measured variant
(the same one, or else the one nearest in FLOPs) by the ratio of training FLOPs: forward FLOPs of
a batch of training patches (``drn.models.complexity.forward_flops`` on the meta device; backward
is about twice forward for every model, so the ratio is the training one). Only that needs torch.

**GPU-hours** = iterations / (iterations per second) / 3600 x ``resources.train.gpu``. No
multi-GPU rate was measured, so a run on several GPUs is not assumed faster than on one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from drn.pipeline.params import model_sizes, setting
from drn.pipeline.settings import settings_from_params

if TYPE_CHECKING:
    from drn.pipeline.plan import Plan, Run

THROUGHPUT = Path(__file__).resolve().parents[1] / "reference" / "gpu_throughput.yaml"
ENGINE = "full engine step"
MODEL_STEP = "model step only"
MEASURED = "measured"
FROM_SCALE = "derived: another scale"
FROM_FLOPS = "derived: FLOPs"
PROJECTION = "a projection from recorded GPU throughput, not a measurement"


@dataclass(frozen=True)
class Measurement:
    """One recorded throughput figure (an entry of gpu_throughput.yaml)."""

    id: str
    variant: str
    scale: int
    iterations_per_s: float  # 1000 / ms_per_step where the step time was recorded
    measured: str  # ENGINE or MODEL_STEP
    mode: str
    batch: int
    patch: int
    card: str
    date: str
    command: str
    document: str
    section: str
    source: (
        str  # the JSON and where in it, e.g. "docs/perf/gpu_train_h100.json train.steady_it_per_s"
    )
    runs_per_gpu: int = 1  # > 1: each run's rate with that many runs packed on the GPU

    @property
    def engine(self) -> bool:
        return self.measured == ENGINE

    def cite(self) -> str:
        return f'{self.card}, {self.date}; {self.document}, "{self.section}"; {self.source}'


@dataclass(frozen=True)
class Rate:
    """Iterations per second of one variant at one scale under params.yaml, and why."""

    iterations_per_s: float
    kind: str  # MEASURED, FROM_SCALE or FROM_FLOPS
    basis: str  # "measured: ..." or "derived: ...", with the ids of the measurements in brackets
    sources: tuple[str, ...]  # ids of the measurements its basis names


@dataclass(frozen=True)
class RunCost:
    """The projected cost of one run of the plan."""

    run: str
    roles: tuple[str, ...]
    variant: str
    scale: int
    iterations: int
    iterations_per_s: float
    gpus: int  # resources.train.gpu
    hours: float  # iterations at that rate on one GPU
    gpu_hours: float  # hours x gpus
    measured: bool  # False: derived (kind says how, basis in full)
    kind: str  # MEASURED, FROM_SCALE (the variant's rate at another scale) or FROM_FLOPS
    basis: str  # which figure, measured where, and how it was derived
    sources: tuple[str, ...]  # ids of the measurements of gpu_throughput.yaml its basis names


@dataclass(frozen=True)
class Total:
    runs: int
    iterations: int
    hours: float
    gpu_hours: float
    gpu_hours_by_role: dict[str, float] = field(default_factory=dict)  # by each run's first role


@dataclass(frozen=True)
class PlanCost:
    runs: tuple[RunCost, ...]
    total: Total
    sources: tuple[Measurement, ...]  # the measurements the runs' bases name
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "projection": PROJECTION,
            "throughput": "drn/reference/gpu_throughput.yaml",
            "runs": [asdict(cost) for cost in self.runs],
            "total": asdict(self.total),
            "sources": [asdict(m) for m in self.sources],
            "notes": list(self.notes),
        }


@functools.lru_cache(maxsize=4)
def measurements(path: str | Path = THROUGHPUT) -> tuple[Measurement, ...]:
    """Every figure of gpu_throughput.yaml, as iterations per second."""
    entries = yaml.safe_load(Path(path).read_text())["measurements"]
    found = []
    for e in entries:
        rate = e["iterations_per_s"] if "iterations_per_s" in e else 1000.0 / e["ms_per_step"]
        source = e["source"]
        where = source.get("key", "")
        if "row" in source:
            row = ", ".join(f"{k}={v}" for k, v in source["row"].items())
            where = f"row {row}, {where}"
        found.append(Measurement(
            e["id"], e["variant"], int(e["scale"]), float(rate), e["measured"], e["mode"],
            int(e["batch"]), int(e["patch"]), e["card"], str(e["date"]), e["command"],
            e["document"], e["section"], f"{source['file']} {where}", int(e.get("runs_per_gpu", 1)),
        ))  # fmt: skip
    return tuple(found)


def rate(params: dict[str, Any], variant: str, scale: int) -> Rate:
    """The projected training rate of ``variant`` at ``scale`` under ``params`` (module docstring:
    how the figure is chosen or derived)."""
    table = [m for m in measurements() if m.runs_per_gpu == 1]
    own = [m for m in table if m.variant == variant]
    batch, patch = int(setting(params, "train.batch")), int(setting(params, "train.patch"))
    if own:
        found, chosen = _of_variant(own, scale)
        if (batch, patch) == (chosen.batch, chosen.patch) and _measured_sizes(params, variant):
            return found
        reference = variant
    else:
        this = _flops(variant, _sizes(params, variant), scale, batch, patch)
        variants = sorted({m.variant for m in table})
        reference = min(
            variants, key=lambda v: abs(math.log(_flops(v, (), scale, batch, patch) / this))
        )
    found, chosen = _of_variant([m for m in table if m.variant == reference], scale)
    theirs = _flops(reference, (), scale, chosen.batch, chosen.patch)
    ours = _flops(variant, _sizes(params, variant), scale, batch, patch)
    which = f", {reference} being the measured variant nearest in FLOPs"
    which = "" if reference == variant else which
    sizes = ", ".join(f"{k}={v}" for k, v in _sizes(params, variant)) or "registered sizes"
    basis = (
        f"derived: {reference} x{scale}'s rate{which} ({found.basis}) x {theirs / ours:.3f}, the"
        f" ratio of training FLOPs of {reference} as measured (batch {chosen.batch},"
        f" {chosen.patch}x{chosen.patch} patches, registered sizes) to {variant} as params.yaml"
        f" trains it (batch {batch}, {patch}x{patch} patches, {sizes}; forward FLOPs counted on"
        " the meta device)"
    )
    return Rate(found.iterations_per_s * theirs / ours, FROM_FLOPS, basis, found.sources)


def estimate(params: dict[str, Any], run: Run) -> RunCost:
    """The projected cost of ``run`` (a run of ``drn.pipeline.plan.build_plan(params)``; by name:
    ``estimate(params, build_plan(params).run(name))``)."""
    iterations = settings_from_params(
        params, run.variant, run.scale, run.epochs, run.loss, run.seed
    ).iterations
    found = rate(params, run.variant, run.scale)
    gpus = int(setting(params, "resources.train.gpu"))
    hours = iterations / found.iterations_per_s / 3600
    return RunCost(
        run.name, tuple(run.roles), run.variant, run.scale, iterations, found.iterations_per_s,
        gpus, hours, hours * gpus, found.kind == MEASURED, found.kind, found.basis, found.sources,
    )  # fmt: skip


def total(costs: list[RunCost] | tuple[RunCost, ...]) -> Total:
    """The sum of ``costs``, with the GPU-hours of each role (a run counts under its first)."""
    by_role: dict[str, float] = {}
    for cost in costs:
        role = cost.roles[0] if cost.roles else "run"
        by_role[role] = by_role.get(role, 0.0) + cost.gpu_hours
    return Total(
        len(costs), sum(c.iterations for c in costs), sum(c.hours for c in costs),
        sum(c.gpu_hours for c in costs), by_role,
    )  # fmt: skip


def estimate_plan(params: dict[str, Any], plan: Plan | None = None) -> PlanCost:
    """The projected cost of every trained run of the plan of ``params`` (a milestone, served by
    another run's checkpoint, costs nothing), their total, the measurements they rest on and what
    the projection leaves out."""
    if plan is None:
        from drn.pipeline.plan import build_plan

        plan = build_plan(params)
    from drn.pipeline.packs import build_packs, pack_of

    packs = build_packs(params, plan)
    costs = []
    for run in plan.trained_runs():
        cost, pack = estimate(params, run), pack_of(packs, run.name)
        found = _packed(params, cost, len(pack.runs)) if pack else None
        if found is not None:
            k, hours = found.runs_per_gpu, cost.iterations / found.iterations_per_s / 3600
            cost = replace(
                cost, iterations_per_s=found.iterations_per_s, hours=hours,
                gpu_hours=hours * cost.gpus / k, measured=True, kind=MEASURED, sources=(found.id,),
                basis=f"measured packed: {found.variant} x{found.scale}, {k} runs on one GPU, "
                f"each at this rate, a 1/{k} share of its GPU-hours [{found.id}]",
            )  # fmt: skip
        costs.append(cost)
    costs = tuple(costs)
    used = {i for c in costs for i in c.sources}
    sources = tuple(m for m in measurements() if m.id in used)
    return PlanCost(costs, total(costs), sources, _notes(params, costs, sources, plan))


def _packed(params: dict[str, Any], cost: RunCost, runs: int) -> Measurement | None:
    """The measured full-engine rate of one run of `cost`'s variant and scale packed `runs` to a
    GPU, at params.yaml's sizes; None where none was measured."""
    batch, patch = int(setting(params, "train.batch")), int(setting(params, "train.patch"))
    return next((m for m in measurements()
                 if (m.variant, m.scale, m.runs_per_gpu, m.batch, m.patch)
                 == (cost.variant, cost.scale, runs, batch, patch)
                 and m.engine and _measured_sizes(params, cost.variant)), None)  # fmt: skip


def _of_variant(own: list[Measurement], scale: int) -> tuple[Rate, Measurement]:
    """The rate of a measured variant at ``scale`` from its own measurements (at its sizes)."""
    chosen = min(own, key=lambda m: (not m.engine, abs(m.scale - scale), m.iterations_per_s))
    what = f"{chosen.variant} x{chosen.scale}, {chosen.measured}"
    if not chosen.engine:
        what += " (the engine adds the optimizer and data: somewhat slower)"
    what += f", {chosen.iterations_per_s:.1f} it/s [{chosen.id}]"
    if chosen.scale == scale:
        return Rate(chosen.iterations_per_s, MEASURED, f"measured: {what}", (chosen.id,)), chosen
    why = f"x{scale} not measured"
    if sum(1 for m in own if m.engine == chosen.engine and
           abs(m.scale - scale) == abs(chosen.scale - scale)) > 1:  # fmt: skip
        why += ", the slower of the nearest measured scales"
    passed = [m for m in own if m.scale == scale]
    if passed:
        why = f"at x{scale} only the model step was measured [{passed[0].id}]"
    basis = f"derived: {what}; {why}"
    named = (chosen.id, *(m.id for m in passed))
    return Rate(chosen.iterations_per_s, FROM_SCALE, basis, named), chosen


def _sizes(params: dict[str, Any], variant: str) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(model_sizes(params, variant).items()))


def _measured_sizes(params: dict[str, Any], variant: str) -> bool:
    """Whether params.yaml trains ``variant`` at its registered sizes (those measured)."""
    sizes = model_sizes(params, variant)
    if not sizes:
        return True
    from drn.models import get_variant, resolve_config

    return resolve_config(variant, **sizes) == get_variant(variant).config


@functools.lru_cache(maxsize=256)
def _flops(variant: str, sizes: tuple[tuple[str, Any], ...], scale: int, batch: int,
           patch: int) -> int:  # fmt: skip
    """Forward FLOPs of a batch of training patches, counted on the meta device."""
    import torch

    from drn.models import build_model
    from drn.models.complexity import forward_flops

    with torch.device("meta"):
        model = build_model(variant, scale, **dict(sizes))
    return forward_flops(model, patch, patch, batch)


def _notes(params: dict[str, Any], costs: tuple[RunCost, ...], sources: tuple[Measurement, ...],
           plan: Plan) -> tuple[str, ...]:  # fmt: skip
    from drn.pipeline.packs import build_packs

    gpus = int(setting(params, "resources.train.gpu"))
    notes = [
        f"This is {PROJECTION}. The rates are steady training rates: compilation, validation "
        "passes, checkpoint writes and restarts add time.",
        f"GPU-hours = iterations / rate / 3600 x resources.train.gpu ({gpus}). A run on several "
        "GPUs is not assumed faster than on one: no multi-GPU rate has been measured.",
    ]
    if gpus == 0:
        notes.append(
            "resources.train.gpu is 0: the runs train on CPUs, so no GPU-hours; the hours are "
            "those of one GPU."
        )
    cards = ", ".join(sorted({m.card for m in sources}))
    gpu_model = setting(params, "resources.train").get("gpu_model")
    if gpu_model:
        notes.append(
            f"resources.train.gpu_model is {gpu_model}; the figures are the {cards}'s, not "
            "converted."
        )
    if any(c.kind == FROM_FLOPS for c in costs):
        notes.append(
            "A rate derived from FLOPs assumes time scales with arithmetic. At the paper's batch "
            'DRN\'s step is launch-bound (docs/PERFORMANCE.md, "DRN training step on an H100"): '
            "a smaller model gains less than its FLOPs ratio says."
        )
    packs = build_packs(params, plan)
    if packs:
        members = {name for pack in packs for name in pack.runs}
        lone = [
            c.run for c in costs if c.run in members and not c.basis.startswith("measured packed")
        ]
        notes.append(
            f"resources.train.pack is {setting(params, 'resources.train.pack')}: {len(members)} of "
            f"the {len(costs)} runs train in {len(packs)} packs, several runs on one GPU (drn "
            "plan). A packed run is costed at a packed rate only where one is recorded in "
            "gpu_throughput.yaml (benchmarks/gpu_pack.py measures it)"
            + (f"; none is for {', '.join(lone)}: costed at the rate alone on one GPU, as if not "
               "packed." if lone else ".")
        )  # fmt: skip
    if str(setting(params, "train.compile")) == "off" and any(m.engine for m in sources):
        notes.append(
            "train.compile is off; the full-engine figures were measured with compile auto "
            "(torch.compile + CUDA graphs): an eager run is slower."
        )
    return tuple(notes)
