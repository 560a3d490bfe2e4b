"""Several runs per GPU (resources.train.pack): the plan's packs, a pack's job in Snakemake and
dvc.yaml, `drn train --run A --run B` equal to each run alone, stopped and resumed, one run's
failure that leaves the other's model.pt, and a pack job on a real Slurm cluster."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess

import pytest
import torch
import yaml
from conftest import REPO
from pipeline import BIN, environment, one_seed_photos_only, project, run, small_demo
from slurm_cluster import running_cluster
from test_train import tiny_overrides
from test_workflow import dry_run, dvc_stages

from drn.core.errors import UsageError
from drn.doctor.profile import Profile, requests
from drn.engine.checkpoint import load_checkpoint
from drn.pipeline.job import read_record
from drn.pipeline.packs import build_packs
from drn.pipeline.params import validate_params
from drn.pipeline.plan import build_plan
from drn.pipeline.workflow import Workflow

slow = pytest.mark.slow


def paper(pack, **train):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["resources"]["train"]["pack"] = pack
    params["train"].update(train)
    return params


def test_pack_1_packs_nothing_and_the_jobs_stay_those_of_lone_runs():
    params = paper(1)
    assert build_packs(params, build_plan(params)) == ()
    workflow = Workflow(params)
    assert workflow.wildcard_constraints()["pack"] == "(?!)"
    assert workflow.packed_option(type("W", (), {"run": "drn_x2"})) == ""


def test_the_paper_plan_packs_longest_with_longest_and_stops_at_every_milestone():
    params = paper(3)
    packs = build_packs(params, build_plan(params))
    assert [pack.runs for pack in packs] == [
        ("drn_x2", "drn_x3", "drn_x4"),  # 800 epochs
        ("drn_plus_x2", "drn_plus_x3", "drn_plus_x4"),  # 300
        ("edsr_baseline_x2", "edsr_baseline_x3", "edsr_baseline_x4"),  # 300, the control
        ("drn_no_rd_x3_e100", "drn_x2_e100_l2"),  # 100, the ablations' own runs
    ]
    drn = packs[0]
    assert drn.boundaries == (100_000, 800_000)  # drn_x2's and drn_x3's milestone, the end
    assert drn.members(800_000) == drn.runs and drn.job_of(100_000) == 100_000
    assert [p.boundaries for p in packs[1:]] == [(100_000, 300_000), (300_000,), (100_000,)]


def test_a_run_that_starts_from_another_never_packs_with_it_or_before_it():
    params = paper(3, init_from={"x2": None, "x3": "runs/drn_x2/model.pt",
                                 "x4": "runs/drn_x2/model.pt"})  # fmt: skip
    plan = build_plan(params)
    packs = build_packs(params, plan)
    depth_0 = {"drn_x2", "drn_plus_x2", "edsr_baseline_x2", "drn_x2_e100_l2"}
    for pack in packs:
        assert set(pack.runs) <= depth_0 or not set(pack.runs) & depth_0, pack.runs
    workflow = Workflow(params)
    [late] = [p for p in packs if "drn_x4" in p.runs]
    inputs = workflow.pack_inputs(type("W", (), {"pack": late.name, "until": late.boundaries[0]}))
    assert "runs/drn_x2/model.pt" in inputs["init_from"]


def test_a_pack_job_asks_for_one_gpu_and_the_cpus_and_memory_of_its_runs():
    params = paper(3)
    workflow = Workflow(params)
    pack = build_packs(params, workflow.plan)[0]
    job = type("W", (), {"pack": pack.name, "until": pack.boundaries[-1]})
    resources = workflow.resources("pack", f"results/logs/train/packs/{pack.name}.log")
    asked = {key: value(job, 1, "train_pack") for key, value in resources.items()
             if key != "attempt"}  # fmt: skip
    train = params["resources"]["train"]
    assert asked["gpu"] == 1
    assert asked["cpus_per_gpu"] == train["cpus_per_gpu"] + 2 * train["cpus_per_packed_run"]
    assert asked["mem_mb"] == train["mem_mb"] + 2 * train["mem_mb_per_packed_run"]
    assert workflow.pack_threads(job) == asked["cpus_per_gpu"]
    # each run's own job only reads the pack's outcome: one CPU, no GPU, minutes
    lone = workflow.resources("train", "results/logs/train/drn_x2.log")
    own = {key: value(type("W", (), {"run": "drn_x2"}), 1, "train") for key, value in lone.items()
           if key != "attempt"}  # fmt: skip
    assert own["gpu"] is None and own["cpus_per_task"] == 1 and own["runtime"] <= 5

    # the largest pack's request, as drn doctor checks it against the nodes
    [pack_request] = [r for r in requests(params, Profile(None, "slurm"), 3) if r.kind == "pack"]
    assert (pack_request.gpus, pack_request.cpus, pack_request.mem_mb) == (
        1, asked["cpus_per_gpu"], asked["mem_mb"])  # fmt: skip


def test_a_pack_needs_the_cpus_and_memory_of_each_run_after_the_first():
    params = paper(2)
    del params["resources"]["train"]["mem_mb_per_packed_run"]
    with pytest.raises(UsageError, match=r"resources\.train: 'mem_mb_per_packed_run' "
                       r"is a required property"):  # fmt: skip
        validate_params(params)
    params["resources"]["train"]["pack"] = 1
    validate_params(params)  # pack 1: not needed


@slow
def test_the_paper_dag_and_dvc_yaml_have_one_training_job_per_pack_on_one_gpu(tmp_path):
    params = paper(3, init_from={"x2": None, "x3": None, "x4": "runs/drn_x2/model.pt"})
    workspace = project(tmp_path, params)
    counts, jobs = dry_run(workspace)
    plan = build_plan(params)
    packs = build_packs(params, plan)
    pack_jobs = sum(len(pack.boundaries) for pack in packs)
    assert counts["train_pack"] == pack_jobs
    commands = [command for command, _ in jobs if "--record" in command]
    assert len(commands) == pack_jobs
    for pack in packs:
        for until in pack.boundaries:
            runs = " ".join(f"--run {name}" for name in pack.members(until))
            record = f"results/packs/{pack.name}/step_{until}.json"
            assert (f"drn train {runs} --until {until} --gpus 1 --if-changed restart "
                    f"--record {record}") in commands  # fmt: skip
    # each trained run's segments end as their pack's job recorded them
    from_pack = [command for command, _ in jobs if "--from-pack" in command]
    assert len(from_pack) == counts["train"] + counts["train_segment"]
    # dvc.yaml: one stage per pack job, training its runs at once on one GPU, writing their
    # segments' outputs; drn_x4 starts from drn_x2's model.pt: its pack's stage depends on it
    stages = {command: outs for command, outs in dvc_stages(workspace)
              if command.startswith("drn train")}  # fmt: skip
    assert len(stages) == pack_jobs + len(plan.trained_runs()) - sum(len(p.runs) for p in packs)
    [x4] = [p for p in packs if "drn_x4" in p.runs]
    x4_stage = next(c for c in stages if "--run drn_x4" in c)
    assert x4_stage.startswith(f"drn train {' '.join('--run ' + r for r in x4.runs)} --until")
    assert "runs/drn_x4/model.pt" in stages[x4_stage]
    text = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]
    assert "runs/drn_x2/model.pt" in text[f"train-{x4.name}"]["deps"]


# --- a pack of two tiny runs on CPU ---------------------------------------------------------


def pack_overrides(data, tmp_path, runs):
    """Two runs of the plan (seeds 7 and 8 of drn x2), deterministic, in {tmp_path}/{runs}."""
    return tiny_overrides(data, tmp_path, 60, [
        "train.deterministic=true", "train.seeds=[7, 8]", "ablations={}",
        f"paths.runs={tmp_path}/{runs}", f"tracking.uri=sqlite:///{tmp_path}/{runs}.db",
    ])  # fmt: skip


RUNS = ("drn_x2_s7", "drn_x2_s8")


def drn(overrides, *args, **kwargs):
    sets = [f"--set={item}" for item in overrides]
    env = environment({**os.environ, "DRN_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})  # pinned
    return subprocess.Popen([BIN / "drn", "train", *args, "--device", "cpu", *sets], env=env,
                            text=True, **kwargs)  # fmt: skip


def weights(path):
    return load_checkpoint(path)["state_dict"]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@slow
def test_a_pack_trains_each_run_as_alone_and_a_sigterm_then_a_rerun_ends_the_same(data, tmp_path):
    alone = pack_overrides(data, tmp_path, "alone")
    lone = [drn(alone, "--run", name, "--no-track") for name in RUNS]
    assert [process.wait(timeout=300) for process in lone] == [0, 0]

    packed = pack_overrides(data, tmp_path, "pack")
    process = drn(packed, "--run", RUNS[0], "--run", RUNS[1], stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT)  # fmt: skip
    seen = set()
    for line in process.stdout:  # both well into training, then the job's warning
        found = re.match(r"\[(\S+)\] step (\d+)/60", line)
        if found and int(found.group(2)) >= 20:
            seen.add(found.group(1))
        if seen == set(RUNS):
            process.send_signal(signal.SIGTERM)
            break
    out = process.stdout.read()
    assert process.wait(timeout=120) == 128 + signal.SIGTERM, out[-3000:]
    for name in RUNS:
        saved = load_checkpoint(tmp_path / f"pack/{name}/checkpoints/last.pt")["training"]
        assert 20 <= saved["step"] < 60 and saved["stopped_by_signal"] == signal.SIGTERM
        assert not (tmp_path / f"pack/{name}/model.pt").exists()

    again = drn(packed, "--run", RUNS[0], "--run", RUNS[1], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT)  # fmt: skip
    out = again.communicate(timeout=600)[0]
    assert again.returncode == 0, out[-3000:]
    assert "time slicing" in out  # says how the runs share the device (a CPU: no MPS)
    assert out.count("resumed from step") == 2, out[-3000:]
    for name in RUNS:
        assert same(weights(tmp_path / f"alone/{name}/model.pt"),
                    weights(tmp_path / f"pack/{name}/model.pt")), name  # fmt: skip
        assert f"[{name}] step 60/60" in out
        log = (tmp_path / f"pack/{name}/train.log").read_text()
        assert "step 60/60" in log and "[drn_x2" not in log  # its own log, unprefixed
        curve = (tmp_path / f"pack/{name}/train_curve.csv").read_text().splitlines()
        assert curve[0].startswith("step") and len(curve) > 10
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/pack.db")
    found = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert sorted(r.info.run_name for r in found) == sorted(RUNS)  # one each, resumed
    assert all(r.info.status == "FINISHED" and "loss" in r.data.metrics for r in found)

    rerun = drn(packed, "--run", RUNS[0], "--run", RUNS[1], "--no-track",
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    out = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0 and out.count("already finished") == 2, out[-3000:]


def test_a_pack_refuses_a_run_directory_and_several_gpus(capsys):
    from drn.cli import main

    assert main(["train", "--run", "drn_x2", "--run", "drn_x3", "--run-dir", "x"]) == 2
    assert "--run-dir: one run's" in capsys.readouterr().err
    assert main(["train", "--run", "drn_x2", "--run", "drn_x3", "--gpus", "2"]) == 2
    assert "a pack shares one GPU" in capsys.readouterr().err
    assert main(["train", "--run", "drn_x2", "--run", "drn_x2"]) == 2
    assert "a run given twice" in capsys.readouterr().err


# --- packs in the workflow --------------------------------------------------------------------


def two_scale_pack():
    """The small demo's drn at x2 and x3, one seed, no ablation: one pack of two runs."""
    params = one_seed_photos_only(small_demo())
    params["evaluation"].update(models=["drn"], ensemble_models=[])
    params["ablations"] = {}
    params["train"]["deterministic"] = True
    params["resources"]["train"].update(pack=2, cpus_per_packed_run=1, mem_mb_per_packed_run=1000)
    return params  # a pack job of 2 CPUs, 3000 MB: it fits the tests' Slurm node


