"""``drn evaluate``: super-resolve HR images' MATLAB-exact bicubic LR and score the result."""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import (
    add_device_options,
    add_params_option,
    add_scoring_options,
    load_model,
    read_params,
)
from drn.commands.output import progress, report_scores, say, warn
from drn.core.errors import DrnError, UsageError
from drn.protocol.scoring import evaluate_bicubic


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="super-resolve HR images' bicubic LR and score the result",
        description="Make LR = imresize(HR, 1/s) (MATLAB-exact), super-resolve it and score it.",
    )
    parser.add_argument(
        "--model",
        required=True,
        metavar="bicubic|CHECKPOINT",
        help="'bicubic', or a checkpoint (a file or an MLflow URI such as runs:/ID/checkpoint)",
    )
    parser.add_argument(
        "--self-ensemble", action="store_true", help="average the 8 flips/rotations"
    )
    add_device_options(parser)
    parser.add_argument("--hr", type=Path, required=True, metavar="DIR", help="ground-truth images")
    parser.add_argument("--save-sr", type=Path, metavar="DIR", help="also save the SR images")
    parser.add_argument(
        "--no-track", action="store_true",
        help="do not log the scores to the MLflow run that trained the checkpoint",
    )  # fmt: skip
    parser.add_argument(
        "--milestone", action="store_true",
        help="this is a milestone of the plan (params.yaml; found by --json, its file): set it "
        "beside the number the run should reach at that step (the paper's, else bicubic's "
        "score): on course, behind or ahead, in the JSON, the log and MLflow",
    )  # fmt: skip
    add_params_option(parser)
    add_scoring_options(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    if args.model == "bicubic":
        if args.self_ensemble:
            raise UsageError("--self-ensemble needs a trained model, not bicubic")
        result = evaluate_bicubic(args.hr, args.scale, args.shave, args.rgb, args.save_sr, progress)
        report_scores(result, args.json, f"Bicubic on {args.hr}")
        return
    from dataclasses import replace

    from drn.engine.inference import evaluate_model
    from drn.engine.tracking import evaluated_run, log_evaluation

    planned = _milestone_of(args) if args.milestone else None
    model, device = load_model(args.model, args.scale, args.device, "--model")
    trained = evaluated_run(args.model)  # the MLflow run that trained it, if it says
    result = evaluate_model(
        model, args.hr, args.scale, device, args.self_ensemble, args.tile or None, args.shave,
        args.rgb, args.save_sr, progress,
    )  # fmt: skip
    result = replace(result, mlflow_run_id=trained.run_id)
    ensemble = " with self-ensemble" if args.self_ensemble else ""
    verdict = planned(result.psnr) if planned else None
    report_scores(result, args.json, f"{model.variant} ({args.model}){ensemble} on {args.hr}",
                  {"milestone": verdict} if verdict else None)  # fmt: skip
    prefix, tags = "", {}
    if verdict:
        say(verdict["line"])
        prefix = f"milestone_{verdict['step']}_"
        tags = {f"{prefix}{result.dataset or 'images'}_x{result.scale}": verdict["line"]}
    if args.no_track:  # the JSON is written first: MLflow never costs the computed scores
        return
    if trained.run_id is None:
        say(f"MLflow: nothing logged: {trained.why}")
        return
    try:
        say(log_evaluation(trained, result, prefix, tags))
    except DrnError as error:
        kept = f"; the scores are in {args.json}" if args.json else ""
        warn(f"not logged to MLflow: {error}{kept}")


def _milestone_of(args: argparse.Namespace):
    """For --milestone: the plan's evaluation whose JSON is --json, as a function of the PSNR
    scored to its ``"milestone"`` block (:func:`drn.report.milestones.milestone`)."""
    from drn.pipeline.plan import build_plan
    from drn.report.milestones import milestone
    from drn.report.results import read

    if args.json is None:
        raise UsageError("--milestone: give --json, the plan's file of this evaluation")
    params = read_params(args.params)
    plan = build_plan(params)
    target = args.json.resolve()
    found = [e for e in plan.evaluations if Path(e.path).resolve() == target]
    run = plan.run(found[0].run) if found and found[0].run else None
    if run is None or run.trained:
        raise UsageError(f"--milestone: {args.json} is no milestone evaluation of the plan "
                         f"({args.params})")  # fmt: skip
    bicubic = read(plan.bicubic_of(found[0]))
    floor = float(bicubic["psnr"]) if bicubic else None
    return lambda psnr: milestone(params, plan, found[0], psnr, floor)
