"""One DRN training step (forward + backward, batch 16 of 48x48 LR patches) on a GPU.

For drn x2 and x4, the fast model and the plain reference (tests/reference_drn.py) in:
fp32 (TF32 off); tf32 (cuDNN's default); bf16 autocast; bf16 + channels_last; compiled
(bf16 + channels_last); bf16+graph (the eager step captured once in a CUDA graph and replayed);
compiled+graph (torch.compile's reduce-overhead mode, which adds CUDA graphs). For each:
milliseconds per step (median of CUDA-event timings), peak memory, and achieved TFLOP/s (FLOPs
of the step counted by torch.utils.flop_counter) against the card's bf16 matrix-product peak
measured in the same run. Prints a Markdown table as it goes and writes JSON to $OUT (or --out).

Run on a GPU:  PYTHONPATH=. python3 benchmarks/gpu_models.py
Check on CPU:  .venv/bin/python benchmarks/gpu_models.py --quick
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from reference_drn import ReferenceDRN  # noqa: E402

from drn.models import build_model, resolve_config  # noqa: E402

MODES = ("fp32", "tf32", "bf16", "bf16+cl", "compiled", "bf16+graph", "compiled+graph")
COMPILED = ("compiled", "compiled+graph")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_peak_tflops(device: torch.device, n: int) -> float:
    """bf16 n x n x n matrix product rate on random data (the card's practical ceiling)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = median_ms(lambda: a @ b, device, warmup=3, repeats=10)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def set_tf32(enabled: bool) -> None:
    torch.backends.cudnn.allow_tf32 = enabled
    torch.backends.cuda.matmul.allow_tf32 = enabled


def make_step(model, lr, hr, mode, device):
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=mode != "bf16+graph")
        if mode.startswith(("bf16", "compiled"))
        else nullcontext()
    )

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast:
            sr = model(lr)
        torch.nn.functional.l1_loss(sr.float(), hr).backward()

    if mode != "bf16+graph" or device.type != "cuda":
        return step
    side = torch.cuda.Stream()  # warm up outside the capture, as torch.cuda.graphs asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    model.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        with autocast:
            sr = model(lr)
        torch.nn.functional.l1_loss(sr.float(), hr).backward()
    return graph.replay


def step_flops(model, lr, hr) -> int:
    with FlopCounterMode(display=False) as counter:
        model.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(lr), hr).backward()
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results")))
    parser.add_argument("--budget-s", type=float, default=420, help="skip compiling after this")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    parser.add_argument("--impls", default="fast,plain", help="fast, plain or both")
    parser.add_argument("--variant", default="drn", help="model variant (drn, drn_plus, ...)")
    args = parser.parse_args()
    started = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed shapes, as in training
    overrides = {"groups": 1, "blocks": 2} if args.quick else {}
    batch, patch = (2, 12) if args.quick else (16, 48)
    warmup, repeats = (1, 2) if args.quick else (5, 20)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    peak = matmul_peak_tflops(device, 512 if args.quick else 8192)
    print(f"# DRN training step, {datetime.date.today()}, {name}, torch {torch.__version__}")
    print(f"bf16 matmul peak measured: {peak:.0f} TFLOP/s; batch {batch} of {patch}x{patch} LR")
    print("| model | impl | mode | ms/step | steps/s | peak mem GiB | TFLOP/s | % of peak |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for scale in (2, 4):
        torch.manual_seed(0)
        fast = build_model(args.variant, scale, **overrides).to(device)
        plain = ReferenceDRN(resolve_config(args.variant, **overrides), scale).to(device)
        plain.load_state_dict(fast.state_dict())
        lr = torch.rand(batch, 3, patch, patch, device=device)
        hr = torch.rand(batch, 3, patch * scale, patch * scale, device=device)
        set_tf32(False)
        flops = step_flops(fast, lr, hr)
        for impl, model in (("fast", fast), ("plain", plain)):
            if impl not in args.impls.split(","):
                continue
            for mode in args.modes.split(","):
                if mode in COMPILED and time.perf_counter() - started > args.budget_s:
                    print(f"| {args.variant} x{scale} | {impl} | {mode} | skipped |", flush=True)
                    continue
                set_tf32(mode == "tf32")
                channels_last = mode in ("bf16+cl", *COMPILED)
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                model = model.to(memory_format=fmt)
                x = lr.contiguous(memory_format=fmt)
                compile_mode = "reduce-overhead" if mode == "compiled+graph" else None
                runner = torch.compile(model, mode=compile_mode) if mode in COMPILED else model
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                ms = median_ms(make_step(runner, x, hr, mode, device), device, warmup, repeats)
                setup_s = time.perf_counter() - t0 - ms * (warmup + repeats) / 1e3
                memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0
                tflops = flops / (ms * 1e-3) / 1e12
                row = {
                    "variant": args.variant,
                    "scale": scale, "impl": impl, "mode": mode, "ms": ms,
                    "steps_per_s": 1e3 / ms, "peak_gib": memory, "tflops": tflops,
                    "percent_of_peak": 100 * tflops / peak, "step_flops": flops,
                    "setup_s": setup_s,
                }  # fmt: skip
                rows.append(row)
                print(
                    f"| {args.variant} x{scale} | {impl} | {mode} | {ms:.2f} | {1e3 / ms:.1f} "
                    f"| {memory:.2f} "
                    f"| {tflops:.1f} | {100 * tflops / peak:.1f} |",
                    flush=True,
                )
        model = None
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"device": name, "torch": torch.__version__, "peak_bf16_tflops": peak, "rows": rows}
    (args.out / f"gpu_models_{args.variant}.json").write_text(json.dumps(summary, indent=2))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
