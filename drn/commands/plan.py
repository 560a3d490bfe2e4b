"""``drn plan``: every training run and evaluation params.yaml asks for; ``--cost`` its GPU-hours.

Also ``drn plan --dvc``, the dvc.yaml of the plan's stages, written as is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.table import Table

from drn.commands.options import add_params_option, read_params
from drn.commands.output import print_whole, say, warn
from drn.core.errors import UsageError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plan", help="every training run and evaluation params.yaml asks for",
        description="Print the experiment plan of params.yaml: the training runs (identical "
        "ones merged; a run that is the first steps of a longer one is that run's checkpoint at "
        "that step, a milestone) and the evaluations, with their files; with --cost, each "
        "trained run's iterations and projected GPU-hours instead.",
    )  # fmt: skip
    add_params_option(parser)
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="as JSON, for scripts")
    output.add_argument(
        "--dvc", action="store_true",
        help="as the dvc.yaml of its stages (drn plan --dvc > dvc.yaml; never edit it by hand)",
    )  # fmt: skip
    parser.add_argument(
        "--cost", action="store_true",
        help="each run's iterations and GPU-hours, and their total: a projection from the GPU "
        "throughput recorded in drn/reference/gpu_throughput.yaml (with --json: as JSON)",
    )  # fmt: skip
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    import json

    from drn.pipeline.plan import build_plan

    params = read_params(args.params)
    plan = build_plan(params)
    for released in plan.missing_released():
        warn(released.missing)
    if args.cost and args.dvc:
        raise UsageError("drn plan: --cost prints tables (or --json), not dvc.yaml")
    if args.cost:
        _print_cost(params, plan, args.json)
        return
    if args.dvc:
        from drn.pipeline.dvc_stages import dvc_yaml

        sys.stdout.write(dvc_yaml(params, plan))  # as is: no console markup or wrapping
        return
    if args.json:
        say(json.dumps(plan.to_json(), indent=2))
        return
    trained = plan.trained_runs()
    runs = Table(title=f"{len(trained)} training runs", title_justify="left")
    columns = (
        "run",
        "roles",
        "model",
        "scale",
        "epochs",
        "loss",
        "seed",
        "milestones",
        "directory",
    )
    for column in columns:
        runs.add_column(column, justify="right" if column in ("scale", "epochs") else "left")
    for r in trained:
        kept = ", ".join(f"{s:,}" for s in r.milestones)
        runs.add_row(r.name, ", ".join(r.roles), r.variant, f"x{r.scale}", f"{r.epochs:g}",
                     r.loss, str(r.seed), kept, r.directory)  # fmt: skip
    print_whole(runs)
    _print_packs(params, plan)
    served = plan.served_runs()
    if served:
        milestones = Table(
            title=f"{len(served)} runs served by milestones of others (not trained: the first "
            "steps of a longer run, its checkpoint at that step)", title_justify="left",
        )  # fmt: skip
        for column in ("run", "roles", "is run", "at step", "checkpoint"):
            milestones.add_column(column, justify="right" if column == "at step" else "left")
        for r in served:
            milestones.add_row(r.name, ", ".join(r.roles), str(r.served_by), f"{r.iterations:,}",
                               r.model)  # fmt: skip
        print_whole(milestones)
    evaluations = Table(title=f"{len(plan.evaluations)} evaluations", title_justify="left")
    for column in ("label", "group", "run", "scales", "datasets", "self-ensemble"):
        evaluations.add_column(column)
    grouped: dict[tuple, list] = {}
    for e in plan.evaluations:
        grouped.setdefault((e.label, e.group, e.self_ensemble), []).append(e)
    for (label, group, ensemble), found in grouped.items():
        runs = (e.run or ("(released weights)" if e.weights else "(bicubic)") for e in found)
        evaluations.add_row(
            label, group, ", ".join(dict.fromkeys(runs)),
            ", ".join(dict.fromkeys(f"x{e.scale}" for e in found)),
            ", ".join(dict.fromkeys(e.dataset for e in found)), "yes" if ensemble else "",
        )  # fmt: skip
    print_whole(evaluations)
    for r in plan.present_released():
        say(f"released weights: {r.file} -> {r.model} (drn import), evaluated as {r.label}")
    results = Path(params["paths"]["results"])
    say(f"evaluation JSONs: {results}/eval/LABEL/xSCALE/DATASET.json")


def _print_packs(params: dict, plan) -> None:
    """resources.train.pack > 1: the packs, one GPU job per boundary (drn/pipeline/packs.py)."""
    from drn.pipeline.packs import build_packs, pack_size

    packs = build_packs(params, plan)
    if not packs:
        return
    table = Table(title=f"{len(packs)} packs of at most {pack_size(params)} runs (resources.train"
                  ".pack): each job trains its runs at once on one GPU, up to each step",
                  title_justify="left")  # fmt: skip
    for column in ("pack", "runs", "iterations", "jobs up to step"):
        table.add_column(column, justify="right" if column == "iterations" else "left")
    for index, pack in enumerate(packs, 1):
        table.add_row(str(index), ", ".join(pack.runs),
                      ", ".join(f"{n:,}" for n in pack.iterations),
                      ", ".join(f"{b:,}" for b in pack.boundaries))  # fmt: skip
    print_whole(table)
    alone = [r.name for r in plan.trained_runs() if all(r.name not in p.runs for p in packs)]
    if alone:
        say(f"trained alone: {', '.join(alone)}")


def _print_cost(params: dict, plan, as_json: bool) -> None:
    """drn plan --cost: the projection of every run, its basis, sources and total."""
    import json

    from drn.pipeline.cost import PROJECTION, THROUGHPUT, estimate_plan

    cost = estimate_plan(params, plan)
    if as_json:
        say(json.dumps(cost.to_json(), indent=2))
        return
    table = Table(title=f"Cost of the {len(cost.runs)} training runs: {PROJECTION}",
                  title_justify="left")  # fmt: skip
    numeric = ("scale", "iterations", "it/s", "GPUs", "GPU-hours")
    for column in ("run", "roles", "model", *numeric, "basis"):
        table.add_column(column, justify="right" if column in numeric else "left")
    for c in cost.runs:
        table.add_row(c.run, ", ".join(c.roles), c.variant, f"x{c.scale}", f"{c.iterations:,}",
                      f"{c.iterations_per_s:.1f}", str(c.gpus), f"{c.gpu_hours:.2f}",
                      c.kind)  # fmt: skip
    total = cost.total
    table.add_section()
    table.add_row("total", "", "", "", f"{total.iterations:,}", "", "", f"{total.gpu_hours:.2f}",
                  "projection")  # fmt: skip
    print_whole(table)
    say("Basis of each run's rate:")
    for c in cost.runs:
        say(f"  {c.run}: {c.basis}")
    say(f"Recorded GPU throughput ({THROUGHPUT.parent.parent.name}/reference/{THROUGHPUT.name}):")
    for m in cost.sources:
        say(f"  [{m.id}] {m.variant} x{m.scale}, {m.measured} ({m.mode}): {m.cite()}; "
            f"command: {m.command}")  # fmt: skip
    for note in cost.notes:
        say(f"Note: {note}")
    roles = ", ".join(f"{role} {hours:.2f}" for role, hours in total.gpu_hours_by_role.items())
    say(f"Total: {total.gpu_hours:.2f} GPU-hours ({roles}) for {total.iterations:,} iterations "
        f"of {total.runs} runs: {PROJECTION}.")  # fmt: skip
