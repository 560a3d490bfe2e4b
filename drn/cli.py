"""The ``drn`` command: argument parsing, console output and exit codes; no logic of its own.

Every failure is one line on stderr, ``drn: error: <message>``, that names the file or argument,
with exit code 2 for bad usage and 1 for bad data.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from rich.console import Console
from rich.progress import track
from rich.table import Table

from drn import __version__
from drn.core import threads
from drn.core.errors import DrnError, UsageError
from drn.core.images import IMAGE_SUFFIXES
from drn.protocol.scoring import SetScore, evaluate_bicubic, score_folders, write_json

T = TypeVar("T")

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        stderr.print(f"drn: error: {message}", markup=False, soft_wrap=True)
        raise SystemExit(2)


def _scale(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"invalid scale {text!r}: expected an integer >= 2")
    return int(text)


def _border(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid shave {text!r}: expected an integer >= 0")
    return int(text)


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected HxW, e.g. 256x256")
    return int(parts[0]), int(parts[1])


def _progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """A transient progress bar on a terminal's stderr; nothing in logs and pipes."""
    yield from track(
        items,
        total=total,
        description=description,
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )


def _add_params_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="settings file (params.yaml)"
    )


def _add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--tile", type=int, default=256, metavar="N",
        help="LR tile size for bounded memory (results equal untiled ones); 0 = whole images",
    )  # fmt: skip


