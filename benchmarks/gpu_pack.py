"""Several training runs on one GPU, in one call: K co-located `drn x2` runs, with and without MPS.

K = 1 and 4, each by time slicing and (where MPS is available) through a private CUDA MPS daemon
(drn/engine/mps.py's private_mps), then K = 2 and 8 as --budget-s allows. The K runs are the
plan's drn x2 at seeds 0..K-1 (`--set train.seeds=[0,...,K-1]`: drn_x2, drn_x2_s1, ...), each a
`drn train --run NAME` process, all started at once, with the engine's GPU defaults (bf16
autocast, channels_last, compile with CUDA graphs) on T91 as benchmarks/gpu_train.py trains it
(no validation), each with its share of the CPUs (OMP_NUM_THREADS, loader workers) as a pack
gives it. `drn train --run A --run B ...` (drn/pipeline/pack_job.py) starts these same
processes: this measures co-location itself, without the pack's bookkeeping.

Compilation (50-97 s per process when cold) is kept apart: every process shares one compile
cache (TORCHINDUCTOR_CACHE_DIR, TRITON_CACHE_DIR in a temporary folder), which a first warm-up
run fills, and each configuration's start-up (to step --warm-steps, compile and CUDA graph
capture included) is reported beside its rate. The rate comes from each run's logged progress
lines (`step N/TOTAL ... it_per_s R ...`) whose window starts once every run of the
configuration is past --warm-steps, over --measure-s: per run its steps over their windows'
time, the aggregate their sum. Peak GPU memory: the engine does not log it; sampled each second
from `nvidia-smi --query-compute-apps=pid,used_memory` by process ("n/a" without nvidia-smi, as
in --quick; under MPS, what nvidia-smi lists for each client).

Prints a short Markdown table, says why MPS is unavailable where it is, and writes
$OUT/gpu_pack.json (or --out). Data: T91 and Set5 in device/, as for benchmarks/gpu_train.py.
Run on a GPU:  PYTHONPATH=.:benchmarks python3 benchmarks/gpu_pack.py [--budget-s 450]
Check on CPU:  .venv/bin/python benchmarks/gpu_pack.py --quick   (tests/data, tiny model, K 1, 2)
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from common import machine  # noqa: E402
from gpu_train import RUN, environment, prepare_data, train_overrides  # noqa: E402

from drn.engine.mps import mps_unavailable, private_mps  # noqa: E402

CONFIGS = ((1, False), (1, True), (4, False), (4, True), (2, False), (2, True), (8, False),
           (8, True))  # fmt: skip  # (K, MPS): the first four first, the rest as time allows
QUICK_CONFIGS = ((1, False), (1, True), (2, False), (2, True))
STOP_S = 60  # how long the runs have to checkpoint and exit after SIGTERM
RATE = re.compile(r"step (\d+)/\d+ .*\bit_per_s ([0-9.e+-]+)")


@dataclass
class Member:
    """One `drn train --run NAME` process of a configuration and what it printed, timed."""

    run: str
    process: subprocess.Popen
    lines: list[tuple[float, str]] = field(default_factory=list)
    peak_mib: float | None = None

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def steps(self) -> list[tuple[float, int, float]]:
        """(arrival time, step, it_per_s) of each progress line."""
        found = [(t, RATE.match(line)) for t, line in self.lines]
        return [(t, int(m.group(1)), float(m.group(2))) for t, m in found if m]

    def reached(self, step: int) -> float | None:
        """When its first progress line at or past ``step`` came."""
        return next((t for t, s, _ in self.steps() if s >= step), None)


def run_names(sets: list[str], k: int) -> list[str]:
    """The plan's K runs of drn x2 at seeds 0..K-1 under ``sets`` (drn_x2, drn_x2_s1, ...)."""
    from drn.pipeline.params import apply_overrides, load_params, validate_params
    from drn.pipeline.plan import build_plan

    params = apply_overrides(load_params(REPO / "params.yaml"), sets)
    validate_params(params, "gpu_pack.py's settings")
    plan = build_plan(params)
    base = plan.run(RUN)
    same = [r for r in plan.trained_runs()
            if (r.variant, r.scale, r.epochs, r.loss) == (base.variant, base.scale, base.epochs,
                                                          base.loss)]  # fmt: skip
    runs = sorted(same, key=lambda r: r.seed)
    assert [r.seed for r in runs] == list(range(k)), [r.name for r in runs]
    return [r.name for r in runs]


