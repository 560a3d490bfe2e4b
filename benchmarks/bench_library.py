"""The library API's speed in a plain script: ``from drn import ssim, imresize`` beside
scikit-image and Pillow, on a quiet machine and beside one busy core.

Each load runs a fresh child process that is a plain script: it imports ``drn`` and calls the
public functions; no ``drn`` command, so no :func:`drn.core.threads.configure`, and whatever BLAS
threads numpy starts with (two on a 2-core machine). In that process, interleaved call by call:

* ``drn.ssim``: the public function, under :func:`drn.core.threads.blas_policy` (BLAS on one
  thread while it runs, the process's setting restored after it);
* ``without policy``: the same function unwrapped (``drn.ssim.__wrapped__``), on numpy's default
  BLAS threads: what a library caller got before the policy;
* ``skimage``: ``skimage.metrics.structural_similarity`` set to Wang et al.'s ``ssim_index``;
* and the same three for ``drn.imresize`` (1/2 of an RGB photo) against Pillow's BICUBIC.

"Busy" runs the child beside ``yes > /dev/null`` (started and stopped here). Times are medians of
``--calls`` calls (not the best: the best hides BLAS threads spinning against the busy core).
Prints one Markdown row per load; ratios are against the reference in the same process.
Run: .venv/bin/python benchmarks/bench_library.py [--calls 15] [--loads quiet,busy]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

from common import REPO, machine

CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from PIL import Image
from skimage.metrics import structural_similarity
from threadpoolctl import threadpool_info
from common import div2k_sized_photo

import drn
from drn.protocol.metrics import luma

photo = div2k_sized_photo()
hr = photo[:1356 - 1356 % 2, :2040 - 2040 % 2]
lr = drn.imresize(hr, 0.5)
a = luma(hr)
b = luma(drn.imresize(lr, 2))
pil = Image.fromarray(hr)
half = (hr.shape[1] // 2, hr.shape[0] // 2)
calls = {
    "ssim": lambda: drn.ssim(a, b),
    "ssim_unwrapped": lambda: drn.ssim.__wrapped__(a, b),
    "skimage": lambda: structural_similarity(
        a, b, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False),
    "imresize": lambda: drn.imresize(hr, 0.5),
    "imresize_unwrapped": lambda: drn.imresize.__wrapped__(hr, 0.5),
    "pillow": lambda: pil.resize(half, Image.BICUBIC),
}
times = {name: [] for name in calls}
for function in calls.values():
    function()
for _ in range(int(sys.argv[2])):
    for name, function in calls.items():
        start = time.perf_counter()
        function()
        times[name].append(time.perf_counter() - start)
blas = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
print(json.dumps({"median": {k: statistics.median(v) for k, v in times.items()},
                  "blas_threads_after": blas}))
"""


def measure(calls: int, busy: bool) -> dict:
    spinner = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if busy else None
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DRN_", "OMP_"))}
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(Path(__file__).parent), str(calls)],
            capture_output=True, text=True, check=True, cwd=REPO, env=env,
        ).stdout  # fmt: skip
    finally:
        if spinner is not None:
            spinner.terminate()
            spinner.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--loads", default="quiet,busy")
    args = parser.parse_args()
    print(f"# drn's public API in a plain script, {datetime.date.today()}, {machine()}")
    print(f"median of {args.calls} calls; ratios: the reference's time / this one's")
    print(
        "| load | drn.ssim | without policy | skimage | skimage / drn.ssim "
        "| skimage / without | drn.imresize | without policy | Pillow | Pillow / drn.imresize "
        "| BLAS threads after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for load in args.loads.split(","):
        result = measure(args.calls, busy=load == "busy")
        m = {k: v * 1e3 for k, v in result["median"].items()}
        print(
            f"| {load} | {m['ssim']:.0f} ms | {m['ssim_unwrapped']:.0f} ms | {m['skimage']:.0f} ms "
            f"| {m['skimage'] / m['ssim']:.2f}x | {m['skimage'] / m['ssim_unwrapped']:.2f}x "
            f"| {m['imresize']:.0f} ms | {m['imresize_unwrapped']:.0f} ms | {m['pillow']:.0f} ms "
            f"| {m['pillow'] / m['imresize']:.2f}x | {result['blas_threads_after']} |"
        )


if __name__ == "__main__":
    main()
