"""The plan of params.yaml (drn/pipeline/plan.py: every run and evaluation, their names and files), the
paths and scheduler resources the rules share, and the supervisor every rule's command runs under
(drn/pipeline/job.py: retries by cause, a record of attempts beside each job's log)."""

import math
import re

from drn.pipeline import job as attempts

from drn.pipeline.params import source_path, validate_params
from drn.pipeline.plan import BICUBIC, build_plan, eval_path, run_directory
from drn.engine.settings import result_settings
from drn.pipeline.settings import settings_from_params

validate_params(config, "params.yaml")
PLAN = build_plan(config)

DATA = config["paths"]["data"]
RESULTS = config["paths"]["results"]
LOGS = f"{RESULTS}/logs"
CACHE = config["train"]["data"]["cache"]
SUMMARY = [f"{RESULTS}/summary.md", f"{RESULTS}/summary.json"]
REPORTS = config["paths"]["reports"]
REPORT = [f"{REPORTS}/report.html", f"{REPORTS}/report.md"]
RETRY = {"out_of_memory": 1, "memory_growth": 2, **config["resources"].get("retry", {})}
BRIEF_MINUTES = 5  # the time limit of an attempt that will not run (it prints why and exits)
ENV = "../../environment.yml"
DOWNSCALED = config["downscaled"] or {}
RUN = run_directory(config, "{run}")  # a run's directory, for the plan's run names


def alternatives(names):
    """A wildcard constraint that accepts exactly these names."""
    return "|".join(sorted(re.escape(str(n)) for n in set(names))) or "(?!)"


wildcard_constraints:
    source=alternatives(config["sources"]),
    derived=alternatives(DOWNSCALED),
    run=alternatives(run.name for run in PLAN.runs),
    label=alternatives(e.label for e in PLAN.evaluations if e.run),
    dataset=alternatives(e.dataset for e in PLAN.evaluations),
    scale=r"\d+",


def source_dir(name):
    return str(source_path(config, name))


def run_settings(name):
    """The settings of the plan's run `name`, as `drn train --run` resolves them."""
    run = PLAN.run(name)
    return settings_from_params(config, run.variant, run.scale, run.epochs, run.loss, run.seed)


def train_inputs(wildcards):
    """What a run reads: its scale's training cache, the validation source and the weights it
    starts from (train.init_from), if any."""
    settings = run_settings(wildcards.run)
    optional = {"validation": settings.val_hr, "init_from": settings.init_from}
    return {"cache": settings.cache, **{k: v for k, v in optional.items() if v}}


def evaluated(wildcards):
    return PLAN.evaluation(wildcards.label, wildcards.scale, wildcards.dataset)


def gpu_job(kind):
    """Scheduler resources of a GPU job from params.yaml (gpu: 0 makes it a CPU job)."""
    spec = config["resources"][kind]
    if spec["gpu"] == 0:
        resources = {"mem_mb": spec["mem_mb"], "runtime": spec["runtime"], "cpus_per_task": spec["cpus_per_gpu"]}
    else:
        resources = {key: spec[key] for key in ("gpu", "cpus_per_gpu", "mem_mb", "runtime")}
        if spec.get("gpu_model"):
            resources["gpu_model"] = spec["gpu_model"]
    if spec.get("stop_before_limit"):
        # Slurm sends SIGTERM to the job's step (snakemake, drn; not the batch shell, whose
        # death would end the job) that long before the time limit: drn checkpoints and exits.
        resources["slurm_extra"] = f"--signal=TERM@{spec['stop_before_limit']}"
    return resources


def cpu_job(kind):
    spec = config["resources"][kind]
    return {"mem_mb": spec["mem_mb"], "runtime": spec["runtime"], "cpus_per_task": spec["cpus"]}


def attempt_decision(wildcards, attempt, rulename):
    """What the record of this job's attempts (beside its log) says `attempt` does."""
    log = workflow.get_rule(rulename).log[0].apply_wildcards(wildcards)
    return attempts.decide_from_record(log, attempt, RETRY["out_of_memory"])


def job_resources(kind):
    """Scheduler resources of a `kind` job (gpu_job or cpu_job), by attempt, from the record of the
    job's attempts (Snakemake evaluates them each time it submits a job): mem_mb x memory_growth
    after each attempt that ran out of memory (params.yaml resources.retry); an attempt that will
    not run (after a usage or data error, or running out of memory again) asks for 1 CPU, no GPU
    and a few minutes, prints why and exits. `attempt` is the supervisor's."""
    wanted = gpu_job(kind) if "gpu" in config["resources"][kind] else cpu_job(kind)
    brief = {"mem_mb": wanted["mem_mb"], "runtime": min(wanted["runtime"], BRIEF_MINUTES),
             "cpus_per_task": 1}  # fmt: skip

    def by_attempt(key):
        def value(wildcards, attempt, rulename):
            decision = attempt_decision(wildcards, attempt, rulename)
            if not decision.run:
                return brief.get(key)  # None: not asked for
            if key == "mem_mb":
                return math.ceil(wanted[key] * RETRY["memory_growth"] ** decision.memory_steps)
            return wanted.get(key)

        return value

    keys = [*wanted, *(["cpus_per_task"] if "cpus_per_task" not in wanted else [])]
    return {"attempt": lambda wildcards, attempt: attempt, **{k: by_attempt(k) for k in keys}}


def supervised(command):
    """A rule's shell command: `command` under drn's supervisor (drn/pipeline/job.py), which writes its
    output to the rule's log, passes on the scheduler's signals, records the attempt beside the
    log ({log} without .log, plus .attempts.jsonl) and does not run it again after a usage or data
    error. `exec`: the supervisor replaces the shell, which would otherwise die of the SIGTERM
    Slurm sends a job step before its time limit, ending the step before drn checkpoints."""
    return (
        "exec python -m drn.pipeline.job --log {log} --attempt {resources.attempt} "
        f"--memory-retries {RETRY['out_of_memory']} -- {command}"
    )


def job_threads(kind):
    """A job's `threads`: the CPUs its resources ask for (cpus, or cpus_per_gpu per GPU, as the
    Slurm plugin's --cpus-per-task / --cpus-per-gpu). Snakemake exports them to the job as
    OMP_NUM_THREADS (capped at --cores), which drn.core.threads reads."""
    spec = config["resources"][kind]
    if "cpus" in spec:
        return spec["cpus"]
    return spec["cpus_per_gpu"] * max(1, spec["gpu"])


def gpus(kind):
    return config["resources"][kind]["gpu"]
