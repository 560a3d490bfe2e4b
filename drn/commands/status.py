"""``drn status``: where the plan's runs stand, read from their files (read-only, in seconds).

A table on a terminal, plain lines otherwise (a pipe, a log), ``--json`` for scripts; ``--watch
SECONDS`` redraws until Ctrl-C. The gathering is :mod:`drn.pipeline.status`'s; this module only
prints it.
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from drn.commands.options import add_params_option, read_params
from drn.commands.output import print_whole, say, stdout

if TYPE_CHECKING:
    from rich.table import Table

    from drn.pipeline.status import MilestoneStatus, PlanStatus, RunStatus


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"invalid interval {text!r}: expected seconds > 0")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "status", help="where the plan's runs stand: state, step, ETA, PSNR, GPU-hours",
        description="Read-only, in seconds, from the files the jobs write: for each trained run "
        "of the plan of params.yaml its state (not started, queued, running, stopped, will "
        "resume, failed, finished), step, iterations/s and ETA, validation PSNR, milestone "
        "verdicts, GPU-hours so far beside the projection, evaluations done; the plan's totals "
        "and ETA; a damaged file or a stale Snakemake lock in one line. Runs in the directory "
        "the workflow runs in (params.yaml's paths are relative to it). Exit 0.",
    )  # fmt: skip
    add_params_option(parser)
    parser.add_argument("--json", action="store_true", help="as JSON, for scripts")
    parser.add_argument(
        "--watch", type=_seconds, metavar="SECONDS",
        help="redraw every SECONDS until Ctrl-C (with --json: one JSON object a line); the plan "
        "is params.yaml's when it started",
    )  # fmt: skip
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import json

    from drn.pipeline.cost import estimate
    from drn.pipeline.plan import build_plan
    from drn.pipeline.status import plan_status

    params = read_params(args.params)
    plan = build_plan(params)
    costs = {r.name: estimate(params, r) for r in plan.trained_runs()}  # once, also to --watch

    def gather() -> PlanStatus:
        return plan_status(params, plan, costs=costs)

    if args.watch is None:
        if args.json:
            say(json.dumps(gather().to_json(), indent=2))
        else:
            show(gather())
        return 0
    try:
        while True:
            status = gather()
            if args.json:
                say(json.dumps(status.to_json()))
            else:
                if stdout.is_terminal:
                    stdout.clear()
                say(f"drn status at {status.now}, every {args.watch:g} s (Ctrl-C ends)")
                show(status)
                say("")
            time.sleep(args.watch)
    except KeyboardInterrupt:
        return 0


def show(status: PlanStatus) -> None:
    """A rich table on a terminal, plain lines elsewhere; then the plan's totals."""
    if stdout.is_terminal:
        print_whole(table(status))
        for line in footer(status):
            say(line)
    else:
        for line in lines(status):
            say(line)


# ------------------------------------------------------------------------------ plain lines


def lines(status: PlanStatus) -> list[str]:
    """One line per run, one per milestone and per note or problem under it; then the totals."""
    out = []
    for r in status.runs:
        out.append(f"{r.run} ({', '.join(r.roles)}): " + "; ".join(_facts(r)))
        for m in r.milestones:
            out.append(f"  milestone {m.run} at step {m.step:,}: {_milestone(m)}")
        if r.state == "failed" and (r.cause or r.message):
            out.append(f"  {r.cause or 'failed'}: {r.message or 'see the job log'}")
        elif r.note:
            out.append(f"  {r.note}")
        out += [f"  {problem}" for problem in r.problems]
    return out + footer(status)


def _facts(r: RunStatus) -> list[str]:
    facts = [r.state, f"step {r.step:,} of {r.iterations:,} ({_percent(r.step, r.iterations)})"]
    if r.state == "running":
        facts += [_rate(r.it_per_s) or "no rate yet"]
        facts += [f"ETA {_duration(r.eta_s)}"] if r.eta_s is not None else []
        facts += [f"segment to step {r.until:,}"] if r.until else []
    if r.latest_val_psnr is not None:
        best = f" (best {r.best_val_psnr:.2f})" if r.best_val_psnr is not None else ""
        facts.append(
            f"val PSNR {r.latest_val_psnr:.2f} dB at step {r.latest_val_step or 0:,}{best}"
        )
    facts.append(f"GPU-hours {r.gpu_hours:.2f} of {r.gpu_hours_projected:.2f} projected")
    facts.append(f"evaluations {r.evaluations_done} of {r.evaluations}")
    facts += [f"Slurm job {r.slurm_job}"] if r.slurm_job else []
    facts += [f"{r.host} pid {r.pid}"] if r.host and r.pid else []
    return facts


