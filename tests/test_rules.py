"""What the Snakefile's rules compute (drn/pipeline/workflow.py), without Snakemake: the wildcard
constraints, a run's inputs, the resources by attempt from the record of a job's attempts, the
supervised command line and a job's threads. (Through Snakemake's dry runs: tests/test_workflow.py
and tests/test_retries.py.)"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO
from pipeline import small_demo

from drn.core.errors import UsageError
from drn.pipeline.job import Decision
from drn.pipeline.workflow import BRIEF_MINUTES, Workflow, alternatives


def demo() -> dict:
    params = yaml.safe_load((REPO / "demo/params.yaml").read_text())
    params["sources"]["Set5"] = {"local": str(REPO / "tests/data/Set5")}
    return params


def attempt(number, cause, **fields):
    return {"attempt": number, "ran": True, "cause": cause, "started": f"t{number}", **fields}


def accepts(constraint: str, name: str) -> bool:
    return re.fullmatch(constraint, name) is not None


# --- names and inputs ------------------------------------------------------------------------


def test_each_wildcard_accepts_exactly_the_plans_names_escaped():
    rules = Workflow(demo())
    constraints = rules.wildcard_constraints()
    runs = {run.name for run in rules.plan.trained_runs()}
    assert "drn_no_rd_x2_e0.2" in runs  # a name with a regular expression's metacharacter
    assert all(accepts(constraints["run"], name) for name in runs)
    for other in ("drn_no_rd_x2_e0x2", "drn_x2_e0.2_", "drn", "drn_x2|drn_x3", "", "x"):
        assert not accepts(constraints["run"], other), other
    assert not accepts(constraints["run"], "drn_x2_e0.2")  # a milestone of drn_x2: not trained
    assert accepts(constraints["step"], "200") and not accepts(constraints["step"], "600")
    labels = {e.label for e in rules.plan.evaluations}
    assert {"drn", "drn-ensemble", "distillation-drn_no_rd", "loss-l2_s1"} <= labels
    assert all(accepts(constraints["label"], label) for label in labels - {"bicubic"})
    assert not accepts(constraints["label"], "bicubic")  # its own rule, evaluate_bicubic
    names = ("photos", "Set5", "train_photos")  # evaluated, evaluated, trained on only
    assert [n for n in names if accepts(constraints["dataset"], n)] == ["photos", "Set5"]
    assert all(accepts(constraints["source"], n) for n in ("train_photos", "photos", "Set5"))
    assert not accepts(constraints["source"], "train_photos_x2")  # a derived one: downscale's
    assert accepts(constraints["derived"], "train_photos_x2")
    assert accepts(constraints["scale"], "12") and not accepts(constraints["scale"], "x2")


def test_no_names_accept_nothing():
    assert alternatives([]) == "(?!)"
    assert not accepts(alternatives([]), "") and not accepts(alternatives([]), "x")
    assert alternatives(["b.c", "a", "a", 3]) == r"3|a|b\.c"


def test_a_run_reads_its_cache_and_validation_source_and_the_weights_it_starts_from_if_set():
    params = small_demo()
    params["train"]["init_from"]["x3"] = "runs/drn_x2/model.pt"
    rules = Workflow(params)
    assert rules.train_inputs(SimpleNamespace(run="drn_x3")) == {
        "cache": "data/cache/train/x3",
        "validation": "data/photos",
        "init_from": "runs/drn_x2/model.pt",
    }
    assert rules.train_inputs(SimpleNamespace(run="drn_x2", step="3")) == {
        "cache": "data/cache/train/x2",
        "validation": "data/photos",
    }
    params = small_demo()
    params["train"]["validation"]["source"] = None
    assert Workflow(params).train_inputs(SimpleNamespace(run="drn_x2", step="3")) == {
        "cache": "data/cache/train/x2"
    }


def test_a_run_trains_in_segments_each_after_the_one_before_and_its_verdict_if_asked():
    params = demo()
    rules = Workflow(params)
    first = SimpleNamespace(run="drn_x2", step="200")
    assert rules.train_inputs(first) == {
        "cache": "data/cache/train/x2",
        "validation": "data/photos",
    }
    last = rules.train_inputs(SimpleNamespace(run="drn_x2"))
    assert last["previous"] == "runs/drn_x2/checkpoints/step_200.pt" and "verdicts" not in last
    params["train"]["stop_if_behind"] = True  # then the rest waits for the milestone's verdict
    last = Workflow(params).train_inputs(SimpleNamespace(run="drn_x2"))
    assert last["verdicts"] == [
        "results/eval/distillation-drn/x2/photos.json", "results/eval/loss-l1/x2/photos.json",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="no segment ending at step 300"):
        rules.train_inputs(SimpleNamespace(run="drn_x2", step="300"))
    assert rules.train_settings(first) == rules.train_settings(SimpleNamespace(run="drn_x2"))


def test_a_runs_settings_are_its_train_rules_params_and_prepare_reads_the_lr_source():
    rules = Workflow(demo())
    settings = rules.train_settings(SimpleNamespace(run="drn_x2_e0.2_l2"))
    assert (settings["model"], settings["scale"], settings["loss"]) == ("drn", 2, "l2")
    assert settings["iterations"] == 200 and "workers" not in settings  # resumable: not in it
    assert rules.train_lr(SimpleNamespace(scale="2")) == ["data/train_photos_x2"]
    params = demo()
    params["train"]["data"]["lr_prefix"] = None
    assert Workflow(params).train_lr(SimpleNamespace(scale="2")) == []
    assert rules.downscaled_from(SimpleNamespace(derived="train_photos_x2")) == "data/train_photos"


def test_an_evaluation_reads_its_runs_model_and_self_ensembles_if_its_label_says():
    rules = Workflow(demo())
    ensemble = SimpleNamespace(label="drn-ensemble_s1", scale="2", dataset="Set5")
    assert rules.evaluated_model(ensemble) == "runs/drn_x2_s1/model.pt"
    assert rules.evaluation_options(ensemble) == " --self-ensemble"
    plain = SimpleNamespace(label="distillation-drn_no_rd", scale="2", dataset="photos")
    assert rules.evaluation_inputs(plain) == {
        "model": "runs/drn_no_rd_x2_e0.2/model.pt",
        "hr": "data/photos",
    }
    assert rules.evaluation_options(plain) == ""
    # a milestone: the main run's checkpoint at its step, set beside bicubic's score (its floor)
    milestone = SimpleNamespace(label="loss-l1", scale="2", dataset="photos")
    assert rules.evaluation_inputs(milestone) == {
        "model": "runs/drn_x2/checkpoints/step_200.pt", "hr": "data/photos",
        "bicubic": "results/eval/bicubic/x2/photos.json",
    }  # fmt: skip
    assert rules.evaluation_options(milestone) == " --milestone"
    with pytest.raises(UsageError, match="no evaluation drn x3 on photos"):
        rules.evaluated(SimpleNamespace(label="drn", scale="3", dataset="photos"))


def test_a_bad_setting_stops_it_naming_the_key():
    params = small_demo()
    params["evaluation"]["scales"] = [2, "four"]
    with pytest.raises(UsageError, match=r"evaluation\.scales\.1: 'four' is not of type"):
        Workflow(params)


def test_the_paths_the_rules_share():
    rules = Workflow(demo())
    assert (rules.data, rules.logs, rules.cache) == ("data", "results/logs", "data/cache/train")
    assert rules.summary == ["results/summary.md", "results/summary.json"]
    assert rules.report == ["reports/report.html", "reports/report.md"]
    assert rules.run_directory == "runs/{run}"
    assert rules.retry == {"out_of_memory": 1, "memory_growth": 2}
    params = demo()
    del params["resources"]["retry"]  # optional: retries by cause, as by default
    assert Workflow(params).retry == {"out_of_memory": 1, "memory_growth": 2}
    params["resources"]["retry"] = {"out_of_memory": 0, "memory_growth": 3}
    assert Workflow(params).retry == {"out_of_memory": 0, "memory_growth": 3}


# --- resources by attempt --------------------------------------------------------------------


def gpu_params(**evaluate):
    params = demo()
    params["resources"]["train"].update(gpu=2, gpu_model="h100", cpus_per_gpu=4, mem_mb=1001)
    params["resources"]["evaluate"].update(evaluate)
    params["resources"]["retry"] = {"out_of_memory": 1, "memory_growth": 1.5}
    return params


def test_what_each_kind_of_job_asks_for_from_params_yaml():
    rules = Workflow(gpu_params(gpu=1, gpu_model=None, cpus_per_gpu=3))
    assert rules.wanted("train") == {
        "gpu": 2, "cpus_per_gpu": 4, "mem_mb": 1001, "runtime": 60, "gpu_model": "h100",
        "slurm_extra": "--signal=TERM@120",
    }  # fmt: skip
    assert rules.wanted("evaluate") == {"gpu": 1, "cpus_per_gpu": 3, "mem_mb": 2000, "runtime": 30}
    assert rules.wanted("fetch") == {"mem_mb": 1000, "runtime": 30, "cpus_per_task": 1}
    # gpu: 0 (the demo): a CPU job of cpus_per_gpu CPUs, still warned before its time limit
    assert Workflow(demo()).wanted("train") == {
        "mem_mb": 2000, "runtime": 60, "cpus_per_task": 1, "slurm_extra": "--signal=TERM@120"
    }  # fmt: skip


def test_an_attempt_asks_for_memory_grown_per_out_of_memory_and_one_that_will_not_run_little():
    rules = Workflow(gpu_params())
    assert rules.asked("train", Decision()) == rules.wanted("train")
    assert rules.asked("train", Decision(True, 1))["mem_mb"] == 1502  # 1001 x 1.5, rounded up
    assert rules.asked("train", Decision(True, 2))["mem_mb"] == 2253  # 1001 x 1.5 x 1.5
    assert rules.asked("train", Decision(False, 1, why="not retried")) == {
        "mem_mb": 1001, "runtime": BRIEF_MINUTES, "cpus_per_task": 1,
    }  # fmt: skip
    assert BRIEF_MINUTES == 5
    params = gpu_params()
    params["resources"]["fetch"]["runtime"] = 2
    assert Workflow(params).asked("fetch", Decision(False))["runtime"] == 2  # never longer


def test_the_resources_by_attempt_read_the_record_beside_the_jobs_log(tmp_path):
    rules = Workflow(gpu_params(gpu=1, gpu_model="a100", cpus_per_gpu=2, mem_mb=3000))
    logs = {"train": tmp_path / "train/drn_x2.log", "evaluate": tmp_path / "evaluate/drn.log"}
    seen = []

    def log_of(wildcards, rulename):
        seen.append((wildcards, rulename))
        return str(logs[rulename])

    for log, line in [
        (logs["train"], attempt(1, "out_of_memory", memory_limit_mb=1001)),
        (logs["evaluate"], attempt(1, "data_error", exit_code=1, message="drn: error: x")),
    ]:
        log.parent.mkdir(parents=True)
        log.with_name(log.stem + ".attempts.jsonl").write_text(json.dumps(line) + "\n")

    def asked(kind, number):
        resources = rules.resources(kind, log_of)
        values = {key: value("w", number, kind) for key, value in resources.items()
                  if key != "attempt"}  # fmt: skip
        assert resources["attempt"]("w", number) == number
        return {key: value for key, value in values.items() if value is not None}

    assert asked("train", 1) == rules.wanted("train")  # a first attempt: as params.yaml asks
    assert asked("train", 2) == {**rules.wanted("train"), "mem_mb": 1502}  # after out of memory
    assert asked("evaluate", 1) == {"gpu": 1, "cpus_per_gpu": 2, "mem_mb": 3000, "runtime": 30,
                                    "gpu_model": "a100"}  # fmt: skip
    # after a data error: 1 CPU, no GPU, a few minutes, the memory not grown
    assert asked("evaluate", 2) == {"mem_mb": 3000, "runtime": 5, "cpus_per_task": 1}
    # attempt 2 refused (its line, as the supervisor writes it): attempt 3 refuses alike
    refused = {**attempt(2, "data_error", exit_code=1, message="drn: error: x"), "ran": False,
               "after": 1}  # fmt: skip
    with logs["evaluate"].with_name("drn.attempts.jsonl").open("a") as record:
        record.write(json.dumps(refused) + "\n")
    assert asked("evaluate", 3) == {"mem_mb": 3000, "runtime": 5, "cpus_per_task": 1}
    assert ("w", "evaluate") in seen and ("w", "train") in seen
    # a fixed log path will do as well; no record beside it: as params.yaml asks
    fixed = rules.resources("train", str(tmp_path / "none.log"))
    assert fixed["mem_mb"]("w", 2, "train") == 1001
    assert fixed["cpus_per_task"]("w", 2, "train") is None  # a GPU job: cpus_per_gpu instead


def test_the_resources_take_the_parameters_snakemake_passes_by_name():
    """Snakemake passes a resource function the wildcards first, then only the parameters whose
    names it finds among attempt, rulename, input, threads."""
    resources = Workflow(demo()).resources("train", "results/logs/train/x.log")
    assert list(resources) == ["attempt", "mem_mb", "runtime", "cpus_per_task", "slurm_extra"]
    assert list(inspect.signature(resources["attempt"]).parameters) == ["wildcards", "attempt"]
    for key in ("mem_mb", "runtime", "cpus_per_task", "slurm_extra"):
        parameters = list(inspect.signature(resources[key]).parameters)
        assert parameters == ["wildcards", "attempt", "rulename"]
    gpu = Workflow(gpu_params()).resources("train", "x.log")
    assert list(gpu) == ["attempt", "gpu", "cpus_per_gpu", "mem_mb", "runtime", "gpu_model",
                         "slurm_extra", "cpus_per_task"]  # fmt: skip


# --- the command, threads --------------------------------------------------------------------


def test_the_supervised_command_line():
    params = demo()
    params["resources"]["retry"] = {"out_of_memory": 3, "memory_growth": 2}
    assert Workflow(params).supervised("drn fetch {wildcards.source}") == (
        "exec python -m drn.pipeline.job --log {log} --attempt {resources.attempt} "
        "--memory-retries 3 -- drn fetch {wildcards.source}"
    )
    assert Workflow(demo()).supervised("drn collect").endswith("--memory-retries 1 -- drn collect")


def test_a_jobs_threads_are_the_cpus_it_asks_for():
    rules = Workflow(gpu_params(gpu=0, cpus_per_gpu=3))
    assert rules.threads("train") == 8  # 2 GPUs x 4 cpus_per_gpu
    assert rules.threads("evaluate") == 3  # gpu: 0, a CPU job of cpus_per_gpu
    params = demo()
    params["resources"]["prepare"]["cpus"] = 6
    assert Workflow(params).threads("prepare") == 6
    assert (rules.gpus("train"), rules.gpus("evaluate")) == (2, 0)


def test_a_segment_trains_its_run_up_to_its_step_the_last_to_the_end():
    rules = Workflow(gpu_params(gpu=0, cpus_per_gpu=3))
    command = rules.train_command()  # both rules': train_segment is train with another output
    assert command.endswith(" -- drn train --run {wildcards.run}{params.until} --gpus 2 "
                            "--if-changed restart{params.packed}")  # fmt: skip
    segment, last = SimpleNamespace(run="drn_x2", step="3"), SimpleNamespace(run="drn_x2")
    assert (rules.until_option(segment), rules.until_option(last)) == (" --until 3", "")
    assert rules.packed_option(last) == ""  # pack: 1, a run alone
    assert command.startswith("exec python -m drn.pipeline.job --log {log} ")


def test_the_module_loads_neither_torch_nor_snakemake():
    probe = ("import sys, drn.pipeline.workflow; "
             "print(sorted({'torch', 'snakemake'} & set(sys.modules)))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