def _add_scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scale", type=_scale, required=True, help="upscaling factor (2, 3, 4, ...)"
    )
    parser.add_argument(
        "--shave",
        type=_border,
        default=None,
        metavar="N",
        help="pixels removed from every border before scoring (default: the scale)",
    )
    parser.add_argument("--rgb", action="store_true", help="also report PSNR on RGB, labelled so")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the scores as JSON here")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="drn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"drn-repro {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    score = commands.add_parser(
        "score",
        help="score super-resolved images against HR images (Y PSNR/SSIM)",
        description="Score a folder of SR images against their HR images under the standard "
        "protocol (BT.601 Y channel, borders shaved by the scale, MATLAB-equal SSIM).",
    )
    score.add_argument(
        "--sr", type=Path, required=True, metavar="DIR", help="super-resolved images"
    )
    score.add_argument("--hr", type=Path, required=True, metavar="DIR", help="ground-truth images")
    _add_scoring_options(score)
    score.set_defaults(run=_run_score)

    evaluate = commands.add_parser(
        "evaluate",
        help="super-resolve HR images' bicubic LR and score the result",
        description="Make LR = imresize(HR, 1/s) (MATLAB-exact), super-resolve it and score it.",
    )
    evaluate.add_argument(
        "--model",
        required=True,
        metavar="bicubic|CHECKPOINT",
        help="'bicubic', or a checkpoint (a file or an MLflow URI such as runs:/ID/checkpoint)",
    )
    evaluate.add_argument(
        "--self-ensemble", action="store_true", help="average the 8 flips/rotations"
    )
    _add_device_options(evaluate)
    evaluate.add_argument(
        "--hr", type=Path, required=True, metavar="DIR", help="ground-truth images"
    )
    evaluate.add_argument("--save-sr", type=Path, metavar="DIR", help="also save the SR images")
    evaluate.add_argument(
        "--no-track", action="store_true",
        help="do not log the scores to the MLflow run that trained the checkpoint",
    )  # fmt: skip
    _add_scoring_options(evaluate)
    evaluate.set_defaults(run=_run_evaluate)

    upscale = commands.add_parser(
        "upscale", help="super-resolve images with a trained model",
        description="Super-resolve images of any format Pillow reads (grayscale stays gray, "
        "alpha is resized with bicubic) with a trained checkpoint.",
    )  # fmt: skip
    upscale.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    upscale.add_argument(
        "--weights", required=True, metavar="CKPT_OR_MLFLOW_URI",
        help="a checkpoint file, or an MLflow URI such as runs:/ID/checkpoint",
    )  # fmt: skip
    upscale.add_argument("--scale", type=_scale, required=True, help="the model's scale")
    upscale.add_argument(
        "-o", "--out", type=Path, required=True,
        help="output folder (IMAGE_xS.png), or a file name for a single image",
    )  # fmt: skip
    upscale.add_argument("--self-ensemble", action="store_true", help="average 8 flips/rotations")
    _add_device_options(upscale)
    upscale.set_defaults(run=_run_upscale)

    train = commands.add_parser(
        "train", help="train (or resume) one run of the plan, or one model at one scale",
        description="Train a run of the plan (drn plan) or a model with the recipe in "
        "params.yaml. Running it again on the same run directory resumes where it stopped "
        "(also after SIGTERM/SIGUSR1).",
    )  # fmt: skip
    train.add_argument(
        "--run", dest="plan_run", metavar="NAME", help="a run of the plan (drn plan), e.g. drn_x2"
    )
    train.add_argument("--model", help="model variant (drn, drn_plus, drn_no_rd), with --scale")
    train.add_argument("--scale", type=_scale, help="upscaling factor, with --model")
    _add_params_option(train)
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set train.optimizer.lr=5e-4 (repeatable)",
    )  # fmt: skip
    train.add_argument("--run-dir", type=Path, help="default: {paths.runs}/{the run's name}")
    train.add_argument("--epochs", type=float, help="instead of train.epochs.<model>")
    train.add_argument("--loss", choices=("l1", "l2"), help="instead of train.loss")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument(
        "--gpus", type=int, default=1, metavar="N",
        help="train on N GPUs of this node (launches torchrun); 0 or 1: one process",
    )  # fmt: skip
    train.add_argument(
        "--if-changed", choices=("refuse", "restart"), default="refuse",
        help="a run directory holding a run of other settings: refuse (default), or set it "
        "aside as RUN_DIR.replaced-<time> and start afresh (what the pipeline does)",
    )  # fmt: skip
    train.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    train.set_defaults(run=_run_train)

    fetch = commands.add_parser(
        "fetch", help="download (or copy, or make) one source of params.yaml",
        description="Fill {paths.data}/NAME from sources.NAME (a resumable, checksum-verified "
        "download then a safe extraction; a local folder or archive; scikit-image's images) or "
        "from downscaled.NAME (the MATLAB-exact bicubic LR of another source).",
    )  # fmt: skip
    fetch.add_argument("name", help="a key of sources or downscaled in params.yaml")
    _add_params_option(fetch)
    fetch.set_defaults(run=_run_fetch)

    prepare = commands.add_parser(
        "prepare", help="decode the training pairs of one scale into the cache",
        description="Check every training image and decode the HR/LR pairs of one scale into "
        "train.data.cache (LR: the official images if present, else the MATLAB-exact resize).",
    )  # fmt: skip
    prepare.add_argument("--scale", type=_scale, required=True, help="upscaling factor")
    _add_params_option(prepare)
    prepare.set_defaults(run=_run_prepare)

    report = commands.add_parser(
        "report", help="the paper-style report: every number of the paper beside ours",
        description="Write {paths.reports}/report.html (self-contained) and report.md from the "
        "evaluation JSONs, the training runs, MLflow and params.yaml.",
    )  # fmt: skip
    _add_params_option(report)
    report.add_argument("--device", default="auto", help="for the visual comparisons")
    report.add_argument("--pdf", action="store_true", help="also print it to PDF (Chromium)")
    report.set_defaults(run=_run_report)

    plan = commands.add_parser(
        "plan", help="every training run and evaluation params.yaml asks for",
        description="Print the experiment plan of params.yaml: the training runs (identical "
        "ones merged) and the evaluations, with their files; with --cost, each run's iterations "
        "and projected GPU-hours instead.",
    )  # fmt: skip
    _add_params_option(plan)
    output = plan.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="as JSON, for scripts")
    output.add_argument(
        "--dvc", action="store_true",
        help="as the dvc.yaml of its stages (drn plan --dvc > dvc.yaml; never edit it by hand)",
    )  # fmt: skip
    plan.add_argument(
        "--cost", action="store_true",
        help="each run's iterations and GPU-hours, and their total: a projection from the GPU "
        "throughput recorded in drn/reference/gpu_throughput.yaml (with --json: as JSON)",
    )  # fmt: skip
    plan.set_defaults(run=_run_plan)

    collect = commands.add_parser(
        "collect", help="gather every evaluation JSON into one table",
        description="Write {paths.results}/summary.md and summary.json from the evaluation "
        "JSONs under {paths.results}/eval.",
    )  # fmt: skip
    _add_params_option(collect)
    collect.set_defaults(run=_run_collect)

    info = commands.add_parser(
        "info",
        help="trainable parameters and FLOPs of a model variant",
        description="Print a model variant's sizes, trainable parameters and forward FLOPs.",
    )
    info.add_argument("name", help="model variant (drn, drn_plus, drn_no_rd, ...)")
    info.add_argument("--scale", type=_scale, required=True, help="upscaling factor")
    info.add_argument(
        "--size",
        type=_size,
        default=(256, 256),
        metavar="HxW",
        help="LR input size the FLOPs are counted for (default 256x256)",
    )
    info.add_argument("--params", type=Path, help="apply this file's models.<name> overrides")
    info.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one size as drn train does, e.g. --set models.drn.block_channels=128 "
        "(repeatable)",
    )
    info.set_defaults(run=_run_info)

    doctor = commands.add_parser(
        "doctor", help="check this setup before the pipeline runs: Slurm, environment, data",
        description="A read-only checklist, in seconds, for params.yaml and the Snakemake profile "
        "in use: Slurm (partition, account, each job's GPUs/CPUs/memory/time limit against the "
        "nodes, the status command), the Python environment and torch, the tracking store, the "
        "data and free disk space, and the plan's size; a fix for every miss. Exit 0 when "
        "nothing fails (warnings pass), 1 otherwise.",
    )  # fmt: skip
    _add_params_option(doctor)
    doctor.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="the Snakemake profile (default: ~/.config/snakemake/slurm after make "
        "slurm-profile, else workflow/profiles/slurm)",
    )  # fmt: skip
    doctor.add_argument(
        "--default-resources", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
        help="as snakemake's, on top of the profile's: slurm_partition=NAME slurm_account=NAME",
    )  # fmt: skip
    doctor.add_argument(
        "--slurm-status-command", choices=("sacct", "squeue"),
        help="as snakemake's, instead of the profile's",
    )  # fmt: skip
    doctor.add_argument(
        "--probe", action="store_true",
        help="also submit a 1-minute job with the training job's GPU request that imports torch "
        "with this Python and counts the GPUs it sees (waits up to 3 minutes)",
    )  # fmt: skip
    doctor.add_argument(
        "--online", action="store_true", help="also ask each source's url (a HEAD request)"
    )
    doctor.add_argument("--json", action="store_true", help="the results as JSON, for scripts")
    doctor.add_argument(
        "--last", action="store_true",
        help="instead: the jobs whose last attempt failed, with their logs "
        "({paths.results}/logs/**/*.attempts.jsonl)",
    )  # fmt: skip
    doctor.set_defaults(run=_run_doctor)

    return parser


