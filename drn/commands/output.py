"""Console output of the subcommands: the consoles, the progress bar, lines, tables, the scores.

Everything a command prints goes through here: :func:`say` for a line (no markup, no wrapping),
:func:`print_whole` for a table never shortened, :func:`report_scores` for a set's scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from rich.console import Console
from rich.progress import track
from rich.table import Table

from drn.protocol.scoring import SetScore, write_json

T = TypeVar("T")

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)

_PROTOCOL = "Y channel (BT.601), shave the scale, MATLAB ssim_index"


def progress(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """A transient progress bar on a terminal's stderr; nothing in logs and pipes."""
    yield from track(
        items,
        total=total,
        description=description,
        console=stderr,
        transient=True,
        disable=not stderr.is_terminal,
    )


def say(text: str) -> None:
    stdout.print(text, soft_wrap=True, markup=False)


def warn(text: str) -> None:
    """``drn: warning: <text>``, one line on stderr."""
    stderr.print(f"drn: warning: {text}", markup=False, soft_wrap=True)


def print_whole(table: Table) -> None:
    """Print ``table`` without shortening its cells, also where the console is narrow (a pipe)."""
    from rich.measure import Measurement

    needed = Measurement.get(stdout, stdout.options.update(max_width=1000), table).maximum
    Console(highlight=False, width=max(stdout.width, needed)).print(table)


def report_scores(
    result: SetScore, json_path: Path | None, title: str, extra: dict | None = None
) -> None:
    """Write ``result`` as JSON (when asked; with the keys of ``extra``), then print its table
    per image and its mean."""
    if json_path is not None:
        write_json(result, json_path, extra)
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


def _print_table(title: str, table: Table, note: str) -> None:
    say(title)
    stdout.print(table)
    say(note)


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
