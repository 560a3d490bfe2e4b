"""The ``drn`` command: argument parsing, console output and exit codes; no logic of its own.

Every failure is one line on stderr, ``drn: error: <message>``, that names the file or argument,
with exit code 2 for bad usage and 1 for bad data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

from rich.console import Console
from rich.progress import track
from rich.table import Table

from drn import __version__
from drn.errors import DrnError, UsageError
from drn.evaluate import SetScore, evaluate_bicubic, score_folders, write_json

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
    evaluate.add_argument("--model", required=True, help="'bicubic' (trained checkpoints: later)")
    evaluate.add_argument(
        "--hr", type=Path, required=True, metavar="DIR", help="ground-truth images"
    )
    evaluate.add_argument("--save-sr", type=Path, metavar="DIR", help="also save the SR images")
    _add_scoring_options(evaluate)
    evaluate.set_defaults(run=_run_evaluate)

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
        help="override one size, e.g. --set block_channels=128 (repeatable)",
    )
    info.set_defaults(run=_run_info)

    demo = commands.add_parser(
        "demo",
        help="the bicubic baseline on images that ship with scikit-image",
        description="Score the bicubic baseline at every demo scale on the sample images that "
        "ship inside scikit-image (no download); settings from params.yaml.",
    )
    demo.add_argument("--params", type=Path, default=Path("params.yaml"), help="settings file")
    demo.add_argument("--out", type=Path, help="output folder (default: demo.out of params)")
    demo.set_defaults(run=_run_demo)
    return parser


def _run_score(args: argparse.Namespace) -> None:
    result = score_folders(args.sr, args.hr, args.scale, args.shave, args.rgb, _progress)
    _report(result, args.json, f"{args.sr} scored against {args.hr}")


def _run_evaluate(args: argparse.Namespace) -> None:
    if args.model != "bicubic":
        raise UsageError(f"--model {args.model}: only 'bicubic' can be evaluated so far")
    result = evaluate_bicubic(args.hr, args.scale, args.shave, args.rgb, args.save_sr, _progress)
    _report(result, args.json, f"Bicubic on {args.hr}")


def _run_info(args: argparse.Namespace) -> None:
    import torch
    import yaml

    from drn.config import load_params
    from drn.models import get_variant, resolve_config
    from drn.models.complexity import forward_flops, trainable_parameters

    overrides = {}
    if args.params is not None:
        overrides.update((load_params(args.params).get("models") or {}).get(args.name) or {})
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    variant = get_variant(args.name)
    config = resolve_config(args.name, **overrides)
    with torch.device("meta"):
        model = variant.build(config, args.scale)
    height, width = args.size
    flops = forward_flops(model, height, width)
    sizes = " ".join(f"{k}={v}" for k, v in vars(config).items())
    _say(f"{args.name} x{args.scale}: {variant.description}")
    _say(f"sizes: {sizes}")
    _say(f"trainable parameters: {trainable_parameters(model):,}")
    _say(
        f"forward FLOPs for one {height}x{width} LR image "
        f"(-> {height * args.scale}x{width * args.scale}): {flops / 1e9:,.2f} G "
        f"({flops / 2e9:,.2f} G multiply-accumulates)"
    )


def _run_demo(args: argparse.Namespace) -> None:
    from drn.demo import run_demo

    results = list(run_demo(args.params, args.out, _progress))
    table = Table()
    for column in ("scale", "images", "PSNR-Y (dB)", "SSIM-Y"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(f"x{r.scale}", str(len(r.images)), _number(r.psnr, 2), _number(r.ssim, 4))
    _print_table("Bicubic baseline on scikit-image's sample images", table, _PROTOCOL)


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
        args.run(args)
    except DrnError as error:
        stderr.print(f"drn: error: {error}", markup=False, soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        stderr.print("drn: interrupted", markup=False)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