@slow
def test_a_run_of_a_pack_failing_on_a_corrupt_image_leaves_the_other_trained(tmp_path):
    params = two_scale_pack()
    workspace = project(tmp_path, params)
    assert [p.runs for p in build_packs(params, build_plan(params))] == [("drn_x2", "drn_x3")]
    run(workspace, BIN / "snakemake", "--cores", "2", "data/cache/train/x2", "data/cache/train/x3")
    # an LR image of x3 corrupted behind the DAG's back (same mtime): the training's own check
    # of its data finds it, in the pack's x3 run only (each scale has its own LR images)
    corrupt = sorted((workspace / "data/train_photos_x3").glob("*.png"))[0]
    stat = corrupt.stat()
    corrupt.write_bytes(b"\x89PNG truncated")
    os.utime(corrupt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    done = subprocess.run(
        [BIN / "snakemake", "--cores", "2", "--keep-going"], cwd=workspace,
        env=environment({**os.environ, "DRN_NUM_THREADS": "1"}), capture_output=True, text=True,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert (workspace / "runs/drn_x2/model.pt").is_file(), out[-3000:]  # kept
    assert not (workspace / "runs/drn_x3/model.pt").exists()
    assert (workspace / "results/eval/drn/x2/photos.json").is_file(), out[-3000:]  # went on
    # the pack job ended settled; x3's own job failed with its data error, naming the image
    pack = "drn_x2+drn_x3"
    [outcome] = [json.loads(p.read_text()) for p in (workspace / "results/packs").glob("*/*.json")]
    assert outcome["runs"]["drn_x2"]["cause"] == "ok"
    assert outcome["runs"]["drn_x3"]["cause"] == "data_error"
    x3_log = (workspace / "results/logs/train/drn_x3.log").read_text()
    assert f"{corrupt.name}: not a readable image" in x3_log and pack in x3_log, x3_log
    [line] = read_record(workspace / "results/logs/train/drn_x3.attempts.jsonl")
    assert line["cause"] == "data_error" and corrupt.name in line["message"]
    [x2_line] = read_record(workspace / "results/logs/train/drn_x2.attempts.jsonl")
    assert x2_line["cause"] == "ok"


@slow
def test_on_slurm_one_pack_job_trains_two_runs_to_the_end(tmp_path_factory):
    params = two_scale_pack()
    workspace = project(tmp_path_factory.mktemp("pack"), params)
    run(workspace, BIN / "snakemake", "--cores", "2", "data/cache/train/x2", "data/cache/train/x3")
    with running_cluster(tmp_path_factory.mktemp("slurm")) as slurm:
        out = run(
            workspace, BIN / "snakemake", "--profile", "workflow/profiles/slurm",
            "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
            "--seconds-between-status-checks", "2", "--latency-wait", "10",
            "runs/drn_x2/model.pt", "runs/drn_x3/model.pt", env=slurm,
        )  # fmt: skip
    assert "100%) done" in out
    assert out.count("rule train_pack:") == 1, out[-3000:]
    for name in ("drn_x2", "drn_x3"):
        assert (workspace / f"runs/{name}/model.pt").is_file()
        log = (workspace / f"runs/{name}/train.log").read_text()
        assert re.search(r"^== runs/" + name + r": started .* Slurm job \d+ ==$", log, re.M)
    # both ran in the one pack job: the same Slurm job in both train.log headers
    jobs = {re.search(r"Slurm job (\d+) ==", (workspace / f"runs/{n}/train.log").read_text())
            .group(1) for n in ("drn_x2", "drn_x3")}  # fmt: skip
    assert len(jobs) == 1, jobs
    pack_log = next((workspace / "results/logs/train/packs").glob("*.log")).read_text()
    assert "[drn_x2] " in pack_log and "[drn_x3] " in pack_log


def test_plan_cost_uses_a_packed_rate_only_where_one_was_measured(monkeypatch):
    from drn.pipeline import cost

    recorded = cost.measurements()
    [engine] = [m for m in recorded if m.id == "drn_x2_engine"]
    packed = [dataclasses.replace(engine, id=f"drn_x{s}_pack3", scale=s, runs_per_gpu=3,
                                  iterations_per_s=40.0) for s in (2, 3, 4)]  # fmt: skip
    monkeypatch.setattr(cost, "measurements", lambda path=None: (*recorded, *packed))
    params = paper(3)
    lone = {c.run: c for c in cost.estimate_plan(paper(1)).runs}
    projected = cost.estimate_plan(params)
    by_run = {c.run: c for c in projected.runs}
    for name in ("drn_x2", "drn_x3", "drn_x4"):  # a pack of 3 measured at 3 per GPU
        found = by_run[name]
        assert found.iterations_per_s == 40.0 and found.basis.startswith("measured packed")
        assert found.gpu_hours == pytest.approx(found.iterations / 40.0 / 3600 / 3)
    for name in ("drn_plus_x2", "edsr_baseline_x3", "drn_x2_e100_l2"):  # packed, not measured
        assert by_run[name].gpu_hours == lone[name].gpu_hours
    [note] = [n for n in projected.notes if "resources.train.pack" in n]
    assert "none is for drn_plus_x2" in note and "drn_x2," not in note
    # the lone projection never takes a packed figure
    assert lone["drn_x2"].iterations_per_s == engine.iterations_per_s
