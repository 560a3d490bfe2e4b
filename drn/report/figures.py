"""The report's figures, drawn with matplotlib into PNG bytes (embedded in the HTML, files for
the Markdown)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

plt.rcParams.update({"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 110})


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def psnr_vs_parameters(points: Sequence[tuple[str, float, float, bool]]) -> bytes:
    """Fig. 2's analogue: (name, parameters, Set5 x4 PSNR, ours?) as a log-x scatter."""
    figure, axes = plt.subplots(figsize=(6.4, 3.8))
    for name, parameters, psnr, ours in points:
        style = {"marker": "*", "s": 90, "color": "tab:red"} if ours else {"s": 30}
        axes.scatter(parameters / 1e6, psnr, zorder=3, **style)
        axes.annotate(name, (parameters / 1e6, psnr), textcoords="offset points", xytext=(5, 3))
    axes.set_xscale("log")
    plain = ticker.FuncFormatter(lambda value, _position: f"{value:g}")
    axes.xaxis.set_major_formatter(plain)
    axes.xaxis.set_minor_formatter(plain)
    axes.set_xlabel("parameters (millions, log scale)")
    axes.set_ylabel("Set5 x4 PSNR (dB)")
    return _png(figure)


def curves(series: Sequence[tuple[str, Sequence[Sequence[float]]]], ylabel: str) -> bytes:
    """One line per (name, [[step, value], ...])."""
    figure, axes = plt.subplots(figsize=(6.4, 3.4))
    for name, points in series:
        if points:
            steps, values = zip(*[(p[0], p[1]) for p in points], strict=True)
            axes.plot(steps, values, label=name, linewidth=1.2)
    axes.set_xlabel("iteration")
    axes.set_ylabel(ylabel)
    if any(points for _, points in series):
        axes.legend(fontsize=7, loc="best")
    return _png(figure)


def crops(panels: Sequence[tuple[str, np.ndarray | None]], title: str) -> bytes:
    """A row of zoomed crops with their captions; a missing panel (None) says why, as its caption
    does after the colon ('DRN+: not planned'), else 'not run'."""
    figure, axes = plt.subplots(1, len(panels), figsize=(2.1 * len(panels), 2.5))
    for axis, (caption, pixels) in zip(np.atleast_1d(axes), panels, strict=True):
        axis.set_xticks([])
        axis.set_yticks([])
        axis.grid(False)
        if pixels is None:
            why = caption.partition(": ")[2] or "not run"
            axis.text(0.5, 0.5, why, ha="center", va="center", transform=axis.transAxes)
        else:
            axis.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None, vmin=0, vmax=255,
                        interpolation="nearest")  # fmt: skip
        axis.set_xlabel(caption, fontsize=8)
    figure.suptitle(title, fontsize=9)
    return _png(figure)
