"""The workflow: the paper's DAG, dvc.yaml generated from the plan with the same jobs, the demo
end to end with Snakemake, with DVC (cached reruns) and on a real Slurm cluster."""

from __future__ import annotations

import copy
import json
import re
import sys

import pytest
import yaml
from conftest import REPO
from pipeline import BIN, one_seed_photos_only, project, run, small_demo
from slurm_cluster import running_cluster

from drn.cli import main
from drn.engine.settings import result_settings
from drn.pipeline.dvc_stages import dvc_yaml
from drn.pipeline.plan import build_plan
from drn.pipeline.settings import settings_from_params

slow = pytest.mark.slow  # Snakemake and DVC runs

# The paper's plan (drn plan): 13 training runs (drn and drn_plus at x2, x3, x4; the control
# edsr_baseline at x2, x3, x4; the ablations' drn_x3_e100, drn_no_rd_x3_e100, drn_x2_e100,
# drn_x2_e100_l2) and 94 evaluations (15 bicubic; 60 of the main runs: 2 models and their
# self-ensembles x 3 scales x 5 datasets; 15 of the control; 4 ablation arms). Before the plan
# (and the control): train 6 + train_distillation_ablation 2 + train_loss_ablation 2, and
# evaluate 30 + evaluate_ensemble 30 + evaluate_distillation_ablation 2 + evaluate_loss_ablation 2.
PAPER_JOBS = {  # 11 trained runs, three of them in two segments (their milestones)
    "fetch": 10, "evaluate_bicubic": 15, "prepare": 3, "train_segment": 3, "train": 11,
    "evaluate": 80, "summary": 1, "report": 1, "all": 1,
}  # fmt: skip
CONFIGS = ["params.yaml", "demo/params.yaml"]


def dry_run(cwd):
    """{rule: job count} and [(shell command, outputs)] of a Snakemake dry run."""
    out = run(cwd, BIN / "snakemake", "--dry-run", "--printshellcmds", "--cores", "1")
    stats = re.search(r"Job stats:\n.*?\n-+ +-+\n(.*?)\ntotal", out, re.S).group(1)
    counts = {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()}
    jobs, outputs = [], None
    for line in out.splitlines():
        if line.startswith("    output: "):
            outputs = sorted(line.removeprefix("    output: ").split(", "))
        elif line.startswith("Shell command: exec python -m drn.pipeline.job "):
            command = line.split(" -- ", 1)[
                1
            ]  # the command its supervisor (drn/pipeline/job.py) runs
            jobs.append((command, outputs))
    return counts, sorted(jobs)


def dvc_stages(cwd):
    run(cwd, BIN / "dvc", "init", "--no-scm", "--quiet")
    script = (
        "import json; from dvc.repo import Repo; print(json.dumps(sorted("
        "[' '.join(s.cmd.split()), sorted(str(o.def_path) for o in s.outs if not o.plot)]"
        " for s in Repo('.').index.stages)))"
    )
    return [
        tuple(stage)
        for stage in json.loads(run(cwd, sys.executable, "-c", script).splitlines()[-1])
    ]