def _run_score(args: argparse.Namespace) -> None:
    result = score_folders(args.sr, args.hr, args.scale, args.shave, args.rgb, _progress)
    _report(result, args.json, f"{args.sr} scored against {args.hr}")


def _run_evaluate(args: argparse.Namespace) -> None:
    if args.model == "bicubic":
        if args.self_ensemble:
            raise UsageError("--self-ensemble needs a trained model, not bicubic")
        result = evaluate_bicubic(
            args.hr, args.scale, args.shave, args.rgb, args.save_sr, _progress
        )
        _report(result, args.json, f"Bicubic on {args.hr}")
        return
    from dataclasses import replace

    from drn.engine.inference import evaluate_model
    from drn.engine.tracking import evaluated_run, log_evaluation

    model, device = _load_model(args.model, args.scale, args.device, "--model")
    run = evaluated_run(args.model)  # the MLflow run that trained it, if it says
    result = evaluate_model(
        model, args.hr, args.scale, device, args.self_ensemble, args.tile or None, args.shave,
        args.rgb, args.save_sr, _progress,
    )  # fmt: skip
    result = replace(result, mlflow_run_id=run.run_id)
    ensemble = " with self-ensemble" if args.self_ensemble else ""
    _report(result, args.json, f"{model.variant} ({args.model}){ensemble} on {args.hr}")
    if args.no_track:  # the JSON is written first: MLflow never costs the computed scores
        return
    if run.run_id is None:
        _say(f"MLflow: nothing logged: {run.why}")
        return
    try:
        _say(log_evaluation(run, result))
    except DrnError as error:
        kept = f"; the scores are in {args.json}" if args.json else ""
        stderr.print(f"drn: warning: not logged to MLflow: {error}{kept}", markup=False,
                     soft_wrap=True)  # fmt: skip


