"""``drn train``: train (or resume) one run of the plan, or one model at one scale; several runs
of the plan at once on one GPU (a pack: drn/pipeline/pack_job.py)."""

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
        "--run", dest="plan_runs", metavar="NAME", action="append", default=[],
        help="a run of the plan (drn plan), e.g. drn_x2; repeated: a pack, its runs trained at "
        "once on one device, each in its own process (resources.train.mps: auto uses CUDA MPS "
        "where the node has it)",
    )  # fmt: skip
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
    parser.add_argument(
        "--record", type=Path, metavar="JSON",
        help="a pack: write each run's outcome there and exit 0 once every run is done or failed "
        "for good (the workflow's pack job; each run's own job then reports it)",
    )  # fmt: skip
    parser.add_argument(
        "--from-pack", type=Path, metavar="JSON",
        help="train nothing: end as the pack recorded in JSON says the run (--run) ended, "
        "writing its checkpoint or model.pt again from last.pt if it is gone",
    )  # fmt: skip
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from drn.engine.runtime import launch_under_torchrun
    from drn.engine.train import train
    from drn.pipeline.plan import build_plan, run_directory, run_name
    from drn.pipeline.settings import settings_from_params

    if args.plan_runs and (args.model or args.scale or args.epochs or args.loss):
        raise UsageError("--run NAME: the plan gives the model, scale, epochs and loss")
    if not args.plan_runs and not (args.model and args.scale):
        raise UsageError("give --run NAME (a run of drn plan), or --model and --scale")
    if args.until is not None and args.until < 1:
        raise UsageError(f"--until {args.until}: a step of the run, 1 or more")
    if len(args.plan_runs) > 1 or args.record is not None:
        return train_pack(args)
    if args.gpus > 1 and "LOCAL_RANK" not in os.environ and args.from_pack is None:
        return launch_under_torchrun(args.gpus, sys.argv[1:])
    params = read_params(args.params, args.set)
    keep: tuple[int, ...] = ()
    restore_only = args.from_pack is not None
    if args.plan_runs:
        plan = build_plan(params)
        planned = plan.run(args.plan_runs[0])
        if restore_only:
            from drn.pipeline.pack_job import outcome_of

            outcome_of(args.from_pack, planned.name)  # a run failed for good: its error
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
        if restore_only:
            raise UsageError("--from-pack: give the run with --run NAME")
        settings = settings_from_params(params, args.model, args.scale, args.epochs, args.loss)
        name = run_name(params, args.model, args.scale, args.epochs, args.loss, settings.seed)
        tags = {}
    return train(
        settings, args.run_dir or Path(run_directory(params, name)),
        "cpu" if restore_only else args.device, report=True,
        track=params["tracking"]["enabled"] and not args.no_track and not restore_only,
        if_changed="refuse" if restore_only else args.if_changed, tags=tags, until=args.until,
        keep=keep, restore_only=restore_only,
    )  # fmt: skip


def train_pack(args: argparse.Namespace) -> int:
    """Several runs of the plan at once, each its own ``drn train --run NAME`` process."""
    from drn.pipeline.pack_job import Member, run_pack
    from drn.pipeline.plan import build_plan

    runs = args.plan_runs
    if len(set(runs)) < len(runs):
        raise UsageError(f"--run: a run given twice ({', '.join(runs)})")
    for given, option in ((args.run_dir, "--run-dir"), (args.from_pack, "--from-pack")):
        if given is not None:
            raise UsageError(f"{option}: one run's; a pack's runs live in their own directories")
    if args.gpus > 1:
        raise UsageError(f"--gpus {args.gpus}: a pack shares one GPU (resources.train.gpu: 1)")
    params = read_params(args.params, args.set)
    plan = build_plan(params)
    for name in runs:
        if not plan.run(name).trained:  # an unknown run: the plan's UsageError
            raise UsageError(f"run {name} is a milestone of run {plan.run(name).served_by}")
    common = ["--params", str(args.params), *(f"--set={item}" for item in args.set),
              "--device", args.device, "--gpus", str(args.gpus), "--if-changed", args.if_changed,
              *(["--until", str(args.until)] if args.until else []),
              *(["--no-track"] if args.no_track else [])]  # fmt: skip
    members = [Member(name, [sys.executable, "-m", "drn", "train", "--run", name, *common])
               for name in runs]  # fmt: skip
    mps = params["resources"]["train"].get("mps", "auto")
    return run_pack("+".join(runs), members, mps, args.device, args.record, args.until)


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
