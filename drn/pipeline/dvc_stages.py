"""dvc.yaml, generated from the plan: ``drn plan --dvc > dvc.yaml``.

This module owns the DVC pipeline: which stages dvc.yaml has, their names, and each stage's
command, deps, params and outs. They are those of the Snakemake jobs (workflow/, which reads the
same plan); tests/test_workflow.py compares the two and fails when a committed dvc.yaml differs
from what this module makes of its params.yaml. No torch here.

**Stages.** ``fetch@SOURCE`` and ``downscale@SOURCE`` for every source the plan needs (the
report reads their data hashes in dvc.lock by these names), ``prepare@xSCALE`` for every scale
trained at, ``train-RUN`` for every trained run of the plan, ``train-RUN-stepN`` for its segment
up to each milestone N (the checkpoint a shorter run of the plan is), ``evaluate_bicubic@KEY``,
``evaluate@KEY`` and ``evaluate_milestone@KEY`` (a milestone's, which reads bicubic's score: its
verdict's floor) for every evaluation (KEY: ``{label}-x{scale}-{dataset}``),
``import_released@{variant}-x{scale}`` for the released weights whose file is there (the plan
leaves the others out: ``drn plan --dvc`` again once they are), ``summary``,
``report``. A group whose stages all have the same shape is one ``foreach`` over literal items;
training runs are explicit stages, as each tracks its own list of params (DVC templates strings,
not lists). DVC accepts a ``.`` in such names (``train-drn_x2_e0.2``; only ``dvc stage add``
refuses punctuation), so they are the plan's run names unchanged.

**Params.** Each stage tracks the settings that change its output: ``sources.NAME`` (fetch),
``downscaled.NAME`` (downscale), ``train.data.*`` and ``train.patch`` (prepare), the run's
:attr:`drn.pipeline.plan.Run.keys` present in params.yaml (train; DVC refuses a missing one), none
(evaluate, summary: their commands say it all) and the whole of params.yaml (report: it prints
params.yaml as used). A key DVC cannot address (a source name holding a ``.``, which DVC would
read as nesting) is tracked by its parent.

**Outs.** Data and checkpoints (model.pt) are cached; the decoded training cache is tracked but
not stored; training curves are plots, evaluation JSONs metrics, neither cached.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from drn.core.errors import UsageError
from drn.engine.releases import release_format
from drn.pipeline.packs import Pack, build_packs, pack_of
from drn.pipeline.params import source_path
from drn.pipeline.plan import Evaluation, Plan, Run, milestone_checkpoint
from drn.pipeline.settings import settings_from_params, training_data

HEADER = """\
# Generated from the params.yaml beside it by `drn plan --dvc > dvc.yaml`
# (drn/pipeline/dvc_stages.py): do not edit it by hand; run that again after changing params.yaml
# (a test fails while it is stale). The same jobs as workflow/Snakefile, for `dvc repro` and
# `dvc exp run`.
"""
PREPARE_KEYS = ("train.data.hr", "train.data.lr_prefix", "train.data.cache", "train.patch")
NOT_CACHED = {"cache": False}
# The templates of the foreach groups: `${key}` is the stage's key, `${item.X}` its item's X.
FETCH = {"cmd": "drn fetch ${key}", "params": ["${item.params}"], "outs": ["${item.out}"]}
DOWNSCALE = {**FETCH, "deps": ["${item.of}"]}
IMPORT = {
    "cmd": "drn import ${item.format} ${item.file} --scale ${item.scale} --out ${item.out} --track",
    "deps": ["${item.file}"],
    "outs": ["${item.out}"],
}
EVALUATE_BICUBIC = {
    "cmd": "${item.cmd}",
    "deps": ["${item.hr}"],
    "metrics": [{"${item.json}": NOT_CACHED}],
}
EVALUATE = {**EVALUATE_BICUBIC, "deps": ["${item.model}", "${item.hr}"]}
EVALUATE_MILESTONE = {
    **EVALUATE_BICUBIC,
    "deps": ["${item.model}", "${item.hr}", "${item.bicubic}"],
}


def dvc_yaml(params: dict[str, Any], plan: Plan) -> str:
    """The text of dvc.yaml for ``params`` (validated) and its ``plan``."""
    stages: dict[str, Any] = {}
    fetched, derived = _needed_sources(params, plan)
    if fetched:
        items = {
            n: {"params": _param_key("sources", n), "out": _source(params, n)} for n in fetched
        }
        stages["fetch"] = {"foreach": items, "do": FETCH}
    if derived:
        items = {
            name: {
                "params": _param_key("downscaled", name),
                "of": _source(params, params["downscaled"][name]["of"]),
                "out": _source(params, name),
            }
            for name in derived
        }
        stages["downscale"] = {"foreach": items, "do": DOWNSCALE}
    stages["prepare"] = _prepare(params, sorted({run.scale for run in plan.runs}))
    packs = build_packs(params, plan)
    for run in plan.trained_runs():
        if pack_of(packs, run.name) is None:
            stages.update((_stage_name(run, step), _train(params, plan, run, step))
                          for step in run.segments)  # fmt: skip
    for pack in packs:
        stages.update((_pack_stage_name(pack, until), _train_pack(params, plan, pack, until))
                      for until in pack.boundaries)  # fmt: skip
    if plan.present_released():
        stages["import_released"] = {"foreach": _imports(plan), "do": IMPORT}
    bicubic = [e for e in plan.evaluations if e.bicubic]
    models = _evaluations(params, plan, [e for e in plan.evaluations if not e.bicubic])
    milestones = {key: item for key, item in models.items() if "bicubic" in item}
    models = {key: item for key, item in models.items() if key not in milestones}
    for group, template, items in (
        ("evaluate_bicubic", EVALUATE_BICUBIC, _evaluations(params, plan, bicubic)),
        ("evaluate", EVALUATE, models),
        ("evaluate_milestone", EVALUATE_MILESTONE, milestones),  # + bicubic's score: its floor
    ):
        if items:
            stages[group] = {"foreach": items, "do": template}
    results, reports = params["paths"]["results"], params["paths"]["reports"]
    summary = [f"{results}/summary.md", f"{results}/summary.json"]
    evaluations = [e.path for e in plan.evaluations]
    stages["summary"] = {
        "cmd": "drn collect",
        "deps": evaluations,
        "outs": [{path: NOT_CACHED} for path in summary],
    }
    stages["report"] = {
        "cmd": "drn report",
        "deps": [*summary, *evaluations, *(run.model for run in plan.runs)],
        "params": [{"params.yaml": None}],  # all of it: the report prints params.yaml as used
        "outs": [{f"{reports}/report.{kind}": NOT_CACHED} for kind in ("html", "md")],
    }
    text = yaml.dump({"stages": stages}, Dumper=_Dumper, sort_keys=False, width=1000)
    return HEADER + re.sub(r"(?<!stages:)\n(  \S)", r"\n\n\1", text)  # a blank line between stages


def _stage_name(run: Run, step: int) -> str:
    """``train-RUN``, or ``train-RUN-step<N>`` for its segment up to milestone N."""
    return f"train-{run.name}" if step == run.iterations else f"train-{run.name}-step{step}"


def _train(params: dict[str, Any], plan: Plan, run: Run, step: int) -> dict[str, Any]:
    """The stage of `run`'s segment up to `step`: after its first, it depends on the checkpoint
    the one before kept and on that milestone's evaluations (``dvc repro`` runs one stage at a
    time: so the verdict comes before the rest of the run, which with train.stop_if_behind reads
    it); the last writes model.pt and the curves, the others their step's checkpoint."""
    settings = settings_from_params(params, run.variant, run.scale, run.epochs, run.loss, run.seed)
    gpus = params["resources"]["train"]["gpu"]
    until = "" if step == run.iterations else f" --until {step}"
    before = [s for s in run.milestones if s < step]
    deps = [settings.cache, *(p for p in (settings.val_hr, settings.init_from) if p)]
    if before:
        deps.append(milestone_checkpoint(run.directory, before[-1]))
        deps.extend(e.path for e in plan.milestone_evaluations(run.name, before[-1]))
    stage: dict[str, Any] = {
        "cmd": f"drn train --run {run.name}{until} --gpus {gpus} --if-changed restart",
        "deps": deps,
        "params": [key for key in run.keys if _present(params, key)],
    }
    if step != run.iterations:
        return stage | {"outs": [milestone_checkpoint(run.directory, step)]}
    return stage | {
        "outs": [run.model],
        "plots": [
            {f"{run.directory}/train_curve.csv": {"x": "step", "y": "loss", **NOT_CACHED}},
            {f"{run.directory}/val_curve.csv": {"x": "step", "y": "psnr", **NOT_CACHED}},
        ],
    }