def _load_model(weights: str, scale: int, device_name: str, option: str = "--weights"):
    import torch

    from drn.engine.checkpoint import model_from_checkpoint
    from drn.engine.tracking import resolve_weights

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if device_name == "auto" else device_name
    )
    model, _ = model_from_checkpoint(resolve_weights(weights, option=option), device)
    if model.scale != scale:
        raise UsageError(f"--scale {scale}: {weights} is a x{model.scale} model")
    return model, device


def _run_upscale(args: argparse.Namespace) -> None:
    from drn.core.images import read_image, write_image
    from drn.engine.inference import upscale_image

    model, device = _load_model(args.weights, args.scale, args.device)
    single_file = len(args.images) == 1 and args.out.suffix.lower() in IMAGE_SUFFIXES
    for path in _progress(args.images, len(args.images), f"upscaling x{args.scale}"):
        img = read_image(path, keep_alpha=True)
        sr = upscale_image(model, img, args.scale, device, args.tile or None, args.self_ensemble)
        target = args.out if single_file else args.out / f"{path.stem}_x{args.scale}.png"
        write_image(target, sr)
        _say(f"{path} -> {target} ({sr.shape[1]}x{sr.shape[0]})")


def _params(path: Path, overrides: list[str] | None = None) -> dict:
    from drn.pipeline.params import apply_overrides, load_params, validate_params

    params = apply_overrides(load_params(path), overrides or [])
    validate_params(params, path)
    return params


def _run_train(args: argparse.Namespace) -> int:
    from drn.engine.train import launch_under_torchrun, train
    from drn.pipeline.plan import build_plan, run_directory, run_name
    from drn.pipeline.settings import settings_from_params

    if args.plan_run is not None and (args.model or args.scale or args.epochs or args.loss):
        raise UsageError("--run NAME: the plan gives the model, scale, epochs and loss")
    if args.plan_run is None and not (args.model and args.scale):
        raise UsageError("give --run NAME (a run of drn plan), or --model and --scale")
    if args.gpus > 1 and "LOCAL_RANK" not in os.environ:
        return launch_under_torchrun(args.gpus, sys.argv[1:])
    params = _params(args.params, args.set)
    if args.plan_run is not None:
        run = build_plan(params).run(args.plan_run)
        settings = settings_from_params(params, run.variant, run.scale, run.epochs, run.loss,
                                        run.seed)  # fmt: skip
        name, tags = run.name, {"role": ",".join(run.roles)}
    else:
        settings = settings_from_params(params, args.model, args.scale, args.epochs, args.loss)
        name = run_name(params, args.model, args.scale, args.epochs, args.loss, settings.seed)
        tags = {}
    return train(
        settings, args.run_dir or Path(run_directory(params, name)), args.device, report=True,
        track=params["tracking"]["enabled"] and not args.no_track,
        if_changed=args.if_changed, tags=tags,
    )  # fmt: skip


