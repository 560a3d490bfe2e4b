"""The training engine on a GPU, in one call: a real `drn train` run, model speed, the loader.

1. `drn train` of `drn` x2 on T91 (without t20, the one image smaller than a 48x48 LR patch at
   x2) with the paper's recipe and the engine's GPU defaults (bf16 autocast, channels_last,
   compile with CUDA graphs), stopped by SIGTERM after --train-s seconds as Slurm would stop it;
   then `drn evaluate` of the checkpoint it wrote on Set5 x2.
2. benchmarks/gpu_models.py for `drn_plus` (fp32, bf16, bf16 + channels_last, CUDA graph).
3. Training patches/s of the DataLoader by number of workers (benchmarks/bench_loader.py).

Data: copy ../shared/data/T91 and Set5 into device/ (ignored by git) and carry it.
Run on a GPU:  PYTHONPATH=.:benchmarks python3 benchmarks/gpu_train.py
Check on CPU:  PYTHONPATH=.:benchmarks .venv/bin/python benchmarks/gpu_train.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def environment() -> dict[str, str]:
    path = f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def run(command: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    print("$", " ".join(command), flush=True)
    return subprocess.run(
        command, env=environment(), capture_output=True, text=True, timeout=timeout
    )


def train_and_evaluate(data: Path, out: Path, seconds: float, quick: bool) -> dict:
    hr = Path(tempfile.mkdtemp()) / "T91"
    shutil.copytree(data / "T91", hr, ignore=shutil.ignore_patterns("t20.png", "*.tsv"))
    run_dir = Path(tempfile.mkdtemp()) / "drn_x2"
    sets = [
        f"train.data.hr={hr}", "train.data.lr=null", f"train.data.cache={run_dir.parent}/cache",
        f"train.validation.hr={data / 'Set5'}", "train.validation.images=5",
        "train.validation.every=1000", "train.log_every=250", "train.workers=6",
    ]  # fmt: skip
    if quick:
        tiny = "models.drn={channels: 16, block_channels: 16, blocks: 2, groups: 1}"
        sets += [tiny, "train.log_every=5", "train.workers=2"]
    command = [
        sys.executable,
        "-m",
        "drn",
        "train",
        "--model",
        "drn",
        "--scale",
        "2",
        "--run-dir",
        str(run_dir),
        "--no-track",
        "--params",
        str(REPO / "params.yaml"),
    ]
    for item in sets:
        command += ["--set", item]
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment()
    )
    log = []
    first_step_at = None
    for line in process.stdout:
        log.append(line)
        print(line, end="", flush=True)
        if line.startswith("step ") and first_step_at is None:
            first_step_at = time.perf_counter() - started
        if time.perf_counter() - started > seconds:
            process.terminate()  # SIGTERM, as Slurm sends before a time limit
            break
    log.extend(process.stdout.read().splitlines(keepends=True))
    code = process.wait(timeout=120)
    (out / "train_log.txt").write_text("".join(log))
    steps = [line for line in log if line.startswith("step ")]
    rates = [float(m.group(1)) for s in steps if (m := re.search(r"it_per_s ([0-9.e+-]+)", s))]
    last_step = int(steps[-1].split()[1].split("/")[0]) if steps else 0
    evaluation = run([sys.executable, "-m", "drn", "evaluate", "--model",
                      str(run_dir / "checkpoints/last.pt"), "--hr", str(data / "Set5"),
                      "--scale", "2", "--json", str(out / "set5_x2.json")])  # fmt: skip
    print(evaluation.stdout[-2000:], evaluation.stderr[-2000:], flush=True)
    score = json.loads((out / "set5_x2.json").read_text()) if evaluation.returncode == 0 else {}
    return {
        "exit_code": code, "seconds": seconds, "first_log_after_s": first_step_at,
        "last_logged_step": last_step, "steady_it_per_s": rates[-1] if rates else None,
        "set5_x2_psnr": score.get("psnr"), "set5_x2_ssim": score.get("ssim"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "device")
    parser.add_argument("--train-s", type=float, default=110)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results")))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"train": train_and_evaluate(args.data, args.out, args.train_s, args.quick)}
    print(json.dumps(results["train"]), flush=True)

    models = run([
        sys.executable, str(REPO / "benchmarks/gpu_models.py"), "--variant", "drn_plus",
        "--impls", "fast", "--modes", "fp32,bf16,bf16+cl,bf16+graph",
        "--out", str(args.out), *(["--quick"] if args.quick else []),
    ], timeout=240)  # fmt: skip
    print(models.stdout[-3000:], models.stderr[-1500:] if models.returncode else "", flush=True)

    from bench_loader import patches_per_second

    loader = {}
    with tempfile.TemporaryDirectory() as cache:
        hr = args.data / "Set5" if args.quick else Path(tempfile.mkdtemp()) / "T91"
        if not args.quick:
            shutil.copytree(args.data / "T91", hr, ignore=shutil.ignore_patterns("t20.png"))
        for workers in (0, 2, 4, 8) if not args.quick else (0, 1):
            loader[workers] = patches_per_second(
                hr, workers, 100 if args.quick else 300, Path(cache)
            )
            print(f"loader: {workers} workers: {loader[workers]:,.0f} patches/s", flush=True)
    results["loader_patches_per_s"] = loader
    (args.out / "gpu_train.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