def _pack_stage_name(pack: Pack, until: int) -> str:
    """``train-A+B``, or ``train-A+B-step<N>`` for its job up to boundary N."""
    last = until == pack.boundaries[-1]
    return f"train-{pack.name}" if last else f"train-{pack.name}-step{until}"


def _train_pack(params: dict[str, Any], plan: Plan, pack: Pack, until: int) -> dict[str, Any]:
    """The stage of `pack`'s job up to `until` (drn/pipeline/packs.py): its runs' stages in one,
    on one GPU; each run's output is its segment's (a checkpoint, or model.pt and curves)."""
    gpus = params["resources"]["train"]["gpu"]
    members = [plan.run(name) for name in pack.members(until)]
    lone = [_train(params, plan, run, min(until, run.iterations)) for run in members]
    before = pack.previous(until)
    deps = [dep for stage in lone for dep in stage["deps"]
            if before is None or "/checkpoints/" not in dep]  # fmt: skip
    if before is not None:  # the checkpoints the pack's job before kept, its milestones' verdicts
        deps += [milestone_checkpoint(run.directory, before) for run in members]
        deps += [e.path for run in members for e in plan.milestone_evaluations(run.name, before)]
    runs = " ".join(f"--run {run.name}" for run in members)
    return {
        "cmd": f"drn train {runs} --until {until} --gpus {gpus} --if-changed restart",
        "deps": list(dict.fromkeys(deps)),
        "params": list(dict.fromkeys(key for stage in lone for key in stage["params"])),
        "outs": [out for stage in lone for out in stage["outs"]],
        "plots": [plot for stage in lone for plot in stage.get("plots", [])],
    }


