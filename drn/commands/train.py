"""``drn train``: train (or resume) one run of the plan, or one model at one scale."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from drn.commands.options import add_params_option, add_scale_option, read_params
from drn.core.errors import BehindError, UsageError


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train (or resume) one run of the plan, or one model at one scale",
        description="Train a run of the plan (drn plan) or a model with the recipe in "
        "params.yaml. Running it again on the same run directory resumes where it stopped "
        "(also after SIGTERM/SIGUSR1).",
    )  # fmt: skip
    parser.add_argument(
        "--run", dest="plan_run", metavar="NAME", help="a run of the plan (drn plan), e.g. drn_x2"
    )
    parser.add_argument("--model", help="model variant (drn, drn_plus, drn_no_rd), with --scale")
    add_scale_option(parser, "upscaling factor, with --model", required=False)
    add_params_option(parser)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.optimizer.lr=5e-4 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--run-dir", type=Path, help="default: {paths.runs}/{the run's name}")
    parser.add_argument("--epochs", type=float, help="instead of train.epochs.<model>")
    parser.add_argument("--loss", choices=("l1", "l2"), help="instead of train.loss")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--gpus", type=int, default=1, metavar="N",
        help="train on N GPUs of this node (launches torchrun); 0 or 1: one process",
    )  # fmt: skip
    parser.add_argument(
        "--if-changed", choices=("refuse", "restart"), default="refuse",
        help="a run directory holding a run of other settings: refuse (default), or set it "
        "aside as RUN_DIR.replaced-<time> and start afresh (what the pipeline does)",
    )  # fmt: skip
    parser.add_argument(
        "--until", type=int, metavar="STEP",
        help="train one segment, up to STEP (kept as checkpoints/step_STEP.pt); run again "
        "without it to go on (same run directory and MLflow run)",
    )  # fmt: skip
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from drn.engine.runtime import launch_under_torchrun
    from drn.engine.train import train
    from drn.pipeline.plan import build_plan, run_directory, run_name
    from drn.pipeline.settings import settings_from_params

    if args.plan_run is not None and (args.model or args.scale or args.epochs or args.loss):
        raise UsageError("--run NAME: the plan gives the model, scale, epochs and loss")
    if args.plan_run is None and not (args.model and args.scale):
        raise UsageError("give --run NAME (a run of drn plan), or --model and --scale")
    if args.gpus > 1 and "LOCAL_RANK" not in os.environ:
        return launch_under_torchrun(args.gpus, sys.argv[1:])
    if args.until is not None and args.until < 1:
        raise UsageError(f"--until {args.until}: a step of the run, 1 or more")
    params = read_params(args.params, args.set)
    keep: tuple[int, ...] = ()
    if args.plan_run is not None:
        plan = build_plan(params)
        planned = plan.run(args.plan_run)
        if not planned.trained:
            raise UsageError(
                f"run {planned.name} is not trained: it is step {planned.iterations} of run "
                f"{planned.served_by} (a milestone; drn plan); train that one"
            )
        settings = settings_from_params(params, planned.variant, planned.scale, planned.epochs,
                                        planned.loss, planned.seed)  # fmt: skip
        name, tags, keep = planned.name, {"role": ",".join(planned.roles)}, planned.milestones
        if params["train"].get("stop_if_behind"):
            stop_if_behind(plan, planned.name, planned.directory)
    else:
        settings = settings_from_params(params, args.model, args.scale, args.epochs, args.loss)
        name = run_name(params, args.model, args.scale, args.epochs, args.loss, settings.seed)
        tags = {}
    return train(
        settings, args.run_dir or Path(run_directory(params, name)), args.device, report=True,
        track=params["tracking"]["enabled"] and not args.no_track,
        if_changed=args.if_changed, tags=tags, until=args.until, keep=keep,
    )  # fmt: skip


def stop_if_behind(plan, name: str, directory: str) -> None:
    """train.stop_if_behind: a BehindError (exit 3, not retried) when an evaluation at a
    milestone the run has passed is behind the number it should reach; its checkpoints stay."""
    import json

    try:
        at = json.loads((Path(directory) / "progress.json").read_text())["checkpoint_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # not started, or no readable record: nothing passed yet
    for evaluation in plan.milestone_evaluations(name):
        step = plan.run(evaluation.run).iterations
        try:
            found = json.loads(Path(evaluation.path).read_text()).get("milestone") or {}
        except (OSError, ValueError):
            continue  # not evaluated yet: nothing to stop for
        if step <= at and found.get("verdict") == "behind":
            raise BehindError(
                f"{name}: behind at its milestone step {step} ({evaluation.dataset} "
                f"x{evaluation.scale}: {found.get('line') or evaluation.path}); stopped "
                f"(train.stop_if_behind), checkpoint kept in {directory}/checkpoints"
            )
