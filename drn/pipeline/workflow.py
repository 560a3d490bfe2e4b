"""What the Snakefile's rules compute, as plain functions of params.yaml and its plan.

Owns :class:`Workflow`, built once from params.yaml (Snakemake's ``config``) by
workflow/rules/common.smk, which the rule files then only call: the plan
(:mod:`drn.pipeline.plan`: every run and evaluation, their names and files) and the paths the rules
share; the wildcard constraints that accept exactly the plan's names; what a job reads (a run's
training cache, validation source and starting weights; an evaluation's model); the scheduler
resources of each kind of job, by attempt, from the record of the job's attempts that its
supervisor (:mod:`drn.pipeline.job`) keeps beside its log (retries by cause); the supervised
command line every rule runs; a job's threads.

No Snakemake here: what only Snakemake knows (a job's log path, from its rule) is passed in. No
torch either (:mod:`drn.pipeline.plan`, ``settings``, ``params`` and ``job`` load none), so the
Snakefile starts fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from drn.engine.releases import release_format
from drn.engine.settings import TrainSettings, result_settings
from drn.pipeline import job as attempts
from drn.pipeline.packs import Pack, build_packs, find_pack, pack_of, pack_resources
from drn.pipeline.params import source_path, validate_params
from drn.pipeline.plan import (
    Evaluation,
    Released,
    build_plan,
    milestone_checkpoint,
    released_checkpoint,
    run_directory,
)
from drn.pipeline.settings import settings_from_params

BRIEF_MINUTES = 5  # the time limit of an attempt that will not run (it prints why and exits)
RETRY = {"out_of_memory": 1, "memory_growth": 2}  # params.yaml resources.retry, by default

# A job's log path: fixed, or of (wildcards, rule name), as Snakemake's rule has it
LogPath = str | Callable[[Any, str], str]


def alternatives(names: Iterable[object]) -> str:
    """A wildcard constraint (a regular expression) that accepts exactly these names."""
    return "|".join(sorted(re.escape(str(n)) for n in set(names))) or "(?!)"


class Workflow:
    """params.yaml as the rules see it: validated, planned, with the paths the rules share.

    Methods taking ``wildcards`` are Snakemake input or params functions (any object with the
    wildcards as attributes will do)."""

    def __init__(self, config: dict[str, Any], source: str = "params.yaml") -> None:
        validate_params(config, source)
        self.config = config
        self.plan = build_plan(config)
        self.packs = build_packs(config, self.plan)  # resources.train.pack; none for 1
        paths = config["paths"]
        self.data: str = paths["data"]
        self.results: str = paths["results"]
        self.logs = f"{self.results}/logs"
        self.pack_records = f"{self.results}/packs"  # {pack}/step_{until}.json: pack outcomes
        self.cache: str = config["train"]["data"]["cache"]
        self.summary = [f"{self.results}/summary.md", f"{self.results}/summary.json"]
        self.reports: str = paths["reports"]
        self.report = [f"{self.reports}/report.html", f"{self.reports}/report.md"]
        self.retry: dict[str, Any] = {**RETRY, **config["resources"].get("retry", {})}
        self.downscaled: dict[str, dict[str, Any]] = config["downscaled"] or {}
        self.run_directory = run_directory(config, "{run}")  # a run's, for the plan's run names
        self.released = released_checkpoint(config, "{variant}", "{scale}")  # an import's

    # --- names and inputs ----------------------------------------------------------------------

    def wildcard_constraints(self) -> dict[str, str]:
        """Each wildcard accepts exactly the names of its kind (a scale: digits)."""
        plan = self.plan
        return {
            "source": alternatives(self.config["sources"]),
            "derived": alternatives(self.downscaled),
            "run": alternatives(run.name for run in plan.trained_runs()),
            "step": alternatives(step for run in plan.runs for step in run.milestones),
            "pack": alternatives(pack.name for pack in self.packs),
            "until": alternatives(step for pack in self.packs for step in pack.boundaries),
            "label": alternatives(e.label for e in plan.evaluations if not e.bicubic),
            "variant": alternatives(r.variant for r in plan.present_released()),
            "dataset": alternatives(e.dataset for e in plan.evaluations),
            "scale": r"\d+",
        }

    def source_dir(self, name: str) -> str:
        return str(source_path(self.config, name))

    def downscaled_from(self, wildcards: Any) -> str:
        """The directory of the source a downscaled copy is made of."""
        return self.source_dir(self.downscaled[wildcards.derived]["of"])

    def train_lr(self, wildcards: Any) -> list[str]:
        """The LR source a scale's training cache reads (train.data.lr_prefix), if any."""
        prefix = self.config["train"]["data"]["lr_prefix"]
        return [self.source_dir(f"{prefix}{wildcards.scale}")] if prefix else []

    def run_settings(self, name: str) -> TrainSettings:
        """The settings of the plan's run `name`, as `drn train --run` resolves them."""
        run = self.plan.run(name)
        return settings_from_params(
            self.config, run.variant, run.scale, run.epochs, run.loss, run.seed
        )

    def train_settings(self, wildcards: Any) -> dict[str, Any]:
        """The settings that change what a run computes (the train rule's params): a change reruns
        its job, which sets the old run directory aside (never deleted) and starts afresh."""
        return result_settings(self.run_settings(wildcards.run))

    def train_inputs(self, wildcards: Any) -> dict[str, Any]:
        """What a run's segment (up to ``wildcards.step``; without it, the last) reads: its
        scale's training cache, the validation source and the weights it starts from
        (train.init_from), if any; after the first segment the checkpoint the one before kept,
        and with train.stop_if_behind that milestone's evaluations (their verdict)."""
        run = self.plan.run(wildcards.run)
        step = int(getattr(wildcards, "step", run.iterations))
        if step not in run.segments:
            raise ValueError(f"run {run.name} has no segment ending at step {step}")
        pack = pack_of(self.packs, run.name)
        if pack is not None:  # trained by its pack's job: this job reads the pack's outcome
            return {"pack": self.pack_record(pack, pack.job_of(step))}
        inputs = self._run_inputs(run.name)
        before = [s for s in run.milestones if s < step]
        if before:
            inputs["previous"] = milestone_checkpoint(run.directory, before[-1])
            if self.config["train"].get("stop_if_behind"):
                evaluated = self.plan.milestone_evaluations(run.name, before[-1])
                inputs["verdicts"] = [e.path for e in evaluated]
        return inputs

    def _run_inputs(self, name: str) -> dict[str, str]:
        settings = self.run_settings(name)
        optional = {"validation": settings.val_hr, "init_from": settings.init_from}
        return {"cache": settings.cache, **{k: v for k, v in optional.items() if v}}

    # --- packs (resources.train.pack: drn/pipeline/packs.py) -----------------------------------

    def pack_record(self, pack: Pack, until: int) -> str:
        """The outcome of `pack`'s job up to step `until`: its output (each run's job reads it)."""
        return f"{self.pack_records}/{pack.name}/step_{until}.json"

    def _pack_job(self, wildcards: Any) -> tuple[Pack, int, tuple[str, ...]]:
        pack, until = find_pack(self.packs, wildcards.pack), int(wildcards.until)
        return pack, until, pack.members(until)

    def pack_inputs(self, wildcards: Any) -> dict[str, Any]:
        """What a pack's job up to ``wildcards.until`` reads: its runs' caches, validation
        source and starting weights, the job before's outcome and, with train.stop_if_behind,
        the evaluations of the milestones there (their verdicts)."""
        pack, until, members = self._pack_job(wildcards)
        inputs: dict[str, Any] = {}
        for name in members:
            for key, path in self._run_inputs(name).items():
                inputs.setdefault(key, set()).add(path)
        inputs = {key: sorted(paths) for key, paths in inputs.items()}
        before = pack.previous(until)
        if before is not None:
            inputs["previous"] = self.pack_record(pack, before)
            if self.config["train"].get("stop_if_behind"):
                evaluations = self.plan.milestone_evaluations
                inputs["verdicts"] = [e.path for name in members
                                      for e in evaluations(name, before)]  # fmt: skip
        return inputs

    def pack_settings(self, wildcards: Any) -> dict[str, Any]:
        """The pack job's params: its runs' settings (a change reruns it)."""
        return {name: result_settings(self.run_settings(name))
                for name in self._pack_job(wildcards)[2]}  # fmt: skip

    def pack_runs(self, wildcards: Any) -> str:
        """``--run A --run B ...``: the runs the pack's job trains, longest first."""
        return " ".join(f"--run {name}" for name in self._pack_job(wildcards)[2])

    def packed_option(self, wildcards: Any) -> str:
        """A run's job: `` --from-pack RECORD`` for a run of a pack (it trains nothing)."""
        run = self.plan.run(wildcards.run)
        pack = pack_of(self.packs, run.name)
        if pack is None:
            return ""
        step = int(getattr(wildcards, "step", run.iterations))
        return f" --from-pack {self.pack_record(pack, pack.job_of(step))}"

    def pack_threads(self, wildcards: Any) -> int:
        """A pack job's threads: the CPUs it asks for (all its runs share them)."""
        return self.threads("pack", len(self._pack_job(wildcards)[2]))

    def train_threads(self, wildcards: Any) -> int:
        """A run's job: resources.train's CPUs, 1 for a run of a pack (it reads an outcome)."""
        return 1 if pack_of(self.packs, wildcards.run) else self.threads("train")

    def pack_command(self) -> str:
        """The pack job's shell command: its runs up to the until wildcard, their outcome
        recorded, under the supervisor."""
        return self.supervised("drn train {params.runs} --until {wildcards.until} "
                               f"--gpus {self.gpus('train')} --if-changed restart "
                               "--record {output}")  # fmt: skip

    def evaluated(self, wildcards: Any) -> Evaluation:
        return self.plan.evaluation(wildcards.label, wildcards.scale, wildcards.dataset)

    def evaluated_model(self, wildcards: Any) -> str:
        evaluation = self.evaluated(wildcards)
        if evaluation.weights is not None:  # released weights, imported
            return evaluation.weights
        assert evaluation.run is not None  # the label wildcard accepts no bicubic
        return self.plan.run(evaluation.run).model

    def _released(self, wildcards: Any) -> Released:
        where = (wildcards.variant, int(wildcards.scale))
        return next(r for r in self.plan.present_released() if (r.variant, r.scale) == where)

    def released_file(self, wildcards: Any) -> str:
        """The file of released weights (controls_released) the import job reads."""
        return self._released(wildcards).file

    def released_format(self, wildcards: Any) -> str:
        """The ``drn import`` format of the released weights (drn/reference's ``releases``)."""
        return str(release_format(wildcards.variant))

    def evaluation_inputs(self, wildcards: Any) -> dict[str, str]:
        """What an evaluation reads: the model, the HR images and, for a milestone (a run
        served by another's checkpoint), bicubic's score of that set: the floor its verdict is
        set against where no published number exists at that point."""
        evaluation = self.evaluated(wildcards)
        inputs = {
            "model": self.evaluated_model(wildcards),
            "hr": self.source_dir(evaluation.dataset),
        }
        bicubic = self.plan.bicubic_of(evaluation) if self.is_milestone(evaluation) else None
        inputs.update({"bicubic": bicubic.path} if bicubic else {})
        return inputs

    def is_milestone(self, evaluation: Evaluation) -> bool:
        return evaluation.run is not None and not self.plan.run(evaluation.run).trained

    def evaluation_options(self, wildcards: Any) -> str:
        """`` --self-ensemble`` and, for a milestone, `` --milestone`` (the early verdict)."""
        evaluation = self.evaluated(wildcards)
        ensemble = " --self-ensemble" if evaluation.self_ensemble else ""
        return ensemble + (" --milestone" if self.is_milestone(evaluation) else "")

    # --- resources, threads, the command -------------------------------------------------------

    def spec(self, kind: str, runs: int = 1) -> dict[str, Any]:
        """params.yaml resources of a `kind` job; a ``pack`` of `runs`: train's, plus
        cpus_per_packed_run and mem_mb_per_packed_run for each run after the first."""
        if kind != "pack":
            return self.config["resources"][kind]
        return pack_resources(self.config["resources"]["train"], runs)

    def wanted(self, kind: str, runs: int = 1) -> dict[str, Any]:
        """Scheduler resources of a `kind` job (a pack's: of `runs`) from params.yaml resources:
        a CPU job (cpus), or a GPU job (gpu: 0 makes it a CPU job of cpus_per_gpu CPUs), warned
        before its time limit if it has stop_before_limit (train, pack)."""
        spec = self.spec(kind, runs)
        if spec.get("gpu", 0) == 0:  # a CPU job
            cpus = spec["cpus"] if "cpus" in spec else spec["cpus_per_gpu"]
            resources = {key: spec[key] for key in ("mem_mb", "runtime")} | {"cpus_per_task": cpus}
        else:
            resources = {key: spec[key] for key in ("gpu", "cpus_per_gpu", "mem_mb", "runtime")}
            if spec.get("gpu_model"):
                resources["gpu_model"] = spec["gpu_model"]
        if spec.get("stop_before_limit"):
            # Slurm sends SIGTERM to the job's step (snakemake, drn; not the batch shell, whose
            # death would end the job) that long before the time limit: drn checkpoints and exits.
            resources["slurm_extra"] = f"--signal=TERM@{spec['stop_before_limit']}"
        return resources

    def decision(self, log: str, attempt: int) -> attempts.Decision:
        """What the record of the attempts of the job whose log is `log` says `attempt` does."""
        return attempts.decide_from_record(log, attempt, self.retry["out_of_memory"])

    def asked(
        self, kind: str, decision: attempts.Decision, wildcards: Any = None
    ) -> dict[str, Any]:
        """What an attempt of a `kind` job asks for: mem_mb x memory_growth after each attempt
        that ran out of memory (resources.retry); an attempt that will not run (after a usage or
        data error, or running out of memory again), and a run's job where its pack trains it,
        1 CPU, no GPU and a few minutes."""
        runs = len(self._pack_job(wildcards)[2]) if kind == "pack" else 1
        wanted = self.wanted(kind, runs)
        packed = kind == "train" and pack_of(self.packs, getattr(wildcards, "run", None))
        if not decision.run or packed:
            return {"mem_mb": wanted["mem_mb"], "runtime": min(wanted["runtime"], BRIEF_MINUTES),
                    "cpus_per_task": 1}  # fmt: skip
        grown = wanted["mem_mb"] * self.retry["memory_growth"] ** decision.memory_steps
        return {**wanted, "mem_mb": math.ceil(grown)}

    def resources(self, kind: str, log: LogPath) -> dict[str, Any]:
        """A rule's ``resources``: `asked` by attempt (``attempt`` is the supervisor's), each a
        function of ``(wildcards, attempt, rulename)``, the names Snakemake calls it with (it
        evaluates them each time it submits a job); `log` gives the job's log path. A resource
        whose value is None is not asked for."""
        log_of = log if callable(log) else (lambda wildcards, rulename: log)

        def by_attempt(key: str) -> Callable[[Any, int, str], Any]:
            def value(wildcards: Any, attempt: int, rulename: str) -> Any:
                decision = self.decision(str(log_of(wildcards, rulename)), attempt)
                return self.asked(kind, decision, wildcards).get(key)

            return value

        keys = [*self.wanted(kind)]
        keys += [] if "cpus_per_task" in keys else ["cpus_per_task"]
        return {"attempt": lambda wildcards, attempt: attempt, **{k: by_attempt(k) for k in keys}}

    def supervised(self, command: str) -> str:
        """A rule's shell command: `command` under drn's supervisor (drn/pipeline/job.py), which
        writes its output to the rule's log, passes on the scheduler's signals, records the
        attempt beside the log ({log} without .log, plus .attempts.jsonl) and does not run it
        again after a usage or data error. `exec`: the supervisor replaces the shell, which would
        otherwise die of the SIGTERM Slurm sends a job step before its time limit, ending the step
        before drn checkpoints.

        A job's log holds its latest attempt (the supervisor starts it afresh); a training's
        runs/<run>/train.log keeps what every attempt printed ("== ... started ... ==", "resumed
        from step N (of M)", "stopped by signal ..."), and the record (train/<run>.attempts.jsonl)
        how each attempt ended ("stopped": retried, it resumes from its checkpoint)."""
        return (
            "exec python -m drn.pipeline.job --log {log} --attempt {resources.attempt} "
            f"--memory-retries {self.retry['out_of_memory']} -- {command}"
        )

    def threads(self, kind: str, runs: int = 1) -> int:
        """A job's `threads`: the CPUs its resources ask for (cpus, or cpus_per_gpu per GPU, as
        the Slurm plugin's --cpus-per-task / --cpus-per-gpu). Snakemake exports them to the job
        as OMP_NUM_THREADS (capped at --cores), which drn.core.threads reads."""
        spec = self.spec(kind, runs)
        if "cpus" in spec:
            return spec["cpus"]
        return spec["cpus_per_gpu"] * max(1, spec["gpu"])

    def gpus(self, kind: str) -> int:
        return self.config["resources"][kind]["gpu"]

    def import_command(self) -> str:
        """The import rule's shell command: `drn import` of released weights, an MLflow run of
        their own where tracking is on (the evaluations log there), supervised."""
        return self.supervised("drn import {params.format} {input} --scale {wildcards.scale} "
                               "--out {output} --track")  # fmt: skip

    def evaluate_command(self, bicubic: bool) -> str:
        """The evaluate rules' shell command: `drn evaluate` of the bicubic baseline, or of the
        model input with the evaluation's options, under the supervisor."""
        model, options = ("bicubic", "") if bicubic else ("{input.model}", "{params.options}")
        return self.supervised(f"drn evaluate --model {model} --hr {{input.hr}} --scale "
                               f"{{wildcards.scale}} --json {{output}}{options}")  # fmt: skip

    def rule_resources(self, snakemake_workflow: Any) -> Callable[..., dict[str, Any]]:
        """The rules' ``resources`` by kind: :meth:`resources`, reading the record beside each
        job's log as its rule names it (Snakemake's ``workflow`` finds the rule)."""

        def log(wildcards: Any, rulename: str) -> str:
            return snakemake_workflow.get_rule(rulename).log[0].apply_wildcards(wildcards)

        return lambda kind: self.resources(kind, log=log)

    def until_option(self, wildcards: Any) -> str:
        """`` --until STEP`` for a run's segment up to a milestone (the step wildcard), else ''."""
        step = getattr(wildcards, "step", None)
        return f" --until {step}" if step is not None else ""

    def train_command(self) -> str:
        """The train rules' shell command: `drn train` of the run (up to its step, for a
        segment: ``params.until``), on resources.train.gpu GPUs, under the supervisor."""
        return self.supervised(f"drn train --run {{wildcards.run}}{{params.until}} "
                               f"--gpus {self.gpus('train')} --if-changed restart"
                               "{params.packed}")  # fmt: skip