def gpu_memory() -> dict[int, float]:
    """{pid: MiB} of the GPU's compute processes ({} without nvidia-smi)."""
    query = ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(query, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    used = {}
    for line in done.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            try:
                used[int(parts[0])] = float(parts[1])
            except ValueError:
                continue
    return used


class Sampler(threading.Thread):
    """Each member's peak GPU memory, and the peak sum of every compute process, each second."""

    def __init__(self, members: list[Member]):
        super().__init__(daemon=True)
        self.members, self.done, self.total_mib = members, threading.Event(), None
        self.available = shutil.which("nvidia-smi") is not None

    def run(self) -> None:
        while self.available and not self.done.wait(1.0):
            used = gpu_memory()
            if used:
                self.total_mib = max(self.total_mib or 0.0, sum(used.values()))
            for member in self.members:
                if member.process.pid in used:
                    member.peak_mib = max(member.peak_mib or 0.0, used[member.process.pid])


def rate(member: Member, since: float, until: float) -> tuple[float | None, int, int]:
    """(it/s, steps, windows) of the member's logged windows inside [since, until]: the steps
    over the windows' time (each window's start from its logged rate)."""
    steps, seconds, windows, previous = 0, 0.0, 0, None
    for arrived, step, per_s in member.steps():
        if previous is not None and step > previous and per_s > 0:
            window = step - previous
            if arrived - window / per_s >= since - 0.05 and arrived <= until:
                steps, seconds, windows = steps + window, seconds + window / per_s, windows + 1
        previous = step
    return (steps / seconds if seconds else None), steps, windows


def stop(members: list[Member]) -> None:
    """SIGTERM to every run still going (as Slurm sends), then wait; kill what remains."""
    for member in members:
        if member.process.poll() is None:
            member.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_S
    for member in members:
        try:
            member.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            member.process.kill()
            member.process.wait()


def train_together(names: list[str], sets: list[str], env: dict[str, str], quick: bool,
                   warm_steps: int, measure_s: float, limit_s: float,
                   logs: Path) -> dict:  # fmt: skip
    """Start one `drn train --run NAME` per name at once; stop them --measure-s after all are
    past ``warm_steps`` (or at ``limit_s``); their measures."""
    command = [sys.executable, "-m", "drn", "train", "--no-track", "--params",
               str(REPO / "params.yaml"), *(["--device", "cpu"] if quick else [])]  # fmt: skip
    for item in sets:
        command += ["--set", item]
    print("$", " ".join([*command, "--run", "NAME"]), f"for NAME in {' '.join(names)}", flush=True)
    started = time.monotonic()
    members = [
        Member(name, subprocess.Popen([*command, "--run", name], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, errors="replace",
                                      env=env))
        for name in names
    ]  # fmt: skip
    readers = [threading.Thread(target=m.read, daemon=True) for m in members]
    sampler = Sampler(members)
    for thread in (*readers, sampler):
        thread.start()
    steady = ended = None
    try:
        while time.monotonic() - started < limit_s:
            time.sleep(0.2)
            if any(m.process.poll() is not None for m in members):
                ended = next(m.run for m in members if m.process.poll() is not None)
                break
            reached = [m.reached(warm_steps) for m in members]
            if steady is None and all(t is not None for t in reached):
                steady = max(reached)
            if steady is not None and time.monotonic() - steady >= measure_s:
                break
    finally:
        stopped = time.monotonic()
        stop(members)
        sampler.done.set()
        for thread in readers:
            thread.join(timeout=10)
    logs.mkdir(parents=True, exist_ok=True)
    runs = {}
    for m in members:
        (logs / f"{m.run}.txt").write_text("".join(line + "\n" for _, line in m.lines))
        per_s, steps, windows = rate(m, steady, stopped) if steady else (None, 0, 0)
        first = next((t for t, _, _ in m.steps()), None)
        runs[m.run] = {
            "it_per_s": per_s, "measured_steps": steps, "windows": windows,
            "last_step": max((s for _, s, _ in m.steps()), default=0),
            "first_log_after_s": None if first is None else first - started,
            "peak_gpu_mib": m.peak_mib, "exit_code": m.process.returncode,
            "last_line": next((line for _, line in reversed(m.lines) if line.strip()), ""),
        }  # fmt: skip
    rates = [r["it_per_s"] for r in runs.values()]
    complete = steady is not None and all(r is not None for r in rates)
    return {
        "startup_s": None if steady is None else steady - started,
        "measured_s": None if steady is None else stopped - steady,
        "aggregate_it_per_s": sum(rates) if complete else None,
        "peak_gpu_mib_all_processes": sampler.total_mib, "runs": runs,
        "problem": None if complete else (
            f"run {ended} ended before the measure: {runs[ended]['last_line']}" if ended
            else f"not every run past step {warm_steps} with a logged window within "
                 f"{limit_s:.0f} s"),
    }  # fmt: skip


def worker_share(k: int, quick: bool) -> tuple[int, int]:
    """(OMP threads, loader workers) of each of K runs: the CPUs shared as a pack shares them."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cpus or 1) // k)
    return threads, 1 if quick else max(1, min(6, threads - 1))


def _f(value: float | None, form: str = ".1f") -> str:
    return "n/a" if value is None else format(value, form)


def table(results: dict) -> str:
    lines = ["| K | sharing | aggregate it/s | vs K=1 | per run it/s (min-max) | "
             "peak GPU MiB per run | start-up s | measured s |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    alone = {c["sharing"]: c.get("aggregate_it_per_s") for c in results["configs"] if c["k"] == 1}
    for c in results["configs"]:
        head = f"| {c['k']} | {c['sharing']} |"
        if c.get("skipped") or c.get("problem"):
            lines.append(f"{head} {c.get('skipped') or c['problem']} | | | | | |")
            continue
        rates = [r["it_per_s"] for r in c["runs"].values()]
        peaks = [r["peak_gpu_mib"] for r in c["runs"].values()]
        one = alone.get(c["sharing"]) or alone.get("time slicing")
        spread = f"{sum(rates) / len(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})"
        peak = "n/a" if None in peaks else f"{max(peaks):,.0f}"
        versus = f"{c['aggregate_it_per_s'] / one:.2f}x" if one else "n/a"
        lines.append(f"{head} {c['aggregate_it_per_s']:.1f} | {versus} | {spread} | {peak} | "
                     f"{_f(c['startup_s'])} | {_f(c['measured_s'])} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="holds T91/ and Set5/ (default: device/; "
                        "--quick: tests/data)")  # fmt: skip
    parser.add_argument("--budget-s", type=float, default=None,
                        help="whole run, warm-up included (default 450; --quick 150): a "
                        "configuration that would not fit is skipped, saying so")  # fmt: skip
    parser.add_argument("--measure-s", type=float, help="steady time measured per configuration "
                        "(default 30; --quick 4)")  # fmt: skip
    parser.add_argument("--warm-steps", type=int, help="steps left out of the rate, compile "
                        "included (default 300; --quick 10)")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="check the script on CPU: tests/data, a tiny model, K = 1 and "
                        "2")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results")))
    args = parser.parse_args(argv)
    budget = args.budget_s or (150.0 if args.quick else 450.0)
    measure_s = args.measure_s or (4.0 if args.quick else 30.0)
    warm_steps = args.warm_steps or (10 if args.quick else 300)
    data = args.data or REPO / ("tests/data" if args.quick else "device")
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    unavailable = mps_unavailable()  # --quick too: its MPS rows, where it has MPS, check the path
    results = {"machine": machine(), "quick": args.quick, "mps_unavailable": unavailable,
               "warm_steps": warm_steps, "measure_s": measure_s, "budget_s": budget,
               "configs": []}  # fmt: skip
    print(f"MPS: {'available' if unavailable is None else f'unavailable ({unavailable})'}",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="gpu_pack_") as scratch:
        work = Path(scratch)
        sources = prepare_data(data, work)
        caches = work / "compile"
        base = [*train_overrides(sources, work, args.quick), "train.validation.every=0",
                f"train.log_every={5 if args.quick else 50}"]  # fmt: skip

        def measure(k: int, mps: bool, label: str, limit_s: float, steady_s: float) -> dict:
            threads, workers = worker_share(k, args.quick)
            sets = [*base, f"paths.runs={work}/{label}/runs", f"train.workers={workers}",
                    f"train.seeds=[{', '.join(str(s) for s in range(k))}]"]  # fmt: skip
            names = run_names(sets, k)
            env = {**environment(), "OMP_NUM_THREADS": str(threads),
                   "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
                   "TRITON_CACHE_DIR": str(caches / "triton"),
                   "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
                   "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}  # fmt: skip
            with private_mps(work / label, "auto" if mps else "off") as sharing:
                print(f"{label}: {k} run(s); {sharing.describe()}", flush=True)
                if mps and not sharing.mps:
                    return {"skipped": f"MPS unavailable ({sharing.reason})"}
                env |= sharing.environment
                return train_together(names, sets, env, args.quick, warm_steps, steady_s,
                                      limit_s, args.out / "gpu_pack_logs" / label)  # fmt: skip

        left = budget - (time.monotonic() - began)
        warm = measure(1, False, "warmup", min(left, 90.0 if args.quick else 240.0), 0.0)
        results["warmup"] = {"startup_s": warm["startup_s"], "runs": warm["runs"]}
        print(f"warm-up (compile cache filled): start-up {_f(warm['startup_s'])} s", flush=True)
        startup = warm["startup_s"] or 0.0
        for k, mps in QUICK_CONFIGS if args.quick else CONFIGS:
            row = {"k": k, "sharing": "MPS" if mps else "time slicing"}
            left = budget - (time.monotonic() - began)
            needed = startup * max(1.0, k / 2) ** 0.5 + measure_s + 20
            if mps and unavailable is not None:
                row["skipped"] = f"MPS unavailable ({unavailable})"
            elif needed > left:
                row["skipped"] = f"time budget: about {needed:.0f} s needed, {left:.0f} s left"
            else:
                label = f"k{k}_{'mps' if mps else 'ts'}"
                row |= measure(k, mps, label, left - STOP_S / 2, measure_s)
                startup = row.get("startup_s") or startup  # the last with a warm cache
            results["configs"].append(row)
            print(json.dumps(row), flush=True)
    (args.out / "gpu_pack.json").write_text(json.dumps(results, indent=2))
    mps_line = "MPS: a private daemon per configuration (drn/engine/mps.py)" if unavailable is \
        None else f"MPS unavailable: {unavailable}"  # fmt: skip
    print(f"\n## {RUN} runs co-located on one device\n\n{mps_line}; compile warm-up "
          f"{_f(results['warmup']['startup_s'])} s (cold cache); rates after step {warm_steps}, "
          f"over {measure_s:g} s\n\n{table(results)}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