def _run_plan(args: argparse.Namespace) -> None:
    import json

    from drn.pipeline.plan import build_plan

    params = _params(args.params)
    plan = build_plan(params)
    if args.cost and args.dvc:
        raise UsageError("drn plan: --cost prints tables (or --json), not dvc.yaml")
    if args.cost:
        _print_plan_cost(params, plan, args.json)
        return
    if args.dvc:
        from drn.pipeline.dvc_stages import dvc_yaml

        sys.stdout.write(dvc_yaml(params, plan))  # as is: no console markup or wrapping
        return
    if args.json:
        _say(json.dumps(plan.to_json(), indent=2))
        return
    runs = Table(title=f"{len(plan.runs)} training runs", title_justify="left")
    for column in ("run", "roles", "model", "scale", "epochs", "loss", "seed", "directory"):
        runs.add_column(column, justify="right" if column in ("scale", "epochs") else "left")
    for run in plan.runs:
        runs.add_row(run.name, ", ".join(run.roles), run.variant, f"x{run.scale}",
                     f"{run.epochs:g}", run.loss, str(run.seed), run.directory)  # fmt: skip
    _print_whole(runs)
    evaluations = Table(title=f"{len(plan.evaluations)} evaluations", title_justify="left")
    for column in ("label", "group", "run", "scales", "datasets", "self-ensemble"):
        evaluations.add_column(column)
    grouped: dict[tuple, list] = {}
    for e in plan.evaluations:
        grouped.setdefault((e.label, e.group, e.self_ensemble), []).append(e)
    for (label, group, ensemble), found in grouped.items():
        evaluations.add_row(
            label, group, ", ".join(dict.fromkeys(e.run or "(bicubic)" for e in found)),
            ", ".join(dict.fromkeys(f"x{e.scale}" for e in found)),
            ", ".join(dict.fromkeys(e.dataset for e in found)), "yes" if ensemble else "",
        )  # fmt: skip
    _print_whole(evaluations)
    results = Path(params["paths"]["results"])
    _say(f"evaluation JSONs: {results}/eval/LABEL/xSCALE/DATASET.json")


def _print_plan_cost(params: dict, plan, as_json: bool) -> None:
    """drn plan --cost: the projection of every run, its basis, sources and total."""
    import json

    from drn.pipeline.cost import PROJECTION, THROUGHPUT, estimate_plan

    cost = estimate_plan(params, plan)
    if as_json:
        _say(json.dumps(cost.to_json(), indent=2))
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
    _print_whole(table)
    _say("Basis of each run's rate:")
    for c in cost.runs:
        _say(f"  {c.run}: {c.basis}")
    _say(f"Recorded GPU throughput ({THROUGHPUT.parent.parent.name}/reference/{THROUGHPUT.name}):")
    for m in cost.sources:
        _say(f"  [{m.id}] {m.variant} x{m.scale}, {m.measured} ({m.mode}): {m.cite()}; "
             f"command: {m.command}")  # fmt: skip
    for note in cost.notes:
        _say(f"Note: {note}")
    roles = ", ".join(f"{role} {hours:.2f}" for role, hours in total.gpu_hours_by_role.items())
    _say(f"Total: {total.gpu_hours:.2f} GPU-hours ({roles}) for {total.iterations:,} iterations "
         f"of {total.runs} runs: {PROJECTION}.")  # fmt: skip


def _run_fetch(args: argparse.Namespace) -> None:
    from drn.pipeline.download import fetch

    _say(f"{args.name}: {fetch(args.name, _params(args.params))}")


def _run_prepare(args: argparse.Namespace) -> None:
    from drn.engine.dataset import build_cache
    from drn.pipeline.settings import training_data

    hr, lr, cache, patch = training_data(_params(args.params), args.scale)
    pairs, version = build_cache(hr, lr, args.scale, cache, patch, _progress)
    _say(f"x{args.scale}: {len(pairs)} training pairs in {cache} (data version {version})")


def _run_report(args: argparse.Namespace) -> None:
    import torch

    from drn.report import build_report

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    written = build_report(_params(args.params), device, args.pdf)
    _say("report: " + ", ".join(str(path) for path in written.values()))


def _run_collect(args: argparse.Namespace) -> None:
    from drn.protocol.scoring import collect_results

    results = Path(_params(args.params)["paths"]["results"])
    rows = collect_results(results / "eval", results / "summary")
    _say(f"{len(rows)} evaluations in {results / 'summary.md'} and {results / 'summary.json'}")


