"""The top of :mod:`drn.doctor`: the whole checklist, its exit code and its text.

It owns :func:`diagnose`, which runs every check of the other modules for validated params and a
profile; :func:`plan_cost` and :func:`check_plan` (``plan``: runs, evaluations, iterations and
the GPU-hour projection of drn.pipeline.cost, imported only when asked for); :func:`exit_code`;
and :func:`render`, the checklist as text. **Checks**, in the order printed:

* ``slurm.*`` (:mod:`drn.doctor.slurm`): the controller, the partition, the account, each kind
  of job against the nodes and MaxTime, the status command; skipped where there is no Slurm.
* ``env.*`` (:mod:`drn.doctor.environment`): the Python environment and the working directory
  on a file system the compute nodes see; torch with CUDA where jobs ask for GPUs (from its
  build here; ``--probe`` asks a GPU node); ``env.mps``, informational: whether a pack's runs can
  share the GPU through CUDA MPS where the jobs run (here, or the probe's node), else why they
  share it by time slicing.
* ``tracking`` (:mod:`drn.doctor.environment`): a sqlite store on a network file system fails
  with the ``mlflow server`` recipe; a server URI must answer an HTTP GET.
* ``data.*``, ``disk.*`` (:mod:`drn.doctor.storage`): every source the plan reads is there or
  can be; each file of released weights (``controls_released``) is there and the authors'; each
  file system has room for what the plan still writes there.
* ``plan`` (here), ``plan.attempts`` (:mod:`drn.doctor.attempts`, on Slurm only): what the plan
  costs, and whether the profile's ``retries`` cover the attempts each training needs.

The ``drn doctor`` command does ``from drn.doctor import checklist as doctor``: besides its own
functions, this module re-exports the others it calls (:func:`default_profile`,
:func:`load_profile`, :func:`last_attempts`, :func:`render_last`).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drn.doctor.attempts import check_attempts, last_attempts, render_last
from drn.doctor.environment import (
    check_mps_here,
    check_torch,
    check_tracking,
    probe,
    shared_path,
    torch_build,
)
from drn.doctor.profile import Profile, default_profile, load_profile, requests
from drn.doctor.result import FAIL, OK, SKIP, WARN, Result, Runner, command
from drn.doctor.slurm import slurm_checks
from drn.doctor.storage import check_disk, check_released, check_sources, disk_needs

__all__ = [
    "check_plan", "default_profile", "diagnose", "exit_code", "last_attempts", "load_profile",
    "plan_cost", "render", "render_last",
]  # fmt: skip


# --- the plan ----------------------------------------------------------------------------------


def plan_cost(params: dict[str, Any], plan: Any) -> tuple[Any | None, str]:
    """drn.pipeline.cost's projection of the plan where it exists (None, and why, if not)."""
    try:
        from drn.pipeline.cost import estimate_plan
    except ImportError:
        return None, "no GPU-hour projection here (drn.pipeline.cost is not installed)"
    try:
        return estimate_plan(params, plan), ""
    except Exception as error:  # a projection must never stop the checklist
        return None, f"no GPU-hour projection ({type(error).__name__}: {error})"


def check_plan(params: dict[str, Any], plan: Any, cost: Any | None, why: str) -> Result:
    from drn.pipeline.settings import settings_from_params

    runs, evaluations = len(plan.trained_runs()), len(plan.evaluations)
    if cost is not None and not params["resources"]["train"]["gpu"]:
        iterations = cost.total.iterations
        projection = "no GPU-hours: resources.train.gpu is 0 (the runs train on CPUs)"
    elif cost is not None:
        iterations = cost.total.iterations
        projection = (f"about {cost.total.gpu_hours:,.2f} GPU-hours (a projection from recorded "
                      "GPU throughput, not a measurement: drn plan --cost)")  # fmt: skip
    else:
        iterations = sum(
            settings_from_params(params, r.variant, r.scale, r.epochs, r.loss, r.seed).iterations
            for r in plan.trained_runs()
        )  # fmt: skip
        projection = why
    return Result("plan", OK, f"{runs} training runs ({iterations:,} iterations), "
                  f"{evaluations} evaluations; {projection}")  # fmt: skip


# --- everything ----------------------------------------------------------------------------------


def diagnose(params: dict[str, Any], profile: Profile, online: bool = False,
             with_probe: bool = False, run: Runner = command) -> list[Result]:  # fmt: skip
    """The whole checklist for validated ``params`` and ``profile``."""
    from drn.pipeline.packs import largest_pack
    from drn.pipeline.plan import build_plan

    plan = build_plan(params)
    packed = largest_pack(params, plan)
    sinfo = shutil.which("sinfo")
    results, cluster = slurm_checks(params, profile, run, sinfo, packed)
    slurm = profile.executor == "slurm" and sinfo is not None  # jobs run on other hosts
    wanted = requests(params, profile, packed)
    env = "venv" if sys.prefix != sys.base_prefix else (
        "conda env" if (Path(sys.prefix) / "conda-meta").is_dir() else "Python installation"
    )  # fmt: skip
    results.append(shared_path("env.python", f"Python {env}", Path(sys.prefix), cluster, slurm))
    results.append(shared_path("env.workdir", "working directory", Path.cwd(), cluster, slurm))
    results.append(check_torch(wanted, torch_build()))
    mps = params["resources"]["train"].get("mps", "auto")
    if with_probe and cluster is not None:
        logs = Path(params["paths"]["results"]) / "logs" / "doctor"
        results.extend(probe(wanted[0], logs, run, mps_mode=mps))  # env.probe, env.mps
    else:
        if with_probe:
            results.append(Result("env.probe", SKIP, "no Slurm to submit to"))
        results.append(check_mps_here(mps, wanted[0].gpus, slurm, cluster))
    results.append(check_tracking(params, slurm, cluster))
    results.extend(check_sources(params, plan, online))
    results.extend(check_released(plan))
    results.extend(check_disk(disk_needs(params, plan, online)))
    cost, why = plan_cost(params, plan)
    results.append(check_plan(params, plan, cost, why))
    if cluster is not None:
        results.append(check_attempts(params, cost, profile))
    return results


def exit_code(results: Iterable[Result]) -> int:
    """0 when nothing failed (warnings and skips pass), 1 otherwise."""
    return 1 if any(r.status == FAIL for r in results) else 0


def render(results: list[Result], params_path: str | os.PathLike, profile: Profile) -> list[str]:
    """The checklist as text lines: one per check, and its fix under a miss."""
    source = f"profile {profile.path}" if profile.path else "no profile"
    lines = [f"drn doctor: {params_path}; {source} (executor: {profile.executor})"]
    width = max((len(r.name) for r in results), default=0)
    for r in results:
        label = r.status.upper() if r.status in (WARN, FAIL) else r.status
        lines.append(f"{label:<4}  {r.name:<{width}}  {r.found}")
        if r.fix and r.status in (WARN, FAIL):
            lines.append(f"{'':<4}  {'':<{width}}  fix: {r.fix}")
    counts = {s: sum(1 for r in results if r.status == s) for s in (OK, WARN, FAIL, SKIP)}
    lines.append(f"{len(results)} checks: {counts[OK]} ok, {counts[WARN]} warnings, "
                 f"{counts[FAIL]} failed, {counts[SKIP]} skipped")  # fmt: skip
    return lines
