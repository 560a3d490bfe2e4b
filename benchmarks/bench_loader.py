"""Training patches per second from the decoded cache, by number of DataLoader workers.

Batches of 16 LR patches of 48x48 (and their x2 HR patches) with flips and rotations, from the
uint8 memory-mapped cache of B100 (by default), as `drn train` loads them. Prints a Markdown table.
Run: .venv/bin/python benchmarks/bench_loader.py [--hr DIR] [--workers 0 1 2]
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

from common import SHARED, machine

from drn.engine.dataset import PatchDataset, StepSampler, build_cache, patch_loader


def patches_per_second(hr: Path, workers: int, steps: int, cache: Path) -> float:
    pairs, _ = build_cache(hr, None, 2, cache, patch=48)
    dataset = PatchDataset(pairs, scale=2, patch=48, seed=0)
    batches = iter(patch_loader(dataset, StepSampler(0, steps + 10, 16), workers, False, 0))
    for _ in range(10):  # workers started and warm
        next(batches)
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return steps * 16 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hr", type=Path, default=SHARED / "B100")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    print(f"# Patch loader, {datetime.date.today()}, {machine()}, {os.cpu_count()} cores")
    print("| workers | patches/s | per worker |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as cache:
        for workers in args.workers:
            rate = patches_per_second(args.hr, workers, args.steps, Path(cache))
            print(f"| {workers} | {rate:,.0f} | {rate / max(workers, 1):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