def _milestone(m: MilestoneStatus) -> str:
    kept = "checkpoint kept" if m.kept else "not reached"
    text = f"{kept}; evaluations {m.evaluations_done} of {m.evaluations}"
    verdicts = [_verdict(v) for v in m.verdicts]
    return text + (": " + ", ".join(verdicts) if verdicts else "")


def _verdict(v) -> str:
    psnr = f" {v.psnr:.2f} dB" if v.psnr is not None else ""
    said = v.verdict or "no verdict"
    if v.delta_db is not None and v.expected is not None:
        said += f" ({v.delta_db:+.2f} dB of {v.expected:.2f})"
    return f"{v.dataset}{psnr} {said}"


def footer(status: PlanStatus) -> list[str]:
    """The plan's totals, its ETA, the released weights, and a stale lock."""
    from drn.pipeline.status import STATES

    t = status.total
    states = ", ".join(f"{t.states[s]} {s}" for s in STATES if s in t.states) or "no runs"
    out = [
        f"plan: {t.runs} trained runs: {states}",
        f"iterations {t.step:,} of {t.iterations:,} ({_percent(t.step, t.iterations)}); "
        f"GPU-hours {t.gpu_hours:.2f} so far of {t.gpu_hours_projected:.2f} projected "
        f"({t.hours:.2f} h trained); evaluations {t.evaluations_done} of {t.evaluations}",
    ]
    if t.eta_s is not None:
        out.append(f"ETA {_duration(t.eta_s)}, at {t.at_once} run(s) at once and their rates")
    elif t.step < t.iterations:
        out.append("ETA: none (no run is training now)")
    for r in status.released:
        if r.state == "not there":
            out.append(f"released {r.key}: {r.file} is not there: left out of the plan "
                       f"(download it from {r.url})")  # fmt: skip
        else:
            out.append(f"released {r.key}: {r.state}; evaluations {r.evaluations_done} of "
                       f"{r.evaluations}")  # fmt: skip
    out += [status.lock] if status.lock else []
    out += list(status.problems)
    return out


# ------------------------------------------------------------------------------ the table


def table(status: PlanStatus) -> Table:
    from rich.table import Table
    from rich.text import Text

    slurm = status.slurm or any(r.slurm_job for r in status.runs)
    grid = Table(title=f"{len(status.runs)} trained runs, at {status.now}", title_justify="left")
    right = ("step", "it/s", "ETA", "GPU-h", "evals")
    columns = ["run", "state", "step", "it/s", "ETA", "val PSNR (best)", "GPU-h", "evals"]
    columns += ["Slurm job"] if slurm else []
    for column in (*columns, "host/pid", "note"):
        grid.add_column(column, justify="right" if column in right else "left")
    for r in status.runs:
        psnr = f"{r.latest_val_psnr:.2f}" if r.latest_val_psnr is not None else ""
        psnr += f" ({r.best_val_psnr:.2f})" if r.best_val_psnr is not None else ""
        note = "; ".join([*([f"{r.cause}: {r.message}"] if r.cause else []),
                          *([r.note] if r.note else []), *r.problems])  # fmt: skip
        row = [
            r.run, _styled(r.state), f"{r.step:,} / {r.iterations:,}",
            _rate(r.it_per_s) if r.state == "running" else "",
            _duration(r.eta_s) if r.eta_s is not None else "", psnr,
            f"{r.gpu_hours:.2f} / {r.gpu_hours_projected:.2f}",
            f"{r.evaluations_done}/{r.evaluations}",
        ]  # fmt: skip
        row += [r.slurm_job or ""] if slurm else []
        grid.add_row(*row, f"{r.host}:{r.pid}" if r.host and r.pid else "", Text(note))
        for m in r.milestones:
            row = [f"  └ {m.run}", "kept" if m.kept else "", f"{m.step:,}", "", "",
                   Text(", ".join(_verdict(v) for v in m.verdicts)), "",
                   f"{m.evaluations_done}/{m.evaluations}"]  # fmt: skip
            grid.add_row(*row, *([""] if slurm else []), "", "", style="dim")
    return grid


def _styled(state: str):
    from rich.text import Text

    colour = {"running": "green", "failed": "bold red", "finished": "blue", "queued": "cyan",
              "stopped, will resume": "yellow"}.get(state, "")  # fmt: skip
    return Text(state, style=colour)


# ------------------------------------------------------------------------------ numbers


def _rate(it_per_s: float | None) -> str:
    if not it_per_s:
        return ""
    return f"{it_per_s:,.1f} it/s" if it_per_s >= 1 else f"{it_per_s:.2g} it/s"


def _percent(done: int, total: int) -> str:
    return f"{100 * done / total:.1f}%" if total else "-"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours = seconds // 60, seconds // 3600
    if hours < 1:
        return f"{minutes} min"
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"
