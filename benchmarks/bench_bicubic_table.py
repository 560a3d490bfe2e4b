"""The full Bicubic table (Set5, Set14, B100, Urban100 at x2, x3, x4) with `drn evaluate`'s code.

Prints each cell's PSNR/SSIM and time, and the total wall-clock time.
Run: .venv/bin/python benchmarks/bench_bicubic_table.py
"""

from __future__ import annotations

import datetime
import time

from common import SHARED, machine

from drn.protocol.scoring import evaluate_bicubic

DATASETS = ("Set5", "Set14", "B100", "Urban100")


def main() -> None:
    print(f"# Bicubic table, {datetime.date.today()}, {machine()}")
    print("| set | x2 | x3 | x4 | time |")
    print("|---|---|---|---|---|")
    start = time.perf_counter()
    for dataset in DATASETS:
        cells, t0 = [], time.perf_counter()
        for scale in (2, 3, 4):
            result = evaluate_bicubic(SHARED / dataset, scale)
            cells.append(f"{result.psnr:.2f} / {result.ssim:.4f}")
        print(f"| {dataset} | {' | '.join(cells)} | {time.perf_counter() - t0:.1f} s |")
    print(f"\ntotal: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