def _needed_sources(params: dict[str, Any], plan: Plan) -> tuple[list[str], list[str]]:
    """(sources, downscaled sources) that the plan reads, in params.yaml's order, as Snakemake
    fetches only those its jobs need."""
    wanted = {e.dataset for e in plan.evaluations}
    for scale in {run.scale for run in plan.runs}:
        hr, lr, _, _ = training_data(params, scale)
        wanted.update(Path(path).name for path in (hr, lr) if path)  # {paths.data}/NAME
    validation = params["train"]["validation"]["source"]
    if validation:
        wanted.add(validation)
    downscaled = params.get("downscaled") or {}
    pending = [name for name in wanted if name in downscaled]
    while pending:  # a downscaled source needs the one it is made of
        of = downscaled[pending.pop()]["of"]
        if of not in wanted:
            wanted.add(of)
            pending.extend([of] if of in downscaled else [])
    return [n for n in params["sources"] if n in wanted], [n for n in downscaled if n in wanted]


def _prepare(params: dict[str, Any], scales: list[int]) -> dict[str, Any]:
    items = {}
    for scale in scales:
        hr, lr, cache, _ = training_data(params, scale)
        items[f"x{scale}"] = {
            "scale": scale,
            "hr": hr,
            "cache": cache,
            **({"lr": lr} if lr else {}),
        }
    has_lr = bool(params["train"]["data"]["lr_prefix"])  # every scale's LR, or none
    template = {
        "cmd": "drn prepare --scale ${item.scale}",
        "deps": ["${item.hr}", *(["${item.lr}"] if has_lr else [])],
        "params": [key for key in PREPARE_KEYS if _present(params, key)],
        "outs": [{"${item.cache}": NOT_CACHED}],
    }
    return {"foreach": items, "do": template}


def _evaluations(params: dict[str, Any], plan: Plan, found: list[Evaluation]) -> dict[str, Any]:
    """The items of evaluation stages, keyed ``{label}-x{scale}-{dataset}``."""
    items: dict[str, Any] = {}
    for e in found:
        key = f"{e.label}-x{e.scale}-{e.dataset}"
        if key in items:
            raise UsageError(f"dvc.yaml: two evaluations would be stage {key}; rename a source")
        run = plan.run(e.run) if e.run else None
        model, hr = e.weights or (run.model if run else None), _source(params, e.dataset)
        milestone = run is not None and not run.trained
        cmd = (
            f"drn evaluate --model {model or 'bicubic'} --hr {hr} --scale {e.scale} "
            f"--json {e.path}{' --self-ensemble' if e.self_ensemble else ''}"
            f"{' --milestone' if milestone else ''}"
        )
        item = {"cmd": cmd, **({"model": model} if model else {}), "hr": hr, "json": e.path}
        if milestone:  # its verdict's floor where no published number exists: bicubic's score
            floor = plan.bicubic_of(e)
            item.update({"bicubic": floor.path} if floor else {})
        items[key] = item
    return items


def _imports(plan: Plan) -> dict[str, Any]:
    """The items of the import stages (released weights), keyed ``{variant}-x{scale}``."""
    return {
        f"{r.variant}-x{r.scale}": {"format": release_format(r.variant), "file": r.file,
                                     "scale": r.scale, "out": r.model}
        for r in plan.present_released()
    }  # fmt: skip


def _source(params: dict[str, Any], name: str) -> str:
    return str(source_path(params, name))


def _param_key(group: str, name: str) -> str:
    """``group.name``, or ``group`` where the name holds a dot (DVC would read it as nesting)."""
    return group if "." in name else f"{group}.{name}"


def _present(params: dict[str, Any], key: str) -> bool:
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as people write dvc.yaml; no YAML anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)
