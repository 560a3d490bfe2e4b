"""The training engine on a GPU, in one call: a real `drn train` run, model speed, the loader.

1. `drn train --run drn_x2` (the plan's x2 DRN run) on T91 without t20 (the one image smaller
   than a 48x48 LR patch at x2) with the paper's recipe and the engine's GPU defaults (bf16
   autocast, channels_last, compile with CUDA graphs), stopped by SIGTERM after --train-s
   seconds as Slurm would stop it; then `drn evaluate` of the checkpoint it wrote on Set5 x2,
   beside bicubic.
2. benchmarks/gpu_models.py for `drn_plus` (fp32, bf16, bf16 + channels_last, CUDA graph).
3. Training patches/s of the DataLoader by number of workers (benchmarks/bench_loader.py).

Prints a short Markdown table of each and writes $OUT/gpu_train.json (or --out).
Data: copy ../shared/data/T91 and Set5 into device/ (ignored by git) and carry it.
Run on a GPU:  PYTHONPATH=.:benchmarks python3 benchmarks/gpu_train.py [--train-s 480]
Check on CPU:  .venv/bin/python benchmarks/gpu_train.py --quick   (tests/data, tiny model, ~30 s)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

RUN = "drn_x2"  # the plan's run: drn at x2 with train.epochs.drn and train.loss
QUICK_STOP_STEP = 20  # --quick: SIGTERM once this step is logged, whatever the CPU's speed
TINY = "{channels: 16, block_channels: 16, distill: 4, blocks: 2, groups: 1}"


def environment() -> dict[str, str]:
    path = f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def run(command: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
    print("$", " ".join(command), flush=True)
    return subprocess.run(
        command, env=environment(), capture_output=True, text=True, timeout=timeout
    )


def prepare_data(data: Path, work: Path) -> Path:
    """{work}/data with the sources T91 (without t20) and Set5, images only; returns it."""
    folder = work / "data"
    shutil.copytree(data / "T91", folder / "T91", ignore=shutil.ignore_patterns("t20.png", "*.tsv"))
    shutil.copytree(data / "Set5", folder / "Set5", ignore=shutil.ignore_patterns("*.tsv"))
    return folder


def train_overrides(data: Path, work: Path, quick: bool) -> list[str]:
    """The `--set` items of the training run on top of params.yaml: the sources T91 (training)
    and Set5 (validation) in ``data``, everything it writes under ``work``; --quick adds a tiny
    model, small batches and 1000 iterations (stopped long before)."""
    sets = [
        f"paths.data={data}", f"paths.runs={work}/runs", "sources.T91={local: null}",
        "train.data.hr=T91", "train.data.lr_prefix=null", f"train.data.cache={work}/cache",
        "train.validation.source=Set5", "train.validation.images=5",
        "train.validation.every=1000", "train.log_every=250", "train.workers=6",
    ]  # fmt: skip
    if quick:
        sets += [
            f"models.drn={TINY}", "train.batch=4", "train.patch=24", "train.log_every=5",
            "train.workers=1", "train.validation.images=1", "train.iterations_per_epoch=1",
            "train.epochs.drn=1000",
        ]  # fmt: skip
    return sets


def logged_step(line: str) -> int:
    """N of a training progress line ``step N/TOTAL loss ... it_per_s ...``; 0 for others."""
    found = re.match(r"step (\d+)/\d+ ", line)
    return int(found.group(1)) if found else 0


def last_number(lines: list[str], key: str) -> float | None:
    for line in reversed(lines):
        if found := re.search(rf"\b{key} ([0-9.e+-]+)", line):
            return float(found.group(1))
    return None


def train_and_evaluate(data: Path, out: Path, seconds: float, quick: bool) -> dict:
    """The training run stopped by SIGTERM, and its checkpoint evaluated; its measures."""
    with tempfile.TemporaryDirectory(prefix="gpu_train_") as work:
        return _train_and_evaluate(data, Path(work), out, seconds, quick)


def _train_and_evaluate(data: Path, work: Path, out: Path, seconds: float, quick: bool) -> dict:
    from drn.protocol.scoring import evaluate_bicubic

    sources = prepare_data(data, work)
    command = [sys.executable, "-m", "drn", "train", "--run", RUN, "--no-track",
               "--params", str(REPO / "params.yaml")]  # fmt: skip
    for item in train_overrides(sources, work, quick):
        command += ["--set", item]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment()
    )
    log: list[str] = []
    first_step_at = stopped_at = None
    for line in process.stdout:
        log.append(line)
        print(line, end="", flush=True)
        elapsed = time.perf_counter() - started
        step = logged_step(line)
        if step and first_step_at is None:
            first_step_at = elapsed
        if elapsed > seconds or (quick and step >= QUICK_STOP_STEP):
            process.send_signal(signal.SIGTERM)  # as Slurm sends before a time limit
            stopped_at = elapsed
            break
    log.extend(process.stdout.read().splitlines(keepends=True))
    code = process.wait(timeout=120)
    (out / "train_log.txt").write_text("".join(log))
    steps = [line for line in log if logged_step(line)]
    stop = re.search(r"stopped by signal \w+ at step (\d+)", "".join(log))
    checkpoint = work / "runs" / RUN / "checkpoints/last.pt"
    evaluation = run([sys.executable, "-m", "drn", "evaluate", "--model", str(checkpoint),
                      "--hr", str(sources / "Set5"), "--scale", "2",
                      "--json", str(out / "set5_x2.json")])  # fmt: skip
    print(evaluation.stdout[-2000:], evaluation.stderr[-2000:], flush=True)
    score = json.loads((out / "set5_x2.json").read_text()) if evaluation.returncode == 0 else {}
    bicubic = evaluate_bicubic(sources / "Set5", 2)
    return {
        "exit_code": code, "seconds": seconds, "sigterm_after_s": stopped_at,
        "first_log_after_s": first_step_at,
        "log_every": logged_step(steps[0]) if steps else None,
        "last_logged_step": logged_step(steps[-1]) if steps else 0,
        "checkpoint_step": int(stop.group(1)) if stop else None,
        "steady_it_per_s": last_number(steps, "it_per_s"),
        "data_wait_fraction": last_number(steps, "data_wait_fraction"),
        "set5_x2_psnr": score.get("psnr"), "set5_x2_ssim": score.get("ssim"),
        "bicubic_set5_x2_psnr": bicubic.psnr, "bicubic_set5_x2_ssim": bicubic.ssim,
    }  # fmt: skip


def _f(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def training_table(result: dict) -> str:
    """The training run as docs/PERFORMANCE.md shows it ("The training engine on an H100")."""
    every, last = result["log_every"], result["last_logged_step"]
    stopped = (
        f"SIGTERM at {_f(result['sigterm_after_s'], '.0f')} s"
        if result["sigterm_after_s"] is not None
        else "ended by itself"
    )
    rows = [
        (f"start-up (compile included) + first {every or '?'} iterations",
         f"{_f(result['first_log_after_s'], '.1f')} s"),
        (f"steady speed (iterations {last - every}-{last})" if every else "steady speed",
         f"{_f(result['steady_it_per_s'], '.1f')} iterations/s"),
        ("fraction of time waiting for data",
         f"{_f(result['data_wait_fraction'] and 100 * result['data_wait_fraction'], '.1f')}%"),
        (stopped, f"checkpoint at step {result['checkpoint_step']}, "
                  f"exit code {result['exit_code']}"),
        ("`drn evaluate` of that checkpoint, Set5 x2",
         f"{_f(result['set5_x2_psnr'], '.2f')} dB / {_f(result['set5_x2_ssim'], '.4f')} "
         f"(bicubic: {result['bicubic_set5_x2_psnr']:.2f} / "
         f"{result['bicubic_set5_x2_ssim']:.4f})"),
    ]  # fmt: skip
    return "\n".join(["| what | measured |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows)])


def loader_table(rates: dict[int, float]) -> str:
    lines = ["| workers | patches/s | per worker |", "|---|---|---|"]
    lines += [f"| {w} | {r:,.0f} | {r / max(w, 1):,.0f} |" for w, r in rates.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="holds T91/ and Set5/ (default: device/; --quick: tests/data)"
    )
    parser.add_argument("--train-s", type=float, default=110, help="SIGTERM after this")
    parser.add_argument(
        "--quick", action="store_true",
        help=f"check the script on CPU: tests/data, a tiny model, SIGTERM at step "
        f"{QUICK_STOP_STEP}, tiny model benchmark, 2 loader settings",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results")))
    args = parser.parse_args(argv)
    data = args.data or REPO / ("tests/data" if args.quick else "device")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"train": train_and_evaluate(data, args.out, args.train_s, args.quick)}
    print(json.dumps(results["train"]), flush=True)

    models = run([
        sys.executable, str(REPO / "benchmarks/gpu_models.py"), "--variant", "drn_plus",
        "--impls", "fast", "--modes", "fp32,bf16,bf16+cl,bf16+graph",
        "--out", str(args.out), *(["--quick"] if args.quick else []),
    ], timeout=240)  # fmt: skip
    print(models.stdout[-3000:], models.stderr[-1500:] if models.returncode else "", flush=True)

    from bench_loader import patches_per_second

    loader = {}
    with tempfile.TemporaryDirectory() as work:
        hr = prepare_data(data, Path(work)) / ("Set5" if args.quick else "T91")
        for workers in (0, 1) if args.quick else (0, 2, 4, 8):
            loader[workers] = patches_per_second(
                hr, workers, 100 if args.quick else 300, Path(work) / "cache"
            )
            print(f"loader: {workers} workers: {loader[workers]:,.0f} patches/s", flush=True)
    results["loader_patches_per_s"] = loader
    (args.out / "gpu_train.json").write_text(json.dumps(results, indent=2))
    print(f"\n## drn train --run {RUN}\n\n{training_table(results['train'])}")
    model_rows = [line for line in models.stdout.splitlines() if line.startswith("|")]
    print("\n## drn_plus training step\n\n" + "\n".join(model_rows))
    print(f"\n## Loader\n\n{loader_table(loader)}", flush=True)


if __name__ == "__main__":
    main()