def _run_info(args: argparse.Namespace) -> None:
    import torch

    from drn.models import get_variant, resolve_config
    from drn.models.complexity import forward_flops, trainable_parameters
    from drn.pipeline.params import apply_overrides, build_from_params, load_params, model_sizes

    for item in args.set:
        if not item.startswith(f"models.{args.name}."):
            raise UsageError(
                f"--set {item}: drn info changes this model's sizes, as drn train --set does: "
                f"models.{args.name}.SIZE=VALUE, e.g. models.{args.name}.block_channels=128"
            )
    params = apply_overrides(load_params(args.params) if args.params else {}, args.set)
    variant = get_variant(args.name)
    with torch.device("meta"):
        model = build_from_params(params, args.name, args.scale)
    height, width = args.size
    flops = forward_flops(model, height, width)
    config = resolve_config(args.name, **model_sizes(params, args.name))
    sizes = " ".join(f"{k}={v}" for k, v in vars(config).items())
    _say(f"{args.name} x{args.scale}: {variant.description}")
    _say(f"sizes: {sizes}")
    _say(f"trainable parameters: {trainable_parameters(model):,}")
    _say(
        f"forward FLOPs for one {height}x{width} LR image "
        f"(-> {height * args.scale}x{width * args.scale}): {flops / 1e9:,.2f} G "
        f"({flops / 2e9:,.2f} G multiply-accumulates)"
    )


def _run_doctor(args: argparse.Namespace) -> int:
    import json

    from drn.doctor import checklist as doctor

    params = _params(args.params)
    if args.last:
        results = params["paths"]["results"]
        attempts = doctor.last_attempts(results)
        if args.json:
            _say(json.dumps([a.to_json() for a in attempts if a.failed], indent=2))
        else:
            for line in doctor.render_last(attempts, results):
                _say(line)
        return 1 if any(a.failed for a in attempts) else 0
    profile = doctor.load_profile(
        args.profile or doctor.default_profile(), args.default_resources,
        args.slurm_status_command,
    )  # fmt: skip
    results = doctor.diagnose(params, profile, args.online, args.probe)
    if args.json:
        _say(json.dumps([r.to_json() for r in results], indent=2))
    else:
        for line in doctor.render(results, args.params, profile):
            _say(line)
    return doctor.exit_code(results)


def _report(result: SetScore, json_path: Path | None, title: str) -> None:
    if json_path is not None:
        write_json(result, json_path)
    rgb = result.psnr_rgb is not None
    table = Table()
    table.add_column("image")
    table.add_column("PSNR-Y (dB)", justify="right")
    table.add_column("SSIM-Y", justify="right")
    if rgb:
        table.add_column("PSNR-RGB (dB)", justify="right")
    for image in result.images:
        row = [image.name, _number(image.psnr, 2), _number(image.ssim, 4)]
        table.add_row(*row, *([_number(image.psnr_rgb, 2)] if rgb else []))
    mean = [f"mean of {len(result.images)}", _number(result.psnr, 2), _number(result.ssim, 4)]
    table.add_section()
    table.add_row(*mean, *([_number(result.psnr_rgb, 2)] if rgb else []), style="bold")
    note = _PROTOCOL.replace("the scale", str(result.shave))
    if rgb:
        note += "; PSNR-RGB: all three channels, same shave"
    _print_table(f"{title}, x{result.scale}", table, note)


_PROTOCOL = "Y channel (BT.601), shave the scale, MATLAB ssim_index"


def _print_whole(table: Table) -> None:
    """Print ``table`` without shortening its cells, also where the console is narrow (a pipe)."""
    from rich.measure import Measurement

    needed = Measurement.get(stdout, stdout.options.update(max_width=1000), table).maximum
    Console(highlight=False, width=max(stdout.width, needed)).print(table)


def _say(text: str) -> None:
    stdout.print(text, soft_wrap=True, markup=False)


def _print_table(title: str, table: Table, note: str) -> None:
    _say(title)
    stdout.print(table)
    _say(note)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        threads.configure()  # the job's CPUs: torch and BLAS threads, images at a time
        return args.run(args) or 0
    except DrnError as error:
        stderr.print(f"drn: error: {error}", markup=False, soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        stderr.print("drn: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