@slow
def test_the_paper_dag_plans_every_expected_job(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    counts, _ = dry_run(project(tmp_path, params))
    assert counts == PAPER_JOBS


@slow
@pytest.mark.parametrize("config", CONFIGS)
def test_dvc_yaml_declares_the_snakemake_stages_commands_and_outputs(tmp_path, config):
    params = yaml.safe_load((REPO / config).read_text())
    workspace = project(tmp_path, params)
    _, jobs = dry_run(workspace)
    assert dvc_stages(workspace) == [(command, outputs) for command, outputs in jobs]


@pytest.mark.parametrize("config", CONFIGS)
def test_the_committed_dvc_yaml_is_the_one_drn_plan_generates(config, capsys):
    """dvc.yaml and demo/dvc.yaml are generated from the params.yaml beside them: a change of the
    plan (or of drn/pipeline/dvc_stages.py) that was not followed by `drn plan --dvc > dvc.yaml`
    fails."""
    assert main(["plan", "--params", str(REPO / config), "--dvc"]) == 0
    generated = capsys.readouterr().out
    committed = REPO / config.replace("params.yaml", "dvc.yaml")
    assert not committed.is_symlink()
    assert committed.read_text() == generated, f"stale: run drn plan --dvc > {committed.name}"


def lookup(params, key):
    for part in key.split("."):
        params = params[part]
    return params


def changed(params, key):
    """Another valid value for the setting `key` of `params`."""
    value = lookup(params, key)
    if key == "train.loss":
        return "l2" if value == "l1" else "l1"
    if key == "train.compile":
        return "off" if value != "off" else "default"
    if key in ("train.data.hr", "train.validation.source"):
        return next(name for name in params["sources"] if name != value)
    if key == "train.data.lr_prefix":
        return None  # LR made from HR
    if key.startswith("ablations.") and key.endswith(".model"):
        return next(name for name in params["models"] if name != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if value is None:
        return "runs/elsewhere/model.pt"  # init_from
    if isinstance(value, str):
        return f"{value}_elsewhere"  # the cache folder
    if isinstance(value, dict):  # a model's sizes
        return {**value, "blocks": value.get("blocks", 9) + 1}
    if all(isinstance(v, float) for v in value):  # betas
        return [v / 2 for v in value]
    return []  # an ablation's arms: none


def with_setting(params, key, value):
    params = copy.deepcopy(params)
    *parents, last = key.split(".")
    lookup(params, ".".join(parents))[last] = value
    return params


def computes(params, planned_run):
    """What a run of the plan computes under these settings (its result settings)."""
    r = planned_run
    return result_settings(
        settings_from_params(params, r.variant, r.scale, r.epochs, r.loss, r.seed)
    )


def planned(params, name):
    """What the plan of `params` makes of the run `name`: what it computes, why (roles) and for
    which evaluations; None: no such run."""
    plan = build_plan(params)
    if name not in {r.name for r in plan.runs}:
        return None
    used = sorted((e.label, e.scale, e.dataset) for e in plan.evaluations if e.run == name)
    return computes(params, plan.run(name)), plan.run(name).roles, used


def settings_keys(tree, prefix):
    """Every setting under `prefix` (a list is one setting)."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from settings_keys(value, f"{prefix}.{key}")
        else:
            yield f"{prefix}.{key}"


def has(params, key):
    try:
        lookup(params, key)
    except KeyError:
        return False
    return True


@pytest.mark.parametrize("config", [*CONFIGS, "small demo"])
def test_each_training_stage_tracks_exactly_the_settings_that_change_its_run(config):
    if config == "small demo":
        params = small_demo()
        params["train"]["init_from"] = {"x2": None}  # no train.init_from.x3: DVC refuses it
    else:
        params = yaml.safe_load((REPO / config).read_text())
    plan = build_plan(params)
    stages = yaml.safe_load(dvc_yaml(params, plan))["stages"]
    trained = {n.removeprefix("train-"): s for n, s in stages.items() if n.startswith("train-")}
    segments = [(r.name, step) for r in plan.trained_runs() for step in r.segments]
    assert list(trained) == [n if s == plan.run(n).iterations else f"{n}-step{s}"
                             for n, s in segments]  # fmt: skip
    gpus = params["resources"]["train"]["gpu"]
    for name, step in segments:
        until = "" if step == plan.run(name).iterations else f" --until {step}"
        stage = trained[name if not until else f"{name}-step{step}"]
        assert stage["cmd"] == f"drn train --run {name}{until} --gpus {gpus} --if-changed restart"
        assert stage["params"] == trained[name]["params"]  # a segment's are its run's
    if config == "small demo":
        assert "train.init_from.x3" in plan.run("drn_x3").keys
    for planned_run in plan.trained_runs():
        name, tracked = planned_run.name, trained[planned_run.name]["params"]
        assert tracked == [key for key in planned_run.keys if has(params, key)]
        for key in tracked:  # each changes what the run computes, which run it is, or its use
            assert planned(with_setting(params, key, changed(params, key)), name) != (
                planned(params, name)
            ), f"{name}: {key}"
        others = [
            key
            for key in settings_keys(params["train"], "train")
            if not any(key == k or key.startswith(f"{k}.") for k in tracked)
        ]
        assert "train.checkpoint_every" in others and "train.workers" in others
        for key in others:  # no other training setting changes what it computes
            assert computes(with_setting(params, key, changed(params, key)), planned_run) == (
                computes(params, planned_run)
            ), f"{name}: {key}"


@slow
def test_a_run_that_starts_from_another_runs_weights_waits_for_them(tmp_path):
    params = small_demo()
    params["train"]["init_from"]["x3"] = "runs/drn_x2/model.pt"  # EDSR practice: x2 -> x3
    workspace = project(tmp_path, params)
    dry = run(workspace, BIN / "snakemake", "-n", "--printshellcmds", "--cores", "1",
              "runs/drn_x3/model.pt")  # fmt: skip
    assert "drn train --run drn_x2 " in dry and "drn train --run drn_plus_x2 " not in dry
    stage = yaml.safe_load((workspace / "dvc.yaml").read_text())["stages"]["train-drn_x3"]
    assert "runs/drn_x2/model.pt" in stage["deps"]


@slow
def test_the_workflow_is_lint_clean():
    assert "Congratulations" in run(REPO, BIN / "snakemake", "--lint", "--directory", "demo")


@slow
def test_a_bad_setting_stops_the_run_before_any_job_naming_the_key(tmp_path):
    params = small_demo()
    params["evaluation"]["scales"] = [2, "four"]
    out = run(
        project(tmp_path, params, dvc=False), BIN / "snakemake", "-n", "--cores", "1", check=False
    )
    assert "evaluation.scales.1: 'four' is not of type 'integer'" in out
    assert "Shell command" not in out and not (tmp_path / "results").exists()


@slow
def test_an_unknown_source_in_a_setting_is_named(tmp_path):
    params = small_demo()
    params["evaluation"]["datasets"] = ["photos", "Set6"]
    out = run(
        project(tmp_path, params, dvc=False), BIN / "snakemake", "-n", "--cores", "1", check=False
    )
    assert "evaluation.datasets: unknown source 'Set6'" in out


# The small demo's plan (pipeline.small_demo): its ablations train half as long as the main runs,
# so the distillation arms drn and drn_plus and the loss arm l1 are milestones (step 3 of 6) of
# the main runs drn_x2 (and drn_x2_s1: drn is trained with two seeds, train.seeds) and
# drn_plus_x2; the arms drn_no_rd and l2 are trained; the control edsr_baseline at both scales:
# 11 trained runs, 3 milestones.
SMALL_DEMO_RUNS = {
    "drn_x2": "main", "drn_x2_s1": "main", "drn_x3": "main", "drn_x3_s1": "main",
    "drn_plus_x2": "main", "drn_plus_x3": "main", "drn_no_rd_x2_e0.003": "ablation",
    "drn_x2_e0.003_l2": "ablation", "drn_x2_e0.003_l2_s1": "ablation",
    "edsr_baseline_x2": "control", "edsr_baseline_x3": "control",
}  # fmt: skip
SMALL_DEMO_MILESTONES = {
    "drn_x2_e0.003": "drn_x2", "drn_x2_e0.003_s1": "drn_x2_s1", "drn_plus_x2_e0.003": "drn_plus_x2",
}  # fmt: skip


def test_the_small_demo_plans_the_runs_the_end_to_end_tests_expect():
    plan = build_plan(small_demo(), passed=None)
    trained = {run.name: ",".join(run.roles) for run in plan.trained_runs()}
    assert trained == SMALL_DEMO_RUNS
    assert {run.name: run.served_by for run in plan.served_runs()} == SMALL_DEMO_MILESTONES


def test_the_demo_dag_end_to_end_with_snakemake(demo_workspace):
    workspace = demo_workspace
    rows = json.loads((workspace / "results/summary.json").read_text())
    # every evaluation of the plan: bicubic, drn and drn-ensemble (two seeds: drn_s1, ...),
    # drn_plus and the control edsr_baseline at x2 and x3 on the photos and Set5; the ablation
    # arms at x2: 36 in all
    evaluated = {(r["label"], r["scale"], r["dataset"]) for r in rows}
    assert evaluated == {
        (e.label, e.scale, e.dataset) for e in build_plan(small_demo()).evaluations
    }
    assert len(rows) == 36 and {("drn_s1", 3, "Set5"), ("edsr_baseline", 2, "Set5"),
                                ("loss-l2_s1", 2, "photos")} <= evaluated  # fmt: skip
    assert all(r["images"] == {"photos": 2, "Set5": 5}[r["dataset"]] for r in rows)
    curve = (workspace / "runs/drn_x3/val_curve.csv").read_text().splitlines()
    assert curve[0] == "step,psnr,ssim" and len(curve) == 3  # validated at steps 3 and 6
    assert (workspace / "reports/report.html").is_file() and (
        workspace / "reports/report.md"
    ).is_file()

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    experiment = client.get_experiment_by_name("drn-repro-demo")
    runs = client.search_runs([experiment.experiment_id])
    # one MLflow run per run of the plan, named as it, tagged with its roles
    assert sorted(r.info.run_name for r in runs) == sorted(SMALL_DEMO_RUNS)
    assert {r.info.run_name: r.data.tags.get("role") for r in runs} == SMALL_DEMO_RUNS
    assert all(r.info.status == "FINISHED" for r in runs)

    # drn_x2 trained in two segments, in one run directory and one MLflow run; its milestone (the
    # ablation arm loss-l1, step 3) was evaluated before the run's last segment ended
    log = (workspace / "runs/drn_x2/train.log").read_text()
    assert log.count("started") == 2 and "resumed from step 3 (of 6)" in log
    milestone = json.loads((workspace / "results/eval/loss-l1/x2/photos.json").read_text())
    assert (milestone["milestone"]["of"], milestone["milestone"]["step"]) == ("drn_x2", 3)
    assert milestone["milestone"]["verdict"] in ("on course", "behind")  # against bicubic
    ended = {
        name: json.loads(path.read_text().splitlines()[-1])["ended"]
        for name, path in (("evaluated", "evaluate/loss-l1_x2_photos"), ("trained", "train/drn_x2"))
        for path in [workspace / f"results/logs/{path}.attempts.jsonl"]
    }  # fmt: skip
    assert ended["evaluated"] < ended["trained"], ended
    (main,) = [r for r in runs if r.info.run_name == "drn_x2"]
    assert (
        "milestone_3_photos_x2_psnr" in main.data.metrics and "photos_x2_psnr" in main.data.metrics
    )
    assert main.data.tags["milestone_3_photos_x2"] == milestone["milestone"]["line"]

    # nothing left to do; a change of one scale's setting replans only that scale's jobs
    assert "Nothing to be done" in run(workspace, BIN / "snakemake", "-n", "--cores", "1")
    original = (workspace / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["train"]["init_from"]["x3"] = "runs/drn_x2/model.pt"
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        counts, _ = dry_run(workspace)
    finally:
        (workspace / "params.yaml").write_text(original)
    # every run at x3 (drn_x3, drn_x3_s1, drn_plus_x3, the control edsr_baseline_x3: init_from
    # is per scale), then their 6 labels on 2 datasets (no ablation is at x3)
    assert counts == {"train": 4, "evaluate": 12, "summary": 1, "report": 1, "all": 1}


def ran_stages(output):
    return sorted(re.findall(r"Running stage '([^']+)'", output))


@slow
def test_the_demo_dag_with_dvc_repro_cached_reruns_and_a_partial_rerun(tmp_path):
    workspace = project(tmp_path, one_seed_photos_only(small_demo()))
    run(workspace, BIN / "dvc", "init", "--no-scm", "--quiet")
    first = run(workspace, BIN / "dvc", "repro")
    # every stage: the 30 Snakemake jobs but `all` (2 fetch, 2 downscale, 2 prepare, 8 train:
    # drn_x2 and drn_plus_x2 in two segments, 2 bicubic and 11 model evaluations, summary, report)
    stages = ran_stages(first)
    assert len(stages) == 29
    order = re.findall(r"Running stage '([^']+)'", first)  # the milestone's verdict comes first
    assert order.index("evaluate_milestone@loss-l1-x2-photos") < order.index("train-drn_x2")
    assert order.index("train-drn_x2-step3") < order.index("evaluate_milestone@loss-l1-x2-photos")
    rows = json.loads((workspace / "results/summary.json").read_text())
    assert len(rows) == 13
    lock = yaml.safe_load((workspace / "dvc.lock").read_text())["stages"]
    photos_md5 = next(o["md5"] for o in lock["fetch@photos"]["outs"])
    assert f"`{photos_md5}`" in (workspace / "reports/report.md").read_text()  # data provenance
    assert ran_stages(run(workspace, BIN / "dvc", "repro")) == []  # a second repro is a no-op

    params = one_seed_photos_only(small_demo())
    params["train"]["init_from"]["x3"] = "runs/drn_x2/model.pt"
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran_stages(run(workspace, BIN / "dvc", "repro")) == [
        "evaluate@drn-ensemble-x3-photos", "evaluate@drn-x3-photos", "evaluate@drn_plus-x3-photos",
        "report", "summary", "train-drn_plus_x3", "train-drn_x3",
    ]  # fmt: skip
    replaced = [p.name for p in (workspace / "runs").iterdir() if ".replaced-" in p.name]
    assert sorted(r.split(".replaced-")[0] for r in replaced) == ["drn_plus_x3", "drn_x3"]


@slow
def test_dvc_exp_run_with_a_changed_setting(tmp_path):
    params = one_seed_photos_only(small_demo())
    params["evaluation"].update(scales=[2], models=["drn"], ensemble_models=[])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    params["train"]["init_from"] = {"x2": None}
    workspace = project(tmp_path, params)
    run(workspace, "git", "init", "--quiet")
    run(workspace, BIN / "dvc", "init", "--quiet")
    run(workspace, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "init",
        "--allow-empty")  # fmt: skip
    run(workspace, "git", "add", "-A")
    run(workspace, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "pipeline")
    out = run(workspace, BIN / "dvc", "exp", "run", "-S", "train.optimizer.lr=0.001")
    assert "Ran experiment" in out
    for name in ("drn_x2", "drn_no_rd_x2_e0.003", "drn_x2_e0.003_l2"):  # every trained run
        settings = json.loads((workspace / f"runs/{name}/settings.json").read_text())
        assert settings["learning_rate"] == 0.001


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("slurm")) as env:
        yield env


@slow
def test_the_demo_dag_with_the_slurm_profile_on_a_real_cluster(tmp_path, slurm):
    params = one_seed_photos_only(small_demo())  # x2, drn, one ablation: a job of each rule
    params["evaluation"].update(scales=[2], models=["drn"], ensemble_models=[])
    params["downscaled"] = {"train_photos_x2": {"of": "train_photos", "scale": 2}}
    params["train"]["init_from"] = {"x2": None}
    del params["ablations"]["loss"]
    workspace = project(tmp_path, params)
    out = run(
        workspace, BIN / "snakemake", "--profile", "workflow/profiles/slurm",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "2", "--latency-wait", "10",
        env=slurm,
    )  # fmt: skip
    assert "100%) done" in out
    submitted = re.findall(r"Job \d+ has been submitted with SLURM jobid (\d+)", out)
    # every job but `all` ran as a Slurm job: 2 fetch, 1 downscale, 1 prepare, 4 train (drn_x2
    # in two segments, the distillation ablation's drn_no_rd_x2_e0.003 and drn_plus_x2_e0.003),
    # 1 bicubic and 4 model evaluations (1 of them drn_x2's milestone), summary, report
    assert len(submitted) == 15
    rows = json.loads((workspace / "results/summary.json").read_text())
    assert len(rows) == 5
    for job in submitted:  # Slurm ran them (it remembers finished jobs for MinJobAge)
        state = run(workspace, "scontrol", "show", "job", job, env=slurm)
        assert "JobState=COMPLETED" in state
